"""What the structured strategies share and the API needs without TensorFlow.

Structured strategies remove whole channels and rebuild a smaller model from its Keras
layer graph (``prunekit.structured``). This module only holds parameter types and the
user-facing explanation of which model formats can be pruned that way; the TensorFlow
side is :mod:`prunekit.structured.runner`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from prunekit.strategies.base import StrategyParams

ChannelRatio = Annotated[
    float,
    Field(
        ge=0.0,
        lt=1.0,
        description="Fraction of the prunable channels to remove, in [0, 1).",
    ),
]

KERAS_GRAPH_FORMATS = (
    "a .keras file (model.save('model.keras')), a SavedModel written by tf_keras / Keras 2 "
    "(model.save(dir), with keras_metadata.pb), or a SavedModel that prunekit produced "
    "(the SavedModel download of a structured job, which carries its Keras architecture "
    "in assets/prunekit_keras_model.json)"
)


def keras_graph_required(strategy: str) -> str:
    """Why a model without a Keras layer graph cannot be pruned structurally."""
    return (
        f"strategy {strategy!r} removes whole channels and rebuilds a smaller model from its "
        "Keras layer graph, but this model has none: a SavedModel stores traced TensorFlow "
        "functions, not layers (Keras 3 model.export and tf.saved_model.save keep no layer "
        "graph; a tf_keras one whose graph cannot be rebuilt safely counts the same). Upload "
        f"{KERAS_GRAPH_FORMATS}. Unstructured strategies (e.g. magnitude) work on any "
        "SavedModel."
    )


class StructuredParams(StrategyParams):
    """Parameters every structured strategy takes."""

    ratio: ChannelRatio
    min_channels: int = Field(
        default=1, ge=1, le=65536, description="Never keep fewer channels than this per group."
    )
    round_to: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="Round each group's kept channel count up to a multiple of this "
        "(hardware-friendly widths).",
    )

    def requires_data(self) -> bool:
        """Whether these parameters need the job's dataset (checked at submission)."""
        return False

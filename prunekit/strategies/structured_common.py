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

    steps: int = Field(
        default=1,
        ge=1,
        le=20,
        description="Reach the target widths in this many cuts (iterative pruning): cut i "
        "keeps size - floor(i * (size - target) / steps) channels of each group, re-scored on "
        "the model as it is then; every cut but the last is followed by step_epochs of "
        "recovery training (fine_tune's optimizer, batch size and schedule, the learning "
        "rate rewound to its start at every step). The last cut reaches exactly the widths a "
        "one-shot cut would keep; fine_tune then trains as usual.",
    )
    step_epochs: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Recovery epochs after every cut but the last (steps > 1, with a dataset).",
    )
    recalibrate: bool | None = Field(
        default=None,
        description="Re-estimate every BatchNorm layer's moving mean and variance on the "
        "job's training inputs after every cut (no labels needed; EagleEye's adaptive BN, "
        "Li et al. 2020): the statistics of a cut model are stale until then. null (default): "
        "on when the job has a dataset; true without a dataset is refused. The events and "
        "details.structured.recalibration give the held-out quality before and after.",
    )
    recalibrate_after_fine_tune: bool = Field(
        default=True,
        description="When recalibrating, do it once more after fine-tuning (Keras' default "
        "BatchNorm momentum, 0.99, lets moving statistics lag behind a short fine-tune).",
    )
    recalibration_samples: int = Field(
        default=2048,
        ge=1,
        le=1_000_000,
        description="Training inputs (a seeded sample) each recalibration pools.",
    )

    def wants_recalibration(self, has_data: bool) -> bool:
        return has_data if self.recalibrate is None else self.recalibrate

    def data_requirement(self) -> tuple[str, str] | None:
        """``(field, why)`` when these parameters need the job's dataset, else ``None``
        (checked at submission: a 422 naming ``body.<field>``)."""
        if self.recalibrate:
            why = "recalibrate: true re-estimates BatchNorm statistics on it"
            return "strategy.recalibrate", why
        return None

    def requires_data(self) -> bool:
        """Whether these parameters need the job's dataset (checked at submission)."""
        return self.data_requirement() is not None

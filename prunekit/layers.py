"""The Keras layer catalogue: which layer families the engine knows, in one place.

Two readers walk a Keras layer graph: the dependency graph of structured pruning
(:mod:`prunekit.structured.graph`: which layers own channels, which pass them through) and the
all-ops FLOPs count (:func:`prunekit.metrics.flops.model_cost`: what each layer costs). Both
read their layer families from here, so a layer the engine learns about is added once.

Families are sets of Keras class names; :func:`classes` turns one into the set of classes the
installed Keras has (a name it lacks is skipped), for the exact-class tests the graph makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras

DENSE = frozenset({"Dense"})
CONV = frozenset({"Conv1D", "Conv2D", "Conv3D"})
CONV_TRANSPOSE = frozenset({"Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"})
SEPARABLE = frozenset({"SeparableConv1D", "SeparableConv2D"})
DEPTHWISE = frozenset({"DepthwiseConv1D", "DepthwiseConv2D"})
BATCH_NORM = frozenset({"BatchNormalization"})
NORM = BATCH_NORM | {"LayerNormalization", "GroupNormalization"}
MERGE = frozenset({"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"})
POOL = frozenset(
    {
        "MaxPooling1D",
        "MaxPooling2D",
        "MaxPooling3D",
        "AveragePooling1D",
        "AveragePooling2D",
        "AveragePooling3D",
    }
)
GLOBAL_POOL = frozenset(
    {
        "GlobalAveragePooling1D",
        "GlobalAveragePooling2D",
        "GlobalAveragePooling3D",
        "GlobalMaxPooling1D",
        "GlobalMaxPooling2D",
        "GlobalMaxPooling3D",
    }
)
PADDING = frozenset({"ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D"})
CROPPING = frozenset({"Cropping1D", "Cropping2D", "Cropping3D"})
UPSAMPLING = frozenset({"UpSampling1D", "UpSampling2D", "UpSampling3D"})
SPATIAL_DROPOUT = frozenset({"SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D"})
# Layers that act on every element on its own (channels can be dropped through them).
ELEMENTWISE = frozenset(
    {
        "ReLU",
        "LeakyReLU",
        "ELU",
        "Dropout",
        "GaussianNoise",
        "GaussianDropout",
        "AlphaDropout",
        "ActivityRegularization",
        "Identity",
    }
)
# Layers that move data along spatial axes only (channels-last: the channel axis untouched).
SPATIAL = POOL | GLOBAL_POOL | PADDING | CROPPING | UPSAMPLING | SPATIAL_DROPOUT
# Attention layers the all-ops FLOPs count knows (projections, scores, weighted sum).
ATTENTION = frozenset({"MultiHeadAttention"})
# Layers whose arithmetic the all-ops FLOPs count takes as free.
ZERO_COST = (
    ELEMENTWISE
    | PADDING
    | CROPPING
    | UPSAMPLING
    | SPATIAL_DROPOUT
    | {
        "InputLayer",
        "Activation",
        "PReLU",
        "Softmax",
        "Flatten",
        "Reshape",
        "Permute",
        "RepeatVector",
        "Concatenate",
        "Rescaling",
        "Normalization",
        "Embedding",
        "Masking",
        "Resizing",
        "CenterCrop",
    }
)


def layer_class(name: str) -> type | None:
    """The Keras layer class of that name (None when this Keras has none)."""
    found = getattr(keras.layers, name, None)
    return found if isinstance(found, type) else None


def classes(names: frozenset[str]) -> frozenset[type]:
    """The Keras layer classes of a family (names this Keras lacks are skipped)."""
    return frozenset(c for c in map(layer_class, names) if c is not None)


@dataclass(frozen=True)
class Note:
    """A human readable remark about something that was not pruned (or not counted)."""

    subject: str
    reason: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.reason}"


def is_nested_model(op: Any) -> bool:
    """Whether a layer of a graph is itself a Functional or Sequential model."""
    return isinstance(op, keras.Model) and (
        type(op) is keras.Sequential or type(op).__name__ == "Functional"
    )


def functional_of(model: keras.Model) -> Any | None:
    """The object holding ``_nodes_by_depth`` for a Functional or Sequential model."""
    if type(model) is keras.Sequential:
        return getattr(model, "_functional", None)
    if hasattr(model, "_nodes_by_depth"):
        return model
    return None

"""Per-sample FLOPs and parameter counts of any Functional/Sequential Keras model.

Conventions (per sample, batch axis excluded; FLOPs = 2 x multiply-accumulates):

* Dense, Conv1D/2D/3D (grouped too), Conv*Transpose, DepthwiseConv, SeparableConv: 2 x MACs
  (biases not counted).
* BatchNormalization / LayerNormalization / GroupNormalization: 2 per output element
  (scale and shift; BatchNormalization is usually folded away at inference).
* Max/Average pooling: pool window size per output element; global pooling: one per input
  element; element-wise merges (Add, Multiply, ...): ``n_inputs - 1`` per output element.
* Activations, dropout, reshapes, padding/cropping, up-sampling, concatenation, input
  preprocessing (Rescaling/Normalization) and embeddings: 0.
* Any other layer counts 0 and is reported in ``notes``. Unknown (``None``) dimensions
  other than the batch also count 0 with a note.

Layers called several times (shared layers, shared nested models) are counted per call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras

from prunekit.structured.graph import Note, _functional_of, _is_nested_model


@dataclass
class ModelCost:
    flops: int
    params: int
    trainable_params: int
    per_layer: dict[str, int] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)

    @property
    def non_trainable_params(self) -> int:
        return self.params - self.trainable_params


def _names(*names: str) -> frozenset[str]:
    return frozenset(names)


_ZERO = _names(
    "InputLayer",
    "Activation",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "PReLU",
    "Softmax",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
    "Identity",
    "Flatten",
    "Reshape",
    "Permute",
    "RepeatVector",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
    "Concatenate",
    "Rescaling",
    "Normalization",
    "Embedding",
    "Masking",
    "Resizing",
    "CenterCrop",
)
_MERGE = _names("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
_NORM = _names("BatchNormalization", "LayerNormalization", "GroupNormalization")
_POOL = _names(
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
)
_GLOBAL_POOL = _names(
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
)


class _Unknown(Exception):
    pass


def _prod(dims: Sequence[int | None]) -> int:
    if any(d is None for d in dims):
        raise _Unknown("unknown dimension")
    return math.prod(int(d) for d in dims)  # type: ignore[arg-type]


def _channels_last(op: Any) -> bool:
    return getattr(op, "data_format", "channels_last") != "channels_first"


def _split(shape: tuple[int | None, ...], op: Any) -> tuple[int | None, tuple[int | None, ...]]:
    """(channels, spatial dims) of a per-sample conv tensor shape (batch included)."""
    if _channels_last(op):
        return shape[-1], tuple(shape[1:-1])
    return shape[1], tuple(shape[2:])


def _layer_flops(
    op: Any, ins: list[tuple[int | None, ...]], outs: list[tuple[int | None, ...]]
) -> int:
    name = type(op).__name__
    if name in _ZERO:
        return 0
    x, y = ins[0] if ins else (), outs[0]
    if name == "Dense":
        return 2 * _prod([x[-1]]) * int(op.units) * _prod(y[1:-1])
    if name in ("Conv1D", "Conv2D", "Conv3D"):
        cin, _ = _split(x, op)
        cout, spatial = _split(y, op)
        groups = int(getattr(op, "groups", 1))
        return 2 * _prod(op.kernel_size) * (_prod([cin]) // groups) * _prod([cout]) * _prod(spatial)
    if name in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"):
        cin, spatial = _split(x, op)
        cout, _ = _split(y, op)
        return 2 * _prod(op.kernel_size) * _prod([cin]) * _prod([cout]) * _prod(spatial)
    if name in ("DepthwiseConv1D", "DepthwiseConv2D"):
        cout, spatial = _split(y, op)
        return 2 * _prod(op.kernel_size) * _prod([cout]) * _prod(spatial)
    if name in ("SeparableConv1D", "SeparableConv2D"):
        cin, _ = _split(x, op)
        cout, spatial = _split(y, op)
        mid = _prod([cin]) * int(op.depth_multiplier)
        return 2 * _prod(spatial) * (_prod(op.kernel_size) * mid + mid * _prod([cout]))
    if name in _NORM:
        return 2 * _prod(y[1:])
    if name in _POOL:
        return _prod(op.pool_size) * _prod(y[1:])
    if name in _GLOBAL_POOL:
        return _prod(x[1:])
    if name in _MERGE:
        return (len(ins) - 1) * _prod(y[1:])
    raise _Unknown(f"{name} is not counted")


def _walk(fn: Any, prefix: str, cost: ModelCost, seen_unknown: set[str]) -> None:
    for depth in sorted(fn._nodes_by_depth, reverse=True):
        for node in fn._nodes_by_depth[depth]:
            op = node.operation
            if op is None or node.is_input:
                continue
            path = prefix + op.name
            if _is_nested_model(op):
                inner = _functional_of(op)
                if inner is not None:
                    _walk(inner, path + "/", cost, seen_unknown)
                    continue
            ins = [tuple(t.shape) for t in node.input_tensors]
            outs = [tuple(t.shape) for t in node.outputs]
            try:
                flops = _layer_flops(op, ins, outs)
            except (_Unknown, TypeError, AttributeError, IndexError) as exc:
                if path not in seen_unknown:
                    seen_unknown.add(path)
                    cost.notes.append(Note(path, f"counted as 0 FLOPs ({exc})"))
                flops = 0
            cost.per_layer[path] = cost.per_layer.get(path, 0) + flops
            cost.flops += flops


def model_cost(model: keras.Model) -> ModelCost:
    """FLOPs (2 x MACs per sample) and parameter counts of ``model``."""
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    params = sum(math.prod(w.shape) for w in model.weights)
    cost = ModelCost(flops=0, params=int(params), trainable_params=int(trainable))
    fn = _functional_of(model)
    if fn is None:
        cost.notes.append(Note(model.name, "not a Functional/Sequential model; FLOPs not counted"))
        return cost
    _walk(fn, "", cost, set())
    return cost


def count_flops(model: keras.Model) -> int:
    return model_cost(model).flops


def count_params(model: keras.Model) -> int:
    return model_cost(model).params

"""FLOPs per sample, the engine's one FLOPs module. Two counts, each named for what it counts:

* :func:`count_flops` (**matmul/conv only**, the job's ``metrics.flops``): read off the
  TensorFlow graph, so it works the same for `.keras` models and SavedModels. The forward
  pass is traced for one sample (batch 1), its variables are frozen into constants (which
  also inlines the nested functions a SavedModel signature calls), and every matrix-multiply
  and convolution op of the graph is counted from its static shapes as 2 x
  multiply-accumulates:

  - ``MatMul`` / ``BatchMatMulV2/V3``: 2 * M * K * N (per batch entry)
  - ``Conv2D`` / ``Conv3D``: 2 * output elements * kernel window * input channels (per group)
  - ``DepthwiseConv2dNative``: 2 * output elements * kernel window
  - ``Conv2DBackpropInput`` (transposed conv): 2 * input elements * kernel window * out channels
  - ``Einsum`` (no ellipsis): 2 * product of the sizes of every index

  Element-wise work (bias, activations, normalisation, pooling) is not counted: it is small
  next to these and unchanged by weight pruning. The "non-zero" figure scales each op by the
  fraction of non-zero entries of the weight constant it reads (found by following
  ``Identity``/``Cast``/``Reshape``... back to a constant): the work left when zero weights
  are skipped, which is exact for dense and convolution kernels since every weight takes part
  in the same number of multiply-accumulates.

* :func:`model_cost` (**all ops**, a structured job's ``details.flops_all_ops``): walks a
  Functional/Sequential Keras model's layer graph (no tracing, cheap), per sample, batch axis
  excluded, with the layer families of :mod:`prunekit.layers`:

  - Dense, Conv1D/2D/3D (grouped too), Conv*Transpose, DepthwiseConv, SeparableConv: 2 x MACs
    (biases not counted), as above.
  - BatchNormalization / LayerNormalization / GroupNormalization: 2 per output element
    (scale and shift; BatchNormalization is usually folded away at inference).
  - MultiHeadAttention: 2 x MACs of its query/key/value/output projections (each kernel's
    size times the tokens it projects), of the attention scores ``Q.K`` and of the weighted
    sum ``softmax.V`` (2 x heads x key_dim/value_dim x the query and key positions that meet
    along ``attention_axes``), and of the gate projection when ``use_gate``; the softmax
    itself counts 0 like other activations. Removing a head removes its share of all of it.
  - Max/Average pooling: pool window size per output element; global pooling: one per input
    element; element-wise merges (Add, Multiply, ...): ``n_inputs - 1`` per output element.
  - Activations, dropout, reshapes, padding/cropping, up-sampling, concatenation, input
    preprocessing (Rescaling/Normalization) and embeddings: 0.
  - Any other layer counts 0 and is reported in ``notes``; so do unknown (``None``)
    dimensions other than the batch. Layers called several times (shared layers, shared
    nested models) are counted per call.

  On a plain Dense/Conv model without normalisation, pooling or merges the two counts agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import (
    convert_variables_to_constants_v2,
)

from prunekit import layers as catalogue
from prunekit.layers import Note, functional_of, is_nested_model
from prunekit.model import LoadedModel, Weight

PASS_THROUGH = {
    "Identity",
    "IdentityN",
    "Cast",
    "ReadVariableOp",
    "Reshape",
    "Transpose",
    "Squeeze",
    "ExpandDims",
    "Snapshot",
    "StopGradient",
}
COUNTED = {
    "MatMul",
    "BatchMatMul",
    "BatchMatMulV2",
    "BatchMatMulV3",
    "Conv2D",
    "Conv3D",
    "DepthwiseConv2dNative",
    "Conv2DBackpropInput",
    "Einsum",
}


class FlopsError(ValueError):
    """The model's FLOPs cannot be counted (e.g. an input with unknown dimensions)."""


@dataclass
class OpFlops:
    op: str
    type: str
    flops: int
    weight_density: float  # non-zero fraction of the weight it reads (1.0 when none)
    weight_const: str | None = None  # the frozen constant that weight was read from

    @property
    def nonzero_flops(self) -> float:
        return self.flops * self.weight_density

    def as_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "type": self.type,
            "flops": self.flops,
            "nonzero_flops": round(self.nonzero_flops),
            "weight_density": round(self.weight_density, 6),
        }


@dataclass
class FlopsReport:
    """FLOPs for one sample: ``dense`` counts every weight, ``nonzero`` only non-zero ones."""

    input_shape: list[int]
    ops: list[OpFlops] = field(default_factory=list)
    uncounted: list[str] = field(default_factory=list)  # ops with unknown static shapes
    # frozen constant name -> the model weight it was a variable of (see by_weight)
    const_weights: dict[str, str] = field(default_factory=dict)

    @property
    def dense(self) -> int:
        return sum(o.flops for o in self.ops)

    @property
    def nonzero(self) -> int:
        return round(sum(o.nonzero_flops for o in self.ops))

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dense": self.dense, "nonzero": self.nonzero}
        if self.uncounted:
            out["uncounted_ops"] = self.uncounted
        return out

    def by_weight(self) -> dict[str, Any] | None:
        """The count split by the model weight each op reads: ``weights`` (name -> its ops'
        dense FLOPs and the weight's shape), ``fixed_nonzero`` (ops reading no weight of the
        model: their non-zero FLOPs cannot change). With it, :func:`nonzero_from_weights`
        recounts the non-zero FLOPs of the same graph with other weight values, without
        freezing it again. None when the weights were not known."""
        if not self.const_weights:
            return None
        weights: dict[str, int] = {}
        fixed = 0.0
        for op in self.ops:
            name = self.const_weights.get(op.weight_const or "")
            if name is None:
                fixed += op.nonzero_flops
            else:
                weights[name] = weights.get(name, 0) + op.flops
        return {"dense": self.dense, "weights": weights, "fixed_nonzero": fixed}


def nonzero_from_weights(table: dict[str, Any], weights: list[Weight]) -> int | None:
    """Non-zero FLOPs of the graph :meth:`FlopsReport.by_weight` described, with the current
    values of ``weights`` (each op's FLOPs scaled by the non-zero fraction of the weight it
    reads, as :func:`count_graph_flops` does); None when a weight of the table is missing."""
    by_name = {w.name: w for w in weights}
    total = float(table["fixed_nonzero"])
    for name, flops in table["weights"].items():
        w = by_name.get(name)
        if w is None or w.size == 0:
            return None
        total += flops * float(np.count_nonzero(w.numpy())) / float(w.size)
    return round(total)


def _dims(shape: tf.TensorShape) -> list[int] | None:
    if shape.rank is None:
        return None
    dims = shape.as_list()
    return None if any(d is None for d in dims) else [int(d) for d in dims]


def _const_op(tensor: tf.Tensor, depth: int = 0) -> tf.Operation | None:
    """The constant op a tensor is read from, following pass-through ops."""
    op = tensor.op
    if op.type == "Const":
        return op
    if op.type in PASS_THROUGH and op.inputs and depth < 16:
        index = tensor.value_index if op.type == "IdentityN" else 0
        return _const_op(op.inputs[index], depth + 1)
    return None


def _density(op: tf.Operation, weight_index: int | None = None) -> tuple[float, str | None]:
    """Non-zero fraction of the weight constant ``op`` reads (input ``weight_index``, or the
    last constant input found), and that constant's name (None: no weight, density 1)."""
    indices = [weight_index] if weight_index is not None else range(len(op.inputs) - 1, -1, -1)
    for i in indices:
        const = _const_op(op.inputs[i])
        if const is None:
            continue
        value = tf.make_ndarray(const.get_attr("value"))
        if value.size > 1:
            return float(np.count_nonzero(value)) / float(value.size), const.name
    return 1.0, None


def _matmul(op: tf.Operation) -> int | None:
    a, b = (_dims(t.shape) for t in op.inputs[:2])
    out = _dims(op.outputs[0].shape)
    if a is None or b is None or out is None:
        return None
    adj_a = op.get_attr("adj_x" if "BatchMatMul" in op.type else "transpose_a")
    k = a[-2] if adj_a else a[-1]
    return 2 * int(np.prod(out, dtype=np.int64)) * k


def _conv(op: tf.Operation) -> int | None:
    kernel = _dims(op.inputs[1].shape)
    out = _dims(op.outputs[0].shape)
    if kernel is None or out is None:
        return None
    window_and_in = int(np.prod(kernel[:-1], dtype=np.int64))  # kh*kw(*kd)*cin_per_group
    return 2 * int(np.prod(out, dtype=np.int64)) * window_and_in


def _depthwise(op: tf.Operation) -> int | None:
    kernel = _dims(op.inputs[1].shape)
    out = _dims(op.outputs[0].shape)
    if kernel is None or out is None:
        return None
    return 2 * int(np.prod(out, dtype=np.int64)) * kernel[0] * kernel[1]


def _conv_transpose(op: tf.Operation) -> int | None:
    kernel = _dims(op.inputs[1].shape)  # [kh, kw, out_channels, in_channels]
    x = _dims(op.inputs[2].shape)  # the transposed conv's input
    if kernel is None or x is None:
        return None
    return 2 * int(np.prod(x, dtype=np.int64)) * kernel[0] * kernel[1] * kernel[2]


def _einsum(op: tf.Operation) -> int | None:
    equation = op.get_attr("equation")
    equation = equation.decode() if isinstance(equation, bytes) else equation
    if "..." in equation or "->" not in equation:
        return None
    lhs = equation.split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for letters, tensor in zip(lhs, op.inputs, strict=False):
        dims = _dims(tensor.shape)
        if dims is None or len(dims) != len(letters):
            return None
        for letter, d in zip(letters, dims, strict=True):
            sizes[letter] = max(sizes.get(letter, 1), d)
    return 2 * int(np.prod(list(sizes.values()), dtype=np.int64))


COUNTERS = {
    "MatMul": _matmul,
    "BatchMatMul": _matmul,
    "BatchMatMulV2": _matmul,
    "BatchMatMulV3": _matmul,
    "Conv2D": _conv,
    "Conv3D": _conv,
    "DepthwiseConv2dNative": _depthwise,
    "Conv2DBackpropInput": _conv_transpose,
    "Einsum": _einsum,
}
WEIGHT_INPUT = {"Conv2D": 1, "Conv3D": 1, "DepthwiseConv2dNative": 1, "Conv2DBackpropInput": 1}


def count_graph_flops(graph: tf.Graph, input_shape: list[int]) -> FlopsReport:
    """Count the FLOPs of every matmul/convolution op of a (frozen) graph."""
    report = FlopsReport(input_shape=input_shape)
    for op in graph.get_operations():
        counter = COUNTERS.get(op.type)
        if counter is None:
            continue
        flops = counter(op)
        if flops is None:
            report.uncounted.append(f"{op.type}:{op.name}")
            continue
        density, const = _density(op, WEIGHT_INPUT.get(op.type))
        report.ops.append(OpFlops(op.name, op.type, flops, density, const))
    return report


def sample_shape(model: LoadedModel, data_shape: list[int] | None = None) -> tuple[list[int], str]:
    """One sample's shape (no batch dimension) and dtype of the model's single input.

    ``data_shape`` (a dataset's sample shape) fills dimensions the signature leaves open.
    """
    sig = model.primary_signature()
    if len(sig.inputs) != 1:
        raise FlopsError(f"the model takes {len(sig.inputs)} inputs; only single-input models")
    spec = sig.inputs[0]
    dims = spec.shape[1:]
    if data_shape is not None and len(data_shape) == len(dims):
        dims = [d if d is not None else s for d, s in zip(dims, data_shape, strict=True)]
    if any(d is None for d in dims):
        raise FlopsError(
            f"the model input {spec.name!r} has unknown dimensions {spec.shape}; FLOPs and "
            "latency need a concrete sample shape (give the job a dataset)"
        )
    return [int(d) for d in dims if d is not None], spec.dtype


def frozen_graph(concrete: Any) -> tf.Graph:
    """The graph of ``concrete`` with its variables frozen into constants and the functions
    it calls inlined.

    ``convert_variables_to_constants_v2`` does this, then wraps the frozen GraphDef into a new
    callable function, which on ResNet50 takes most of its time (about 90%); counting only
    needs the graph, so the GraphDef is imported directly (through the same converter TF
    uses; its public path is the fallback)."""
    try:
        from tensorflow.python.framework.convert_to_constants import (
            _FunctionConverterDataInEager,
            _replace_variables_by_constants,
        )
    except ImportError:  # a TF without these internals: the public, slower path
        return convert_variables_to_constants_v2(concrete).graph
    data = _FunctionConverterDataInEager(
        func=concrete, lower_control_flow=True, aggressive_inlining=False
    )
    graph_def, _ = _replace_variables_by_constants(converter_data=data)
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    return graph


def _captured_weights(concrete: Any, weights: list[Weight]) -> dict[str, str]:
    """Name of each variable placeholder of ``concrete`` (which freezing turns into a constant
    of that name) -> the model weight it captures."""
    by_handle = {id(w.tf_variable.handle): w.name for w in weights}
    out: dict[str, str] = {}
    for external, internal in concrete.graph.captures:
        name = by_handle.get(id(external))
        if name is not None:
            out[internal.op.name] = name
    return out


def count_concrete_flops(
    concrete: Any, dims: list[int], weights: list[Weight] | None = None
) -> FlopsReport:
    """FLOPs of a forward pass already traced for one sample of shape ``dims`` (a
    ``ConcreteFunction``, e.g. :meth:`prunekit.metrics.latency.ForwardPass.concrete` ``(1)``,
    so the latency timing and the count share one trace), with its variables' current values.
    ``weights``: the model's, to split the count by weight (:meth:`FlopsReport.by_weight`)."""
    report = count_graph_flops(frozen_graph(concrete), dims)
    if weights is not None:
        report.const_weights = _captured_weights(concrete, weights)
    return report


def count_flops(model: LoadedModel, data_shape: list[int] | None = None) -> FlopsReport:
    """Matmul/conv FLOPs for one sample of ``model`` (its current weights), dense and
    non-zero, split by weight (:meth:`FlopsReport.by_weight`)."""
    dims, dtype = sample_shape(model, data_shape)
    spec = tf.TensorSpec([1, *dims], tf.as_dtype(dtype))
    concrete = tf.function(lambda x: model.call(x, training=False)).get_concrete_function(spec)
    return count_concrete_flops(concrete, dims, model.weights())


# ------------------------------------------------------------------- all ops (layer walk)
@dataclass
class ModelCost:
    """All-ops FLOPs per sample (:func:`model_cost`) and the parameter counts."""

    flops: int
    params: int
    trainable_params: int
    per_layer: dict[str, int] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)

    @property
    def non_trainable_params(self) -> int:
        return self.params - self.trainable_params


class _Unknown(Exception):
    pass


def _prod(dims: Sequence[int | None]) -> int:
    if any(d is None for d in dims):
        raise _Unknown("unknown dimension")
    return math.prod([int(d) for d in dims if d is not None])


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
    if name in catalogue.ZERO_COST:
        return 0
    x, y = ins[0] if ins else (), outs[0]
    if name in catalogue.DENSE:
        return 2 * _prod([x[-1]]) * int(op.units) * _prod(y[1:-1])
    if name in catalogue.CONV:
        cin, _ = _split(x, op)
        cout, spatial = _split(y, op)
        groups = int(getattr(op, "groups", 1))
        return 2 * _prod(op.kernel_size) * (_prod([cin]) // groups) * _prod([cout]) * _prod(spatial)
    if name in catalogue.CONV_TRANSPOSE:
        cin, spatial = _split(x, op)
        cout, _ = _split(y, op)
        return 2 * _prod(op.kernel_size) * _prod([cin]) * _prod([cout]) * _prod(spatial)
    if name in catalogue.DEPTHWISE:
        cout, spatial = _split(y, op)
        return 2 * _prod(op.kernel_size) * _prod([cout]) * _prod(spatial)
    if name in catalogue.SEPARABLE:
        cin, _ = _split(x, op)
        cout, spatial = _split(y, op)
        mid = _prod([cin]) * int(op.depth_multiplier)
        return 2 * _prod(spatial) * (_prod(op.kernel_size) * mid + mid * _prod([cout]))
    if name in catalogue.NORM:
        return 2 * _prod(y[1:])
    if name in catalogue.POOL:
        return _prod(op.pool_size) * _prod(y[1:])
    if name in catalogue.GLOBAL_POOL:
        return _prod(x[1:])
    if name in catalogue.MERGE:
        return (len(ins) - 1) * _prod(y[1:])
    if name in catalogue.ATTENTION:
        return _attention_flops(op, ins, y)
    raise _Unknown(f"{name} is not counted")


def _attention_flops(op: Any, ins: list[tuple[int | None, ...]], y: tuple[int | None, ...]) -> int:
    """2 x MACs of one ``MultiHeadAttention`` call: ``ins`` are query, value[, key]."""
    query, value = ins[0], ins[1] if len(ins) > 1 else ins[0]
    key = ins[2] if len(ins) > 2 else value
    rank = len(query)
    axes = getattr(op, "_attention_axes", None)
    axes = tuple(range(1, rank - 1)) if axes is None else tuple(a % rank for a in axes)
    batched = [query[i] for i in range(1, rank - 1) if i not in axes]  # attended separately
    q_pos, k_pos = _prod([query[i] for i in axes]), _prod([key[i] for i in axes])

    def kernel(sub: str) -> int:
        return math.prod(int(d) for d in getattr(op, sub).kernel.shape)

    flops = 2 * _prod(query[1:-1]) * kernel("_query_dense")
    flops += 2 * _prod(key[1:-1]) * kernel("_key_dense")
    flops += 2 * _prod(value[1:-1]) * kernel("_value_dense")
    flops += 2 * _prod(y[1:-1]) * kernel("_output_dense")
    if getattr(op, "_use_gate", False):
        flops += 2 * _prod(query[1:-1]) * kernel("_gate_dense")
    heads = int(op.num_heads)
    per_pair = int(op.key_dim) + int(op.value_dim or op.key_dim)  # scores + weighted sum
    return flops + 2 * _prod(batched) * heads * q_pos * k_pos * per_pair


def _walk(fn: Any, prefix: str, cost: ModelCost, seen_unknown: set[str]) -> None:
    for depth in sorted(fn._nodes_by_depth, reverse=True):
        for node in fn._nodes_by_depth[depth]:
            op = node.operation
            if op is None or node.is_input:
                continue
            path = prefix + op.name
            if is_nested_model(op):
                inner = functional_of(op)
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
    """All-ops FLOPs (2 x MACs per sample, normalisation, pooling and merges included) and
    parameter counts of a Keras ``model``."""
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    params = sum(math.prod(w.shape) for w in model.weights)
    cost = ModelCost(flops=0, params=int(params), trainable_params=int(trainable))
    fn = functional_of(model)
    if fn is None:
        cost.notes.append(Note(model.name, "not a Functional/Sequential model; FLOPs not counted"))
        return cost
    _walk(fn, "", cost, set())
    return cost

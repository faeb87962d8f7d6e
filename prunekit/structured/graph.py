"""Channel dependency graph for structured (channel) pruning of Keras 3 models.

How the graph is read
---------------------
The graph is walked through the *live* functional graph rather than through
``model.get_config()``: for every ``Functional`` (a Sequential model is walked through
its internal ``_functional``) we visit ``_nodes_by_depth`` in execution order and use each
node's ``operation``, ``input_tensors`` and ``outputs``. This is exactly what Keras itself
does in ``Function._run_through_graph`` (used by ``keras.models.clone_model``), so it is
the most faithful description of what the model computes: it gives the call order, the
symbolic shapes of every tensor, shared layers (one layer object, several nodes) and
nested models (a Functional/Sequential model used as a layer) without re-parsing the
config format. These are private attributes; if they are missing the builder does not
crash but reports that nothing can be pruned.

Model of channels
-----------------
Every tensor whose last axis carries prunable channels gets a :class:`Layout`: an ordered
list of :class:`Segment` s, each one a whole *channel group* (possibly repeated ``mult``
times per channel, as after a DepthwiseConv with ``depth_multiplier > 1``), and a
``spatial`` factor (``> 1`` after ``Flatten``: position ``s * C + c``). A tensor with
layout ``None`` is opaque: its channels are never changed (model inputs, outputs of
unsupported layers). Only channels-last layouts are supported; anything else is blocked.

A *group* is a set of channels that must be removed together. It is created by a
*source* layer (Dense/Conv/ConvTranspose/SeparableConv output) and every weight slice
that depends on it is recorded as a :class:`Member` (layer, weight, axis, positions).
Element-wise merges union groups. Whenever a grouped tensor reaches something the
builder cannot prove safe (unknown/custom layer, Lambda, a Reshape that mixes channels,
a channel-mixing activation, a model output, ...) all groups in it are *blocked* with a
human readable reason. Blocked groups are never pruned, so surgery cannot produce a
silently wrong model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import keras
import numpy as np

from prunekit import layers as catalogue
from prunekit.layers import Note, classes, functional_of, is_nested_model, layer_class
from prunekit.patterns import compile_patterns
from prunekit.structured.attention import MHA_CLASSES, AttentionUnsupported, visit_attention

Role = Literal["out", "in"]
Kind = Literal["kernel", "bias", "gamma", "beta", "stat", "other"]

# Activations that act on every element independently (safe to drop channels).
ELEMENTWISE_ACTIVATIONS = frozenset(
    {
        "linear",
        "relu",
        "relu6",
        "leaky_relu",
        "elu",
        "selu",
        "celu",
        "gelu",
        "sigmoid",
        "hard_sigmoid",
        "tanh",
        "hard_tanh",
        "swish",
        "silu",
        "hard_swish",
        "hard_silu",
        "mish",
        "softplus",
        "softsign",
        "exponential",
        "squareplus",
        "sparse_plus",
        "soft_shrink",
        "hard_shrink",
        "tanh_shrink",
        "threshold",
        "log_sigmoid",
    }
)


@dataclass(frozen=True)
class Segment:
    """A whole channel group laid out on a tensor's channel axis.

    ``group`` is a raw group id (resolve with :meth:`DependencyGraph.group_id`), or ``-1``
    for an opaque run of ``size`` channels that is never pruned. Channel ``c`` of the
    group occupies positions ``c * mult .. c * mult + mult - 1`` of the segment.
    """

    group: int
    size: int
    mult: int = 1

    @property
    def width(self) -> int:
        return self.size * self.mult


@dataclass(frozen=True)
class Layout:
    """Channel layout of the last axis of a tensor (see module docstring)."""

    segments: tuple[Segment, ...]
    spatial: int = 1

    @property
    def channels(self) -> int:
        return sum(s.width for s in self.segments)

    @property
    def width(self) -> int:
        return self.spatial * self.channels

    def expand(self, mult: int) -> Layout:
        """Layout after a depthwise op: each input channel becomes ``mult`` channels."""
        return Layout(
            tuple(Segment(s.group, s.size, s.mult * mult) for s in self.segments),
            self.spatial,
        )

    def group_ids(self) -> list[int]:
        return [s.group for s in self.segments if s.group >= 0]

    def positions(self) -> dict[int, np.ndarray]:
        """Map raw group id -> int array ``(group size, k)`` of positions on the axis."""
        parts: dict[int, list[np.ndarray]] = {}
        channels = self.channels
        offset = 0
        for seg in self.segments:
            if seg.group >= 0:
                base = offset + np.arange(seg.size)[:, None] * seg.mult + np.arange(seg.mult)
                # (size, mult) -> (size, spatial * mult)
                spatial = (np.arange(self.spatial) * channels)[None, :, None]
                pos = (base[:, None, :] + spatial).reshape(seg.size, -1)
                parts.setdefault(seg.group, []).append(pos)
            offset += seg.width
        return {g: np.concatenate(p, axis=1) for g, p in parts.items()}


@dataclass(frozen=True)
class Member:
    """One weight slice that follows a group's channels.

    ``positions[c]`` are the indices along ``axis`` of weight ``weight_index`` (index in
    ``layer.weights``) that belong to channel ``c`` of the group.
    """

    layer: str
    weight: str
    weight_index: int
    axis: int
    role: Role
    kind: Kind
    positions: np.ndarray = field(repr=False, compare=False)


@dataclass
class ChannelGroup:
    """Channels that must be pruned together."""

    id: int
    size: int
    sources: list[str] = field(default_factory=list)
    members: list[Member] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    @property
    def prunable(self) -> bool:
        return not self.blocked and self.size > 1

    @property
    def layers(self) -> list[str]:
        seen: dict[str, None] = {}
        for m in self.members:
            seen.setdefault(m.layer, None)
        return list(seen)


@dataclass(frozen=True)
class SourceInfo:
    """A layer whose output channel count is a config value (``filters``/``units``)."""

    layer: str
    group: int  # raw group id
    config_key: str


@dataclass
class DependencyGraph:
    model: keras.Model
    groups: list[ChannelGroup]
    notes: list[Note]
    layers: dict[str, keras.layers.Layer]
    sources: dict[str, SourceInfo]
    nested_inputs: dict[str, list[Layout | None]]
    reshapes: dict[str, Layout]
    _raw_to_group: dict[int, int] = field(repr=False)

    def group_id(self, raw: int) -> int:
        return self._raw_to_group[raw]

    def group_of(self, layer: str) -> ChannelGroup | None:
        """The group whose channels are the output channels of source layer ``layer``."""
        info = self.sources.get(layer)
        return None if info is None else self.groups[self.group_id(info.group)]

    @property
    def prunable_groups(self) -> list[ChannelGroup]:
        return [g for g in self.groups if g.prunable]


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def add(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x


_DENSE = classes(catalogue.DENSE)
_CONV = classes(catalogue.CONV)
_CONV_T = classes(catalogue.CONV_TRANSPOSE)
_SEPARABLE = classes(catalogue.SEPARABLE)
_DEPTHWISE = classes(catalogue.DEPTHWISE)
_BN = classes(catalogue.BATCH_NORM)
_MERGE = classes(catalogue.MERGE)
_ELEMENTWISE = classes(catalogue.ELEMENTWISE)
_SPATIAL = classes(catalogue.SPATIAL)


def _activation_name(layer: keras.layers.Layer) -> str | None:
    act = layer.get_config().get("activation")
    if act is None:
        return "linear"
    return act if isinstance(act, str) else None


def _producer_name(t: Any) -> str:
    history = getattr(t, "_keras_history", None)
    op = getattr(history, "operation", None)
    return str(getattr(op, "name", None) or getattr(t, "name", "?"))


def _shape(t: Any) -> tuple[int | None, ...]:
    return tuple(t.shape)


class _Builder:
    def __init__(self, model: keras.Model) -> None:
        self.model = model
        self.uf = _UnionFind()
        self.size: list[int] = []
        self.sources_of: dict[int, list[str]] = {}
        self.members_of: dict[int, list[Member]] = {}
        self.blocked_of: dict[int, list[str]] = {}
        self.notes: list[Note] = []
        self.layers: dict[str, keras.layers.Layer] = {}
        self.sources: dict[str, SourceInfo] = {}
        self.nested_inputs: dict[str, list[Layout | None]] = {}
        self.reshapes: dict[str, Layout] = {}
        # First-call bookkeeping of layers with weights (shared layers).
        self.first_in: dict[int, list[Layout | None]] = {}
        self.first_out: dict[int, list[Layout | None]] = {}

    # -- groups ---------------------------------------------------------------------
    def new_group(self, size: int, source: str) -> int:
        g = self.uf.add()
        self.size.append(size)
        self.sources_of[g] = [source]
        self.members_of[g] = []
        self.blocked_of[g] = []
        return g

    def find(self, g: int) -> int:
        return self.uf.find(g)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if rb < ra:
            ra, rb = rb, ra
        assert self.size[ra] == self.size[rb]
        self.uf.parent[rb] = ra
        self.sources_of[ra] += self.sources_of.pop(rb)
        self.members_of[ra] += self.members_of.pop(rb)
        for r in self.blocked_of.pop(rb):
            if r not in self.blocked_of[ra]:
                self.blocked_of[ra].append(r)

    def block_group(self, g: int, reason: str) -> None:
        reasons = self.blocked_of[self.find(g)]
        if reason not in reasons:
            reasons.append(reason)

    def block(self, layouts: Iterable[Layout | None], reason: str) -> None:
        for lay in layouts:
            if lay is not None:
                for g in lay.group_ids():
                    self.block_group(g, reason)

    def add_member(
        self,
        layout: Layout,
        layer: keras.layers.Layer,
        path: str,
        var: Any,
        axis: int,
        role: Role,
        kind: Kind,
    ) -> None:
        index = next(i for i, w in enumerate(layer.weights) if w is var)
        ndim = len(var.shape)
        axis = axis % ndim
        if var.shape[axis] != layout.width:
            raise _Unsupported(
                f"weight '{var.name}' axis {axis} has {var.shape[axis]} entries, "
                f"expected {layout.width}"
            )
        for g, pos in layout.positions().items():
            self.members_of[self.find(g)].append(
                Member(path, var.name, index, axis, role, kind, pos)
            )

    # -- layout helpers -------------------------------------------------------------
    def unify(self, layouts: Sequence[Layout | None], where: str) -> Layout | None:
        """Tie layouts that must carry identical channels (merges, shared layers)."""
        if all(lay is None for lay in layouts):
            return None
        if any(lay is None for lay in layouts):
            self.block(layouts, f"{where}: combined with a tensor whose channels are fixed")
            return None
        ref = layouts[0]
        assert ref is not None
        for lay in layouts[1:]:
            assert lay is not None
            ok = lay.spatial == ref.spatial and len(lay.segments) == len(ref.segments)
            ok = ok and all(
                a.size == b.size and a.mult == b.mult
                for a, b in zip(ref.segments, lay.segments, strict=True)
            )
            if not ok:
                self.block(layouts, f"{where}: inputs have incompatible channel layouts")
                return None
        for i, seg in enumerate(ref.segments):
            ids = [lay.segments[i].group for lay in layouts if lay is not None]
            if any(g < 0 for g in ids):
                for g in ids:
                    if g >= 0:
                        self.block_group(g, f"{where}: combined with fixed channels")
                continue
            for g in ids[1:]:
                self.union(seg.group, g)
        return ref

    # -- traversal ------------------------------------------------------------------
    def run(self) -> None:
        fn = functional_of(self.model)
        if fn is None:
            self.notes.append(
                Note(
                    self.model.name,
                    "not a built Functional/Sequential model; nothing can be pruned",
                )
            )
            return
        inputs = [None] * len(fn.inputs)
        outputs = self.walk(fn, inputs, "")
        names = [_producer_name(t) for t in fn.outputs]
        for lay, name in zip(outputs, names, strict=True):
            self.block([lay], f"reaches model output '{name}'")

    def walk(self, fn: Any, inputs: Sequence[Layout | None], prefix: str) -> list[Layout | None]:
        values: dict[int, Layout | None] = {}
        for t, v in zip(fn.inputs, inputs, strict=True):
            values[id(t)] = v
        for depth in sorted(fn._nodes_by_depth, reverse=True):
            for node in fn._nodes_by_depth[depth]:
                op = node.operation
                if op is None or node.is_input:
                    continue
                ins = [values.get(id(t)) for t in node.input_tensors]
                outs = self.visit(op, node, ins, prefix)
                for t, v in zip(node.outputs, outs, strict=True):
                    values[id(t)] = v
        return [values.get(id(t)) for t in fn.outputs]

    def visit(
        self, op: Any, node: Any, ins: list[Layout | None], prefix: str
    ) -> list[Layout | None]:
        path = prefix + op.name
        n_out = len(node.outputs)
        if isinstance(op, keras.layers.Layer):
            self.layers.setdefault(path, op)
        try:
            return self.dispatch(op, node, ins, path)
        except _Unsupported as exc:
            reason = f"{type(op).__name__} '{path}': {exc}"
            if any(lay is not None for lay in ins):
                self.block(ins, reason)
                self.notes.append(Note(path, str(exc)))
            return [None] * n_out

    def dispatch(
        self, op: Any, node: Any, ins: list[Layout | None], path: str
    ) -> list[Layout | None]:
        cls = type(op)
        in_shapes = [_shape(t) for t in node.input_tensors]
        out_shapes = [_shape(t) for t in node.outputs]
        x = ins[0] if ins else None

        if is_nested_model(op):
            return self.visit_nested(op, node, ins, path)
        if cls in _DENSE or cls in _CONV or cls in _CONV_T or cls in _SEPARABLE:
            return self.visit_weighted(op, ins, path, self.visit_source)
        if cls in _DEPTHWISE:
            return self.visit_weighted(op, ins, path, self.visit_depthwise)
        if cls in MHA_CLASSES:  # attention heads: prunekit.structured.attention
            return self.visit_weighted(op, ins, path, self.visit_attention)
        if cls in _BN:
            rank = len(in_shapes[0])
            axes = op.axis if isinstance(op.axis, list | tuple) else [op.axis]
            if len(axes) != 1 or axes[0] % rank != rank - 1:
                raise _Unsupported(f"axis {op.axis} is not the channel (last) axis")
            return self.visit_weighted(op, ins, path, self.visit_bn)
        if layer_class("PReLU") is cls:
            return self.visit_weighted(op, ins, path, self.visit_prelu)
        if cls in _MERGE:
            if len({s[-1] for s in in_shapes}) != 1:
                raise _Unsupported("broadcasts along the channel axis")
            return [self.unify(ins, f"{cls.__name__} '{path}'")]
        if layer_class("Concatenate") is cls:
            return [self.visit_concat(op, ins, in_shapes, out_shapes)]
        if cls in _ELEMENTWISE:
            noise = getattr(op, "noise_shape", None)
            if x is not None and noise is not None and noise[-1] not in (None, 1):
                raise _Unsupported("noise_shape fixes the channel count")
            return [x]
        if layer_class("Activation") is cls:
            act = _activation_name(op)
            if act not in ELEMENTWISE_ACTIVATIONS:
                raise _Unsupported(f"activation '{act}' is not element-wise")
            return [x]
        if layer_class("Softmax") is cls:
            axes = op.axis if isinstance(op.axis, list | tuple) else [op.axis]
            rank = len(in_shapes[0])
            if any(a % rank == rank - 1 for a in axes):
                raise _Unsupported("softmax over the channel axis mixes channels")
            return [x]
        if layer_class("Rescaling") is cls:
            if np.size(op.scale) != 1 or np.size(op.offset) != 1:
                raise _Unsupported("per-channel rescaling")
            return [x]
        if layer_class("LayerNormalization") is cls:
            rank = len(in_shapes[0])
            axes = op.axis if isinstance(op.axis, list | tuple) else [op.axis]
            if any(a % rank == rank - 1 for a in axes):
                raise _Unsupported(
                    "normalises across the channel axis: its statistics change with the "
                    "width, so this width (a Transformer's residual stream) is kept"
                )
            return [x]
        if cls in _SPATIAL:
            if getattr(op, "data_format", "channels_last") != "channels_last":
                raise _Unsupported("channels_first data format")
            if x is not None and x.spatial != 1:
                raise _Unsupported("applied to a flattened tensor")
            return [x]
        if layer_class("Flatten") is cls:
            if getattr(op, "data_format", "channels_last") != "channels_last":
                raise _Unsupported("channels_first data format")
            return [self.flatten(x, in_shapes[0])]
        if layer_class("Reshape") is cls:
            out = self.visit_reshape(op, x, in_shapes[0], out_shapes[0])
            if out is not None:
                # target_shape[-1] is a channel count: surgery must rewrite it.
                prev = self.reshapes.get(path)
                if prev is not None:
                    self.unify([prev, out], f"shared layer '{path}'")
                self.reshapes[path] = out
            return [out]
        if layer_class("Permute") is cls:
            dims = tuple(op.dims)
            if dims[-1] != len(dims):
                raise _Unsupported(f"Permute{dims} moves the channel axis")
            return [x]
        if layer_class("InputLayer") is cls:
            return [x]
        if cls.__name__ == "Lambda":
            raise _Unsupported("Lambda layers are opaque")
        raise _Unsupported("layer type is not known to be channel-safe")

    def visit_weighted(
        self, op: Any, ins: list[Layout | None], path: str, fn: Any
    ) -> list[Layout | None]:
        """Handle layers with weights, including shared layers (several calls)."""
        key = id(op)
        if key in self.first_in:
            where = f"shared layer '{path}'"
            first = self.first_in[key]
            for a, b in zip(first, ins, strict=True):
                self.unify([a, b], where)
            return self.first_out[key]
        self.first_in[key] = list(ins)
        self.first_out[key] = [None]
        outs: list[Layout | None] = fn(op, ins, path)
        self.first_out[key] = outs
        return outs

    def visit_source(self, op: Any, ins: list[Layout | None], path: str) -> list[Layout | None]:
        cls = type(op)
        x = ins[0]
        if getattr(op, "data_format", "channels_last") != "channels_last":
            raise _Unsupported("channels_first data format")
        if getattr(op, "groups", 1) != 1:
            raise _Unsupported("grouped convolution")
        if getattr(op, "lora_enabled", False) or getattr(op, "quantization_mode", None):
            raise _Unsupported("LoRA/quantized layers are not supported")
        if cls not in _DENSE and x is not None and x.spatial != 1:
            raise _Unsupported("applied to a flattened tensor")
        kernel = op.pointwise_kernel if cls in _SEPARABLE else op.kernel
        in_axis, out_axis = (-1, -2) if cls in _CONV_T else (-2, -1)
        if cls in _DENSE:
            in_axis, out_axis = 0, 1
            # Dense acts on the last axis of an N-D tensor; kernel is always 2-D.
        key = "units" if cls in _DENSE else "filters"
        size = int(kernel.shape[out_axis])
        if x is not None:
            if cls in _SEPARABLE:
                mult = int(op.depth_multiplier)
                self.add_member(x, op, path, op.depthwise_kernel, -2, "in", "kernel")
                self.add_member(x.expand(mult), op, path, kernel, -2, "in", "kernel")
            else:
                self.add_member(x, op, path, kernel, in_axis, "in", "kernel")
        g = self.new_group(size, path)
        out = Layout((Segment(g, size),))
        self.add_member(out, op, path, kernel, out_axis, "out", "kernel")
        if getattr(op, "use_bias", False) and op.bias is not None:
            self.add_member(out, op, path, op.bias, 0, "out", "bias")
        self.sources[path] = SourceInfo(path, g, key)
        act = _activation_name(op)
        if act not in ELEMENTWISE_ACTIVATIONS:
            self.block_group(g, f"'{path}' has activation '{act}' that mixes channels")
        return [out]

    def visit_attention(self, op: Any, ins: list[Layout | None], path: str) -> list[Layout | None]:
        try:
            return visit_attention(self, op, ins, path)
        except AttentionUnsupported as exc:
            raise _Unsupported(str(exc)) from exc

    def visit_depthwise(self, op: Any, ins: list[Layout | None], path: str) -> list[Layout | None]:
        x = ins[0]
        if getattr(op, "data_format", "channels_last") != "channels_last":
            raise _Unsupported("channels_first data format")
        if x is None:
            return [None]
        if x.spatial != 1:
            raise _Unsupported("applied to a flattened tensor")
        out = x.expand(int(op.depth_multiplier))
        self.add_member(x, op, path, op.kernel, -2, "out", "kernel")
        if getattr(op, "use_bias", False) and op.bias is not None:
            self.add_member(out, op, path, op.bias, 0, "out", "bias")
        return [out]

    def visit_bn(self, op: Any, ins: list[Layout | None], path: str) -> list[Layout | None]:
        x = ins[0]
        if x is None:
            return [None]
        if op.moving_mean.shape[0] != x.width:
            raise _Unsupported("parameter shape does not match the channel axis")
        kinds: dict[str, Kind] = {"gamma": "gamma", "beta": "beta"}
        for var in op.weights:
            self.add_member(x, op, path, var, 0, "out", kinds.get(var.name, "stat"))
        return [x]

    def visit_prelu(self, op: Any, ins: list[Layout | None], path: str) -> list[Layout | None]:
        x = ins[0]
        if x is None:
            return [None]
        alpha = op.alpha
        last = alpha.shape[-1]
        if last == x.width:
            self.add_member(x, op, path, alpha, -1, "out", "other")
        elif last != 1:
            raise _Unsupported("alpha shape does not match the channel axis")
        return [x]

    def visit_concat(
        self,
        op: Any,
        ins: list[Layout | None],
        in_shapes: list[tuple[int | None, ...]],
        out_shapes: list[tuple[int | None, ...]],
    ) -> Layout | None:
        rank = len(out_shapes[0])
        if op.axis % rank != rank - 1:
            raise _Unsupported(f"concatenates along axis {op.axis}, not the channel axis")
        if all(lay is None for lay in ins):
            return None
        segments: list[Segment] = []
        for lay, shape in zip(ins, in_shapes, strict=True):
            if lay is None:
                if shape[-1] is None:
                    raise _Unsupported("input with unknown channel count")
                segments.append(Segment(-1, int(shape[-1])))
            elif lay.spatial != 1:
                raise _Unsupported("concatenates flattened tensors")
            else:
                segments.extend(lay.segments)
        return Layout(tuple(segments))

    def flatten(self, x: Layout | None, in_shape: tuple[int | None, ...]) -> Layout | None:
        if x is None or len(in_shape) <= 2:
            return x
        if x.spatial != 1:
            raise _Unsupported("flattens an already flattened tensor")
        dims = in_shape[1:-1]
        if any(d is None for d in dims):
            raise _Unsupported("unknown spatial size")
        return Layout(x.segments, spatial=math.prod([int(d) for d in dims if d is not None]))

    def visit_reshape(
        self,
        op: Any,
        x: Layout | None,
        in_shape: tuple[int | None, ...],
        out_shape: tuple[int | None, ...],
    ) -> Layout | None:
        if x is None:
            return None
        target = tuple(op.target_shape)
        if target and target[-1] == -1:
            # The surgery rewrites target_shape[-1]; an inferred size cannot be rewritten.
            raise _Unsupported("Reshape with an inferred (-1) channel axis")
        if in_shape[-1] is not None and in_shape[-1] == out_shape[-1]:
            return x  # channel axis untouched
        if len(out_shape) == 2 and x.spatial == 1:
            return self.flatten(x, in_shape)
        raise _Unsupported(f"Reshape {in_shape[1:]} -> {out_shape[1:]} mixes the channel axis")

    def visit_nested(
        self, op: Any, node: Any, ins: list[Layout | None], path: str
    ) -> list[Layout | None]:
        fn = functional_of(op)
        if fn is None or len(fn.inputs) != len(ins):
            raise _Unsupported("nested model graph cannot be read")
        if path in self.nested_inputs:
            # Shared nested model: its inner layers handle unification themselves.
            for a, b in zip(self.nested_inputs[path], ins, strict=True):
                self.unify([a, b], f"shared model '{path}'")
        else:
            self.nested_inputs[path] = list(ins)
        return self.walk(fn, ins, path + "/")


class _Unsupported(Exception):
    """Raised inside the builder when a layer cannot be handled safely."""


def build_dependency_graph(
    model: keras.Model, exclude: Sequence[str] | None = None
) -> DependencyGraph:
    """Group the channel axes of ``model`` that must be pruned together.

    Args:
        model: a built Functional or Sequential Keras 3 model (nested models allowed).
        exclude: regular expressions; a group touching a layer whose name or path
            (``outer/inner``) matches any of them is blocked.

    Returns:
        A :class:`DependencyGraph`. Never raises for unsupported layers: the affected
        groups are blocked and explained in ``graph.notes`` / ``group.blocked``.
    """
    b = _Builder(model)
    try:
        b.run()
    except Exception as exc:  # Keras internals changed or an unforeseen structure
        # Keep the result safe: block everything seen so far.
        for g in list(b.blocked_of):
            b.block_group(g, f"graph traversal failed: {exc!r}")
        b.notes.append(Note(model.name, f"graph traversal failed: {exc!r}"))

    patterns = compile_patterns(exclude)
    roots = sorted(b.members_of)
    raw_to_group: dict[int, int] = {}
    groups: list[ChannelGroup] = []
    for gid, root in enumerate(roots):
        grp = ChannelGroup(
            id=gid,
            size=b.size[root],
            sources=list(dict.fromkeys(b.sources_of[root])),
            members=b.members_of[root],
            blocked=list(b.blocked_of[root]),
        )
        for layer in grp.layers:
            short = layer.rsplit("/", 1)[-1]
            for pat in patterns:
                if pat.search(layer) or pat.search(short):
                    grp.blocked.append(f"layer '{layer}' matches exclude pattern '{pat.pattern}'")
        groups.append(grp)
        raw_to_group[root] = gid
    for raw in range(len(b.size)):
        raw_to_group[raw] = raw_to_group[b.find(raw)]
    notes = list(b.notes)
    for grp in groups:
        for reason in grp.blocked:
            notes.append(Note(f"group {grp.id} ({', '.join(grp.sources)})", reason))
    return DependencyGraph(
        model=model,
        groups=groups,
        notes=notes,
        layers=b.layers,
        sources=b.sources,
        nested_inputs=b.nested_inputs,
        reshapes=b.reshapes,
        _raw_to_group=raw_to_group,
    )

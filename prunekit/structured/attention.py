"""Attention heads as prunable channel groups (``keras.layers.MultiHeadAttention``).

A ``MultiHeadAttention`` layer with ``H`` heads holds four projections::

    query/kernel  (d_q, H, key_dim)     query/bias  (H, key_dim)
    key/kernel    (d_k, H, key_dim)     key/bias    (H, key_dim)
    value/kernel  (d_v, H, value_dim)   value/bias  (H, value_dim)
    attention_output/kernel (H, value_dim, d_out)

Head ``h`` is the slice ``h`` of the head axis of every one of them: removing it from Q, K,
V and O (and lowering ``num_heads``) computes exactly what the layer computes when that
head's contribution is masked out (its output-projection slice set to zero), because the
heads only meet in the sum over the output projection. So the heads of one layer form a
channel group of size ``H`` whose *source* is the layer (config key ``num_heads``); the
generic importance (``l1``/``l2`` norms of the head's slices, or Taylor ``(sum w*g)^2``),
selection and surgery of :mod:`prunekit.structured` then apply unchanged.

What stays: ``key_dim``/``value_dim`` (every head keeps its width) and the model width the
layer reads and writes. The residual stream of a Transformer is normalised by
``LayerNormalization`` over the channel axis, whose statistics change with the width, so
the dependency graph keeps that width (it blocks those groups with the reason); the heads
and the feed-forward inner width (a ``Dense`` -> ``Dense`` pair, an ordinary group) are
what shrinks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras
import numpy as np

if TYPE_CHECKING:
    from prunekit.structured.graph import Kind, Layout, Role, _Builder

MHA_CLASSES: frozenset[type] = frozenset({keras.layers.MultiHeadAttention})
# (sub-layer attribute, weight attribute, head axis, role) of every head slice
_HEAD_SLICES: tuple[tuple[str, str, int, Role], ...] = (
    ("_query_dense", "kernel", 1, "out"),
    ("_query_dense", "bias", 0, "out"),
    ("_key_dense", "kernel", 1, "out"),
    ("_key_dense", "bias", 0, "out"),
    ("_value_dense", "kernel", 1, "out"),
    ("_value_dense", "bias", 0, "out"),
    ("_output_dense", "kernel", 0, "in"),
)


class AttentionUnsupported(Exception):
    """The layer's heads cannot be pruned safely (the message says why)."""


def relative_weight_name(layer: keras.layers.Layer, var: Any) -> str:
    """``var``'s name inside ``layer`` (``query/kernel`` for an attention layer's query
    kernel, ``kernel`` for a Dense): unique among the layer's weights."""
    path = str(getattr(var, "path", "") or "")
    own = str(getattr(layer, "path", "") or layer.name)
    if path.startswith(own + "/"):
        return path[len(own) + 1 :]
    return str(var.name)


def visit_attention(
    builder: _Builder, op: Any, ins: list[Layout | None], path: str
) -> list[Layout | None]:
    """Register ``op``'s heads as one group; keep the widths it reads and writes."""
    from prunekit.layers import Note
    from prunekit.structured.graph import Member, SourceInfo

    reason = (
        f"MultiHeadAttention '{path}' reads this width through its query/key/value "
        "projections; its heads are pruned, not the width it reads"
    )
    builder.block(ins, reason)
    why = _unsupported(op)
    if why:
        builder.notes.append(Note(path, f"heads not pruned: {why}"))
        return [None]
    heads = int(op.num_heads)
    g = builder.new_group(heads, path)
    positions = np.arange(heads)[:, None]
    for sub, attr, axis, role in _HEAD_SLICES:
        var = getattr(getattr(op, sub), attr, None)
        if var is None:  # use_bias=False
            continue
        index = next(i for i, w in enumerate(op.weights) if w is var)
        if int(var.shape[axis]) != heads:
            raise AttentionUnsupported(f"{sub[1:]} {attr} has no head axis of size {heads}")
        kind: Kind = "kernel" if attr == "kernel" else "bias"
        name = relative_weight_name(op, var)
        builder.members_of[builder.find(g)].append(
            Member(path, name, index, axis, role, kind, positions)
        )
    builder.sources[path] = SourceInfo(path, g, "num_heads")
    return [None]


def _unsupported(op: Any) -> str:
    if getattr(op, "_use_gate", False) or getattr(op, "use_gate", False):
        return "use_gate=True adds a gating projection that is not handled"
    for sub in ("_query_dense", "_key_dense", "_value_dense", "_output_dense"):
        layer = getattr(op, sub, None)
        if layer is None or getattr(layer, "kernel", None) is None:
            return "the layer is not built (call the model once before pruning)"
        if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
            return "LoRA/quantized projections are not supported"
    return ""

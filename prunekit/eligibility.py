"""Which layers pruning could make faster, and on what: a per-layer analysis of the model alone.

No data, no conversion: the kernels' shapes, their layer classes and (with a Keras graph) the
channel dependency graph decide. Paths:

- ``block_sparse_fc``: a fully connected layer whose weights are zero in whole blocks of
  consecutive inputs runs LiteRT's sparse FULLY_CONNECTED kernels: float32 needs 1x4
  blocks (input dimension a multiple of 4), int8 1x16 blocks (a multiple of 16; a layer
  that does not tile, stored sparse, computed wrong int8 outputs on LiteRT 2.3). Random
  (unstructured) zeros only shrink the file; a layout the kernel cannot use can be slower
  than dense (int8 weights in 1x4 blocks make XNNPACK refuse the file);
- ``sparse_1x1_conv``: XNNPACK's sparse inference runs 1x1 convolutions with at least 2/3
  zero weights, but only inside a subgraph that starts with a 3x3 stride-2 convolution with 3
  input channels and ends with a spatial mean (global average pooling), made of the ops its
  README lists; it needs the delegate's sparse-inference flag, which the default LiteRT
  Python interpreter does not set, so it is not measured here;
- ``channel_removal``: structured strategies (``filter``, ``slimming``) remove whole output
  channels of Dense/Conv layers whose channel group the dependency graph can prune (dense
  kernels get smaller on every runtime); needs a Keras graph;
- ``2:4``: two of every four consecutive input weights zero (strategy ``nm``) runs on GPU
  sparse tensor cores (NVIDIA Ampere and later); not measured on CPU.

The same function describes a pruned model: each row then also says how its zeros are laid
out (``zero_layout``), i.e. whether the path it could take is the one it got.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from prunekit.model import LoadedModel, Weight

BLOCK_FC = "block_sparse_fc"
SPARSE_1X1 = "sparse_1x1_conv"
CHANNELS = "channel_removal"
NM_2_4 = "2:4"
PATHS = (BLOCK_FC, SPARSE_1X1, CHANNELS, NM_2_4)
FLOAT_BLOCK = 4  # LiteRT float32 sparse FULLY_CONNECTED: 1x4 blocks
INT8_BLOCK = 16  # LiteRT int8 sparse FULLY_CONNECTED: 1x16 blocks
BLOCK_SHARE = 0.95  # a layer's zeros form k-blocks when this share of them lies in whole blocks
XNNPACK_SPARSE_ZEROS = 2 / 3  # XNNPACK's sparse 1x1 convolutions need this share of zeros

# measured on ai-edge-litert 2.3 (LeNet-300-100, MNIST): top-1 agreement with TF fell to 0.59
INT8_HAZARD = (
    "; keep it dense in int8 files: stored sparse in 1x16 blocks, such a layer gave wrong "
    "int8 outputs on LiteRT"
)

_CONV_CLASSES = ("Conv2D",)
_DEPTHWISE_CLASSES = ("DepthwiseConv2D", "DepthwiseConv1D")


def _all_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _layer_index(model: LoadedModel) -> tuple[dict[int, Any], dict[str, Any]]:
    """Keras layers by their variables' ids and by name (empty without a Keras graph)."""
    by_variable: dict[int, Any] = {}
    by_name: dict[str, Any] = {}
    if model.keras_model is None:
        return by_variable, by_name
    for layer in _all_layers(model.keras_model):
        by_name.setdefault(layer.name, layer)
        for v in layer.weights:
            by_variable.setdefault(id(v), layer)
    return by_variable, by_name


def _kind(weight: Weight, layer: Any) -> str:
    """``dense``, ``conv2d_1x1``, ``conv2d``, ``depthwise``, ``pointwise`` or ``other``."""
    shape = weight.shape
    cls = type(layer).__name__ if layer is not None else None
    short = weight.name.rsplit("/", 1)[-1]
    if cls == "Dense" or (cls is None and len(shape) == 2):
        return "dense"
    if cls in _DEPTHWISE_CLASSES or (cls == "SeparableConv2D" and "depthwise" in short):
        return "depthwise"
    if cls == "SeparableConv2D":
        return "pointwise"  # the 1x1 convolution of a separable convolution
    if cls in _CONV_CLASSES or (cls is None and len(shape) == 4):
        if cls is not None and int(layer.get_config().get("groups", 1) or 1) != 1:
            return "other"
        return "conv2d_1x1" if shape[:2] == (1, 1) else "conv2d"
    return "other"


def _input_dim(weight: Weight, kind: str) -> int:
    """The reduction dimension blocks run along: inputs (Dense) or input channels (1x1)."""
    return weight.shape[0] if kind == "dense" else weight.shape[-2]


def _block_fc_paths(inputs: int) -> list[dict[str, Any]]:
    out = []
    for dtype, k in (("float32", FLOAT_BLOCK), ("int8", INT8_BLOCK)):
        fits = inputs % k == 0
        out.append(
            {
                "path": BLOCK_FC,
                "dtype": dtype,
                "block": f"1x{k}",
                "eligible": fits,
                "runtime": "LiteRT CPU, sparse FULLY_CONNECTED kernel",
                "reason": (
                    f"{inputs} inputs tile by {k}"
                    if fits
                    else f"{inputs} inputs do not tile by {k}: {dtype} {k}-blocks do not apply"
                    + (INT8_HAZARD if dtype == "int8" else "")
                ),
            }
        )
    return out


def _xnnpack_sparse_graph(model: LoadedModel) -> tuple[bool | None, str]:
    """Whether the model has the frame XNNPACK's sparse subgraph needs (None: unknown)."""
    if model.keras_model is None:
        return None, "no Keras graph: XNNPACK's sparse-subgraph rules cannot be checked"
    layers = list(_all_layers(model.keras_model))
    convs = [lyr for lyr in layers if type(lyr).__name__ == "Conv2D"]
    problems = []
    if not convs:
        problems.append("no Conv2D")
    else:
        first = convs[0]
        cfg = first.get_config()
        in_channels = int(first.kernel.shape[-2])
        if (
            tuple(cfg.get("kernel_size", ())) != (3, 3)
            or tuple(cfg.get("strides", ())) != (2, 2)
            or in_channels != 3
        ):
            problems.append(
                f"the first convolution ({first.name}) is not 3x3 stride 2 with 3 input channels"
            )
    if not any(type(lyr).__name__ == "GlobalAveragePooling2D" for lyr in layers):
        problems.append("no global average pooling (spatial MEAN) closes the subgraph")
    if problems:
        return False, "; ".join(problems)
    return True, "the model has the frame (3x3 stride-2 stem on 3 channels, global pooling)"


def _channel_groups(model: LoadedModel) -> tuple[Any | None, str | None]:
    if model.keras_model is None:
        return None, (
            "no Keras graph (a .keras file, or a SavedModel written by prunekit or tf_keras, "
            "has one): channels cannot be removed"
        )
    try:
        from prunekit.structured.graph import build_dependency_graph

        return build_dependency_graph(model.keras_model), None
    except Exception as exc:  # an analysis, never a failure
        return None, f"channel dependency graph not built: {type(exc).__name__}: {exc}"


def _channel_path(graph: Any, why_none: str | None, weight: Weight) -> dict[str, Any]:
    row: dict[str, Any] = {"path": CHANNELS, "runtime": "any (smaller dense kernels)"}
    if graph is None:
        return {**row, "eligible": False, "reason": why_none}
    group = None
    for name in (weight.layer, weight.layer.rsplit("/", 1)[-1]):
        group = graph.group_of(name)
        if group is not None:
            break
    if group is None:
        return {**row, "eligible": False, "reason": "not a channel source in the graph"}
    if not group.prunable:
        reason = "; ".join(group.blocked) or f"a group of {group.size} channel(s)"
        return {**row, "eligible": False, "reason": f"its channel group is fixed: {reason}"}
    return {
        **row,
        "eligible": True,
        "reason": f"output channels removable with {len(group.layers)} dependent layer(s) "
        "(strategies filter, slimming)",
    }


def zero_layout(kernel: np.ndarray, inputs_axis: int) -> str | None:
    """How a kernel's zeros are laid out along its input axis: ``1x16``/``1x4`` blocks,
    ``2:4``, ``unstructured``; ``None`` for a kernel without zeros."""
    w = np.moveaxis(np.asarray(kernel), inputs_axis, 0)
    w = w.reshape(w.shape[0], -1)  # (inputs, everything else)
    zeros = int(np.sum(w == 0))
    if zeros == 0:
        return None
    for k in (INT8_BLOCK, FLOAT_BLOCK):
        n = (w.shape[0] // k) * k
        if n == 0:
            continue
        blocks = w[:n].reshape(n // k, k, -1)
        whole = np.all(blocks == 0, axis=1)
        if k * int(whole.sum()) >= BLOCK_SHARE * zeros and whole.any():
            return f"1x{k}"
    n = (w.shape[0] // 4) * 4
    if (
        n
        and np.all(np.sum(w[:n].reshape(n // 4, 4, -1) != 0, axis=1) <= 2)
        and zeros >= n * w.shape[1] // 2
    ):
        return "2:4"
    return "unstructured"


def speedup_paths(model: LoadedModel, exclude: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
    """Per prunable layer, the paths that could make it faster, and layers with none.

    Returns ``{"layers": [row, ...], "summary": {path: layers, "none": layers}, "notes":
    [...]}``; a row has ``layer``, ``weight``, ``kind``, ``shape``, ``paths`` (names of the
    eligible ones), ``options`` (every path considered, eligible or not, with the reason),
    ``sparsity``, ``zero_layout`` and ``none`` (why nothing applies, or ``None``).
    """
    by_variable, by_name = _layer_index(model)
    graph, why_no_graph = _channel_groups(model)
    frame_ok, frame_reason = _xnnpack_sparse_graph(model)
    rows: list[dict[str, Any]] = []
    for weight in model.prunable_weights(exclude):
        layer = by_variable.get(id(weight.variable)) or by_name.get(weight.layer.rsplit("/", 1)[-1])
        kind = _kind(weight, layer)
        options: list[dict[str, Any]] = []
        if kind == "dense":
            options += _block_fc_paths(_input_dim(weight, kind))
        if kind in ("conv2d_1x1", "pointwise"):
            options.append(
                {
                    "path": SPARSE_1X1,
                    "eligible": bool(frame_ok),
                    "runtime": "XNNPACK sparse inference (flag off in the default LiteRT "
                    "interpreter; not measured here)",
                    "reason": f"needs >= {XNNPACK_SPARSE_ZEROS:.0%} zeros across the sparse "
                    f"subgraph's 1x1 convolutions; {frame_reason}",
                }
            )
        if kind in ("dense", "conv2d_1x1", "conv2d", "pointwise"):
            options.append(_channel_path(graph, why_no_graph, weight))
            inputs = _input_dim(weight, kind)
            options.append(
                {
                    "path": NM_2_4,
                    "eligible": inputs % 4 == 0,
                    "runtime": "GPU sparse tensor cores (NVIDIA Ampere+); not measured on CPU",
                    "reason": f"{inputs} input channels "
                    + ("tile by 4" if inputs % 4 == 0 else "do not tile by 4"),
                }
            )
        array = weight.numpy()
        eligible = list(dict.fromkeys(o["path"] for o in options if o["eligible"]))
        rows.append(
            {
                "layer": weight.layer,
                "weight": weight.name,
                "class_name": type(layer).__name__ if layer is not None else None,
                "kind": kind,
                "shape": list(weight.shape),
                "paths": eligible,
                "options": options,
                "sparsity": round(float(np.mean(array == 0)), 6),
                "zero_layout": zero_layout(array, 0 if kind == "dense" else array.ndim - 2),
                "none": None if eligible else _none_reason(kind, options),
            }
        )
    summary: dict[str, int] = {p: sum(p in r["paths"] for r in rows) for p in PATHS}
    summary["none"] = sum(not r["paths"] for r in rows)
    notes = [] if why_no_graph is None else [why_no_graph]
    return {"layers": rows, "summary": summary, "notes": notes}


def _none_reason(kind: str, options: list[dict[str, Any]]) -> str:
    if not options:
        return f"no sparse or structured kernel path for a {kind} kernel"
    return "; ".join(f"{o['path']}: {o['reason']}" for o in options)

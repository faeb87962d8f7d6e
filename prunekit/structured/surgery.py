"""Model surgery: rebuild a Keras model with fewer channels and copy the kept weights.

The new model is produced by ``keras.models.clone_model`` with a clone function that
re-creates every layer from its config (``filters``/``units`` of pruned source layers
changed; nested models are cloned recursively on new ``Input`` s whose channel count
matches the pruned tensors). Layer names, input names and output names are therefore the
originals, and the result is an ordinary Functional/Sequential model that saves to
``.keras`` and re-loads with ``safe_mode=True`` whenever the original could.

Weight slicing is generic: every :class:`~prunekit.structured.graph.Member` of a pruned
group says which positions of which axis of which weight belong to which channel, so the
kept weights are the originals with the removed positions deleted (kernels on the output
and the consumers' input axes, biases, BatchNormalization gamma/beta/mean/variance,
depthwise kernels, separable depthwise/pointwise kernels, the ``H*W`` rows per channel of a
Dense after Flatten, the offset ranges behind a Concatenate, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from prunekit.layers import Note, functional_of, is_nested_model
from prunekit.structured.graph import DependencyGraph, Layout, _producer_name


class SurgeryError(RuntimeError):
    """The rebuilt model does not match the plan (a bug, never silently ignored)."""


def _removed_by_group(
    graph: DependencyGraph, kept: Mapping[int, Sequence[int] | np.ndarray]
) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    for gid, keep in kept.items():
        grp = graph.groups[gid]
        keep_arr = np.unique(np.asarray(list(keep), dtype=int))
        if keep_arr.size and (keep_arr[0] < 0 or keep_arr[-1] >= grp.size):
            raise ValueError(f"group {gid}: kept index out of range 0..{grp.size - 1}")
        drop = np.setdiff1d(np.arange(grp.size), keep_arr)
        if drop.size == 0:
            continue
        if not grp.prunable:
            raise ValueError(f"group {gid} is not prunable: {'; '.join(grp.blocked)}")
        if drop.size == grp.size:
            raise ValueError(f"group {gid}: cannot remove every channel")
        out[gid] = drop
    return out


def _layout_removed(graph: DependencyGraph, layout: Layout | None, drops: dict[int, Any]) -> int:
    if layout is None:
        return 0
    n = 0
    for raw, pos in layout.positions().items():
        drop = drops.get(graph.group_id(raw))
        if drop is not None:
            n += pos[drop].size
    return n


def apply_pruning(
    graph: DependencyGraph, kept: Mapping[int, Sequence[int] | np.ndarray]
) -> tuple[keras.Model, list[Note]]:
    """Build a new model keeping, for each group id in ``kept``, only those channels.

    Groups missing from ``kept`` keep all channels. Raises ``ValueError`` when asked to
    prune a blocked group or to remove every channel of a group.
    """
    model = graph.model
    drops = _removed_by_group(graph, kept)
    notes: list[Note] = []
    if functional_of(model) is None:
        # Subclassed/unbuilt models have no readable graph, so no group can exist.
        notes.append(Note(model.name, "model graph not readable; returned unchanged"))
        return model, notes

    removed: dict[tuple[str, int, int], set[int]] = {}
    for gid, drop in drops.items():
        for m in graph.groups[gid].members:
            removed.setdefault((m.layer, m.weight_index, m.axis), set()).update(
                int(p) for p in m.positions[drop].ravel()
            )

    new_config: dict[str, tuple[str, int]] = {}
    for path, info in graph.sources.items():
        dropped = drops.get(graph.group_id(info.group))
        if dropped is not None:
            new_config[path] = (
                info.config_key,
                graph.groups[graph.group_id(info.group)].size - dropped.size,
            )

    pairs: list[tuple[str, keras.layers.Layer, keras.layers.Layer]] = []

    def clone(m: keras.Model, prefix: str, input_tensors: Any = None) -> keras.Model:
        def clone_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
            path = prefix + layer.name
            if is_nested_model(layer):
                return clone(layer, path + "/", nested_inputs(layer, path))
            cfg = layer.get_config()
            if path in new_config:
                key, value = new_config[path]
                cfg[key] = value
            if path in graph.reshapes and "target_shape" in cfg:
                target = list(cfg["target_shape"])
                target[-1] -= _layout_removed(graph, graph.reshapes[path], drops)
                cfg["target_shape"] = tuple(target)
            try:
                new = layer.__class__.from_config(cfg)
            except Exception as exc:
                if getattr(layer, "weights", None) or path in new_config:
                    raise SurgeryError(f"cannot re-create layer '{path}': {exc}") from exc
                notes.append(Note(path, f"re-used the original layer object ({exc})"))
                return layer
            pairs.append((path, layer, new))
            return new

        return keras.models.clone_model(m, input_tensors=input_tensors, clone_function=clone_layer)

    def nested_inputs(layer: keras.Model, path: str | None) -> Any:
        """New ``Input`` s for (nested) model ``layer``: pruned widths, original names."""
        fn = functional_of(layer)
        if fn is None:
            return None
        layouts = graph.nested_inputs.get(path or "", [None] * len(fn.inputs))
        if path is not None and path not in graph.nested_inputs:
            return None
        new = []
        for t, lay in zip(fn.inputs, layouts, strict=True):
            shape = list(t.shape)
            if lay is not None:
                shape[-1] = shape[-1] - _layout_removed(graph, lay, drops)
            name = _producer_name(t)
            new.append(keras.Input(batch_shape=tuple(shape), dtype=t.dtype, name=name))
        if type(layer) is keras.Sequential:
            return new[0]
        return keras.tree.pack_sequence_as(layer.input, new)

    top_inputs = None if type(model) is keras.Sequential else nested_inputs(model, None)
    new_model = clone(model, "", top_inputs)

    for path, old, new in pairs:
        if not getattr(old, "weights", None):  # an op node (``x + 3.0``) holds no weights
            continue
        if len(old.weights) != len(new.weights):
            raise SurgeryError(f"layer '{path}': weight count changed after rebuild")
        for i, (w_old, w_new) in enumerate(zip(old.weights, new.weights, strict=True)):
            value = np.asarray(keras.ops.convert_to_numpy(w_old))
            for axis in range(value.ndim):
                gone = removed.get((path, i, axis))
                if gone:
                    value = np.delete(value, sorted(gone), axis=axis)
            if tuple(value.shape) != tuple(w_new.shape):
                raise SurgeryError(
                    f"layer '{path}' weight '{w_old.name}': sliced shape {value.shape} "
                    f"!= rebuilt shape {tuple(w_new.shape)}"
                )
            w_new.assign(value)
    return new_model, notes

"""Per-channel importance of channel groups.

Every criterion returns, for each group, one score per channel, summed over the group's
members (so a channel shared by two convolutions through an ``Add`` counts both):

* ``l1`` / ``l2``: filter norms of every kernel slice in the group, both the producing
  filters (output axis) and the consumers' input slices (Li et al., 2017,
  "Pruning Filters for Efficient ConvNets").
* ``bn_gamma``: ``|gamma|`` of the BatchNormalization layers in the group (Liu et al.,
  2017, "Learning Efficient Convolutional Networks through Network Slimming"). Groups
  without BatchNormalization fall back to ``l1`` (reported in the returned notes).
* ``taylor``: first-order Taylor expansion (Molchanov et al., 2019, "Importance
  Estimation for Neural Network Pruning"): for every member, ``(sum_s w_s * dL/dw_s)^2``
  over the parameters ``s`` of the channel, summed over members. With BatchNormalization
  this contains the paper's ``(gamma * dL/dgamma)^2`` term. Gradients are passed in; see
  :func:`compute_gradients` for a helper that makes them from one batch.

Gradients are looked up by ``"<layer path>/<weight name>"`` (e.g. ``"block/conv/kernel"``
for a layer inside nested model ``block``), falling back to the variable's Keras
``path``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import keras
import numpy as np

from prunekit.layers import Note
from prunekit.structured.attention import relative_weight_name
from prunekit.structured.graph import ChannelGroup, DependencyGraph, Member

Criterion = Literal["l1", "l2", "bn_gamma", "taylor"]
CRITERIA: tuple[str, ...] = ("l1", "l2", "bn_gamma", "taylor")
Gradients = Mapping[str, Any] | Callable[[keras.Model], Mapping[str, Any]]


def weight_key(member: Member) -> str:
    return f"{member.layer}/{member.weight}"


def _per_position(values: np.ndarray, axis: int, reduce: str) -> np.ndarray:
    moved = np.moveaxis(np.asarray(values, dtype=np.float64), axis, 0)
    flat = moved.reshape(moved.shape[0], -1)
    if reduce == "l1":
        return np.asarray(np.abs(flat).sum(axis=1))
    if reduce == "l2sq":
        return np.asarray(np.square(flat).sum(axis=1))
    if reduce == "sum":
        return np.asarray(flat.sum(axis=1))
    raise ValueError(reduce)


class _WeightCache:
    def __init__(self, graph: DependencyGraph) -> None:
        self.graph = graph
        self._cache: dict[str, list[np.ndarray]] = {}

    def get(self, m: Member) -> np.ndarray:
        if m.layer not in self._cache:
            self._cache[m.layer] = [
                np.asarray(keras.ops.convert_to_numpy(w))
                for w in self.graph.layers[m.layer].weights
            ]
        return self._cache[m.layer][m.weight_index]


def _gradient_for(m: Member, graph: DependencyGraph, grads: Mapping[str, Any]) -> Any | None:
    key = weight_key(m)
    if key in grads:
        return grads[key]
    var = graph.layers[m.layer].weights[m.weight_index]
    return grads.get(getattr(var, "path", ""))


def group_importance(
    graph: DependencyGraph,
    criterion: str = "l1",
    gradients: Gradients | None = None,
    groups: list[ChannelGroup] | None = None,
) -> tuple[dict[int, np.ndarray], list[Note]]:
    """Score every channel of ``groups`` (default: the prunable groups of ``graph``).

    Returns ``({group id: scores of shape (group.size,)}, notes)``. Higher is more
    important.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; expected one of {CRITERIA}")
    if criterion == "taylor":
        if gradients is None:
            raise ValueError("criterion 'taylor' needs gradients")
        if callable(gradients):
            gradients = gradients(graph.model)
    groups = graph.prunable_groups if groups is None else groups
    cache = _WeightCache(graph)
    notes: list[Note] = []
    scores: dict[int, np.ndarray] = {}
    for grp in groups:
        crit = criterion
        if crit == "bn_gamma" and not any(m.kind == "gamma" for m in grp.members):
            notes.append(Note(f"group {grp.id}", "no BatchNormalization gamma; used l1"))
            crit = "l1"
        total = np.zeros(grp.size, dtype=np.float64)
        used = 0
        for m in grp.members:
            if crit in ("l1", "l2") and m.kind != "kernel":
                continue
            if crit == "bn_gamma" and m.kind != "gamma":
                continue
            if crit == "taylor" and m.kind not in ("kernel", "bias", "gamma", "beta"):
                continue
            w = cache.get(m)
            if crit == "l1":
                per_pos = _per_position(w, m.axis, "l1")
                total += per_pos[m.positions].sum(axis=1)
            elif crit == "l2":
                per_pos = _per_position(w, m.axis, "l2sq")
                total += np.sqrt(per_pos[m.positions].sum(axis=1))
            elif crit == "bn_gamma":
                total += np.abs(w)[m.positions].sum(axis=1)
            else:
                assert gradients is not None and not callable(gradients)
                g = _gradient_for(m, graph, gradients)
                if g is None:
                    continue
                prod = np.asarray(w, dtype=np.float64) * np.asarray(
                    keras.ops.convert_to_numpy(g), dtype=np.float64
                )
                per_pos = _per_position(prod, m.axis, "sum")
                total += np.square(per_pos[m.positions].sum(axis=1))
            used += 1
        if used == 0:
            notes.append(Note(f"group {grp.id}", f"no weights usable for '{crit}'; scores are 0"))
        scores[grp.id] = total
    return scores, notes


def compute_gradients(
    model: keras.Model,
    x: Any,
    y: Any,
    loss: Callable[[Any, Any], Any] | str = "sparse_categorical_crossentropy",
) -> dict[str, np.ndarray]:
    """Gradients of ``loss(y, model(x))`` for every weight, keyed like :func:`weight_key`.

    A convenience for the ``taylor`` criterion (TensorFlow backend). Trainable weights get
    their gradient; non-trainable weights are skipped.
    """
    import tensorflow as tf

    loss_fn = keras.losses.get(loss)
    keys: list[str] = []
    variables: list[Any] = []
    for path, layer in _all_layers(model):
        for w in layer.trainable_weights:
            if all(w is not v for v in variables):
                # relative name: unique inside layers with sub-layers (attention's
                # query/kernel, key/kernel...), the plain name elsewhere
                keys.append(f"{path}/{relative_weight_name(layer, w)}")
                variables.append(w)
    with tf.GradientTape() as tape:
        out = model(x, training=False)
        value = keras.ops.mean(loss_fn(y, out))
    grads = tape.gradient(value, [v.value for v in variables])
    return {k: np.asarray(g) for k, g in zip(keys, grads, strict=True) if g is not None}


def _all_layers(model: keras.Model, prefix: str = "") -> list[tuple[str, keras.layers.Layer]]:
    out: list[tuple[str, keras.layers.Layer]] = []
    for layer in model.layers:
        path = prefix + layer.name
        if isinstance(layer, keras.Model):
            out.extend(_all_layers(layer, path + "/"))
        else:
            out.append((path, layer))
    return out

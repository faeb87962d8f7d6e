"""Importance criteria (hand-computed) and channel selection."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
from keras import layers

from prunekit.structured import (
    build_dependency_graph,
    compute_gradients,
    group_importance,
    prune_channels,
    select_channels,
)


def _conv_dense() -> keras.Model:
    inp = keras.Input((4, 4, 2))
    h = layers.Conv2D(3, 1, name="c")(inp)
    h = layers.GlobalAveragePooling2D()(h)
    out = layers.Dense(2, name="d")(h)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(rng.normal(size=tuple(w.shape)).astype("float32"))
    return model


def _scores(model: keras.Model, criterion: str, **kw: object) -> np.ndarray:
    graph = build_dependency_graph(model)
    grp = graph.group_of("c")
    assert grp is not None
    scores, _ = group_importance(graph, criterion, **kw)  # type: ignore[arg-type]
    return scores[grp.id]


def test_l1_and_l2_sum_producer_filters_and_consumer_rows() -> None:
    model = _conv_dense()
    k = model.get_layer("c").kernel.numpy()
    dk = model.get_layer("d").kernel.numpy()
    l1 = np.abs(k).sum(axis=(0, 1, 2)) + np.abs(dk).sum(axis=1)
    l2 = np.sqrt((k**2).sum(axis=(0, 1, 2))) + np.sqrt((dk**2).sum(axis=1))
    np.testing.assert_allclose(_scores(model, "l1"), l1, rtol=1e-6)
    np.testing.assert_allclose(_scores(model, "l2"), l2, rtol=1e-6)


def test_bn_gamma_sums_over_coupled_batchnorms() -> None:
    inp = keras.Input((4, 4, 2))
    a = layers.BatchNormalization(name="bn_a")(layers.Conv2D(3, 1, name="c")(inp))
    b = layers.BatchNormalization(name="bn_b")(layers.Conv2D(3, 1, name="c2")(inp))
    out = layers.Conv2D(2, 1, name="out")(layers.Add()([a, b]))
    model = keras.Model(inp, out)
    model.get_layer("bn_a").gamma.assign(np.array([1.0, -2.0, 0.5], "float32"))
    model.get_layer("bn_b").gamma.assign(np.array([0.5, 0.5, -0.5], "float32"))
    np.testing.assert_allclose(_scores(model, "bn_gamma"), [1.5, 2.5, 1.0])


def test_bn_gamma_without_batchnorm_falls_back_to_l1() -> None:
    model = _conv_dense()
    graph = build_dependency_graph(model)
    scores, notes = group_importance(graph, "bn_gamma")
    l1, _ = group_importance(graph, "l1")
    np.testing.assert_allclose(scores[0], l1[0])
    assert any("used l1" in n.reason for n in notes)


def test_taylor_with_given_gradients() -> None:
    model = _conv_dense()
    k = model.get_layer("c").kernel.numpy()
    bias = model.get_layer("c").bias.numpy()
    dk = model.get_layer("d").kernel.numpy()
    grads = {
        "c/kernel": np.full_like(k, 2.0),
        "c/bias": np.ones_like(bias),
        "d/kernel": np.ones_like(dk),
    }
    expected = (2 * k.sum(axis=(0, 1, 2))) ** 2 + bias**2 + dk.sum(axis=1) ** 2
    np.testing.assert_allclose(_scores(model, "taylor", gradients=grads), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="gradients"):
        _scores(model, "taylor")


def test_taylor_with_gradient_callable_prunes() -> None:
    model = _conv_dense()
    x = np.random.default_rng(1).normal(size=(4, 4, 4, 2)).astype("float32")
    y = np.array([0, 1, 0, 1])
    grads = compute_gradients(model, x, y, loss="sparse_categorical_crossentropy")
    assert {"c/kernel", "c/bias", "d/kernel", "d/bias"} <= set(grads)
    result = prune_channels(
        model, 0.34, criterion="taylor", gradients=lambda m: compute_gradients(m, x, y)
    )
    assert len(result.kept["c"]) == 2


def test_uniform_selection_floor_ties_and_min_channels() -> None:
    scores = {0: np.array([3.0, 1.0, 2.0, 1.0]), 1: np.array([5.0, 4.0])}
    kept = select_channels(scores, 0.25)
    np.testing.assert_array_equal(kept[0], [0, 2, 3])  # tie 1 vs 3: lower index goes
    np.testing.assert_array_equal(kept[1], [0, 1])  # floor(0.25 * 2) == 0
    assert len(select_channels(scores, 0.9)[0]) == 1
    assert len(select_channels(scores, 0.9, min_channels=2)[0]) == 2
    assert select_channels(scores, 0.9, min_channels=3)[1].tolist() == [0, 1]


def test_global_selection_uses_normalised_scores() -> None:
    scores = {0: np.ones(4), 1: np.array([10.0, 0.1, 10.0, 10.0])}
    kept = select_channels(scores, 0.25, scope="global")
    np.testing.assert_array_equal(kept[0], [1, 2, 3])
    np.testing.assert_array_equal(kept[1], [0, 2, 3])
    again = select_channels(scores, 0.25, scope="global")
    assert all(np.array_equal(kept[g], again[g]) for g in kept)


def test_round_to_and_validation() -> None:
    scores = {0: np.arange(16.0)}
    assert len(select_channels(scores, 0.3, round_to=8)[0]) == 16
    assert len(select_channels(scores, 0.6, round_to=8)[0]) == 8
    assert len(select_channels(scores, 0.6, scope="global", round_to=8)[0]) == 8
    with pytest.raises(ValueError):
        select_channels(scores, 1.0)
    with pytest.raises(ValueError):
        select_channels(scores, 0.5, scope="layer")  # type: ignore[arg-type]


def test_global_scope_end_to_end() -> None:
    inp = keras.Input((6, 6, 3))
    h = layers.Conv2D(8, 3, activation="relu", name="a")(inp)
    h = layers.Conv2D(16, 3, activation="relu", name="b")(h)
    out = layers.Dense(2, name="out")(layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inp, out)
    result = prune_channels(model, 0.5, scope="global", min_channels=2)
    assert len(result.kept["a"]) + len(result.kept["b"]) == 12
    assert result.model(np.zeros((1, 6, 6, 3), "float32")).shape == (1, 2)

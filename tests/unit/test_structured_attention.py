"""Attention-head and FFN-width pruning (prunekit.structured.attention) on hand-made cases."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from prunekit.structured import (
    apply_pruning,
    build_dependency_graph,
    compute_gradients,
    group_importance,
    prune_channels,
)


def _randomize_biases(model: keras.Model, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if w.name in ("bias", "beta"):
            w.assign(rng.normal(0.0, 0.3, tuple(w.shape)).astype("float32"))
        elif w.name == "gamma":
            w.assign(rng.uniform(0.5, 1.5, tuple(w.shape)).astype("float32"))


def _mha(model: keras.Model, name: str = "mha") -> keras.layers.MultiHeadAttention:
    layer = model.get_layer(name)
    assert isinstance(layer, keras.layers.MultiHeadAttention)
    return layer


def _head_group(graph, layer: str):  # type: ignore[no-untyped-def]
    grp = graph.group_of(layer)
    assert grp is not None and grp.prunable, graph.notes
    return grp


@pytest.mark.parametrize("cross", [False, True])
def test_removing_a_head_equals_masking_it(cross: bool) -> None:
    keras.utils.set_random_seed(0)
    q_in = keras.Input((5, 8))
    v_in = keras.Input((7, 6)) if cross else q_in
    out = keras.layers.MultiHeadAttention(num_heads=4, key_dim=3, value_dim=2, name="mha")(
        q_in, v_in
    )
    model = keras.Model([q_in, v_in] if cross else q_in, out)
    _randomize_biases(model)
    rng = np.random.default_rng(1)
    xq = rng.normal(size=(3, 5, 8)).astype("float32")
    inputs = [xq, rng.normal(size=(3, 7, 6)).astype("float32")] if cross else xq

    graph = build_dependency_graph(model)
    grp = _head_group(graph, "mha")
    assert grp.size == 4
    # every head slice of Q, K, V (kernel and bias) and O (kernel) follows the head
    assert {(m.weight, m.axis) for m in grp.members} == {
        ("query/kernel", 1),
        ("query/bias", 0),
        ("key/kernel", 1),
        ("key/bias", 0),
        ("value/kernel", 1),
        ("value/bias", 0),
        ("attention_output/kernel", 0),
    }
    pruned, _ = apply_pruning(graph, {grp.id: np.array([0, 1, 3])})

    # masking head 2: its slice of the output projection set to zero
    o = _mha(model)._output_dense.kernel
    masked = np.array(o.numpy())
    masked[2] = 0.0
    o.assign(masked)
    reference = np.asarray(model(inputs))

    new = _mha(pruned)
    assert new.num_heads == 3
    assert tuple(new._query_dense.kernel.shape) == (8, 3, 3)
    assert tuple(new._value_dense.kernel.shape) == ((6 if cross else 8), 3, 2)
    assert tuple(new._output_dense.kernel.shape) == (3, 2, 8)
    np.testing.assert_allclose(np.asarray(pruned(inputs)), reference, atol=1e-5)
    # and the removed head did matter before masking: the test can fail
    assert pruned.count_params() < model.count_params()


def _encoder(d: int = 16, heads: int = 4, ff: int = 32, blocks: int = 2) -> keras.Model:
    x_in = keras.Input((6, 10))
    x = keras.layers.Dense(d, name="embed")(x_in)
    for i in range(blocks):
        h = keras.layers.LayerNormalization(name=f"ln1_{i}")(x)
        h = keras.layers.MultiHeadAttention(heads, key_dim=4, name=f"mha_{i}")(h, h)
        x = keras.layers.Add(name=f"res1_{i}")([x, h])
        h = keras.layers.LayerNormalization(name=f"ln2_{i}")(x)
        h = keras.layers.Dense(ff, activation="gelu", name=f"ff1_{i}")(h)
        h = keras.layers.Dropout(0.1)(h)
        h = keras.layers.Dense(d, name=f"ff2_{i}")(h)
        x = keras.layers.Add(name=f"res2_{i}")([x, h])
    x = keras.layers.LayerNormalization(name="ln_out")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(x_in, keras.layers.Dense(3, name="head")(x))


def test_encoder_half_heads_half_ffn_matches_masked_original() -> None:
    keras.utils.set_random_seed(0)
    model = _encoder()
    _randomize_biases(model)
    graph = build_dependency_graph(model)
    prunable = {tuple(g.sources) for g in graph.prunable_groups}
    # heads and FFN widths only: the residual stream goes through LayerNorm and is kept
    assert prunable == {("mha_0",), ("mha_1",), ("ff1_0",), ("ff1_1",)}
    embed = graph.group_of("embed")
    assert embed is not None and not embed.prunable
    assert any("LayerNormalization" in r for r in embed.blocked)

    # zero every slice of half the heads and half the FFN channels: the masked original
    rng = np.random.default_rng(3)
    values: dict[tuple[str, int], np.ndarray] = {}
    for grp in graph.prunable_groups:
        drop = rng.permutation(grp.size)[: grp.size // 2]
        for m in grp.members:
            key = (m.layer, m.weight_index)
            values.setdefault(key, np.array(graph.layers[m.layer].weights[m.weight_index]))
            index: list[object] = [slice(None)] * values[key].ndim
            index[m.axis] = m.positions[drop].ravel()
            values[key][tuple(index)] = 0.0
    for (layer, i), value in values.items():
        graph.layers[layer].weights[i].assign(value)
    x = rng.normal(size=(4, 6, 10)).astype("float32")
    reference = np.asarray(model(x, training=False))

    result = prune_channels(model, 0.5)  # l1: the zeroed heads/channels rank lowest
    pruned = result.model
    assert [_mha(pruned, f"mha_{i}").num_heads for i in range(2)] == [2, 2]
    assert [pruned.get_layer(f"ff1_{i}").units for i in range(2)] == [16, 16]
    assert pruned.count_params() < 0.7 * model.count_params()
    np.testing.assert_allclose(np.asarray(pruned(x, training=False)), reference, atol=1e-5)


def test_taylor_scores_reach_every_head_slice() -> None:
    keras.utils.set_random_seed(0)
    model = _encoder(blocks=1)
    graph = build_dependency_graph(model)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6, 10)).astype("float32")
    y = rng.integers(0, 3, size=8)
    grads = compute_gradients(model, x, y, keras.losses.SparseCategoricalCrossentropy(True))
    scores, notes = group_importance(graph, "taylor", grads)
    head = _head_group(graph, "mha_0")
    assert not [n for n in notes if str(head.id) in n.subject]
    assert scores[head.id].shape == (4,) and np.all(scores[head.id] > 0)

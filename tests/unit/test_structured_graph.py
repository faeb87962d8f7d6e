"""Hand-checked grouping and blocking cases for the channel dependency graph."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from keras import layers

from prunekit.structured import (
    ChannelGroup,
    DependencyGraph,
    Member,
    build_dependency_graph,
    prune_channels,
)


def _member(graph: DependencyGraph, group: ChannelGroup, layer: str, weight: str) -> Member:
    found = [m for m in group.members if m.layer == layer and m.weight == weight]
    assert len(found) == 1, (layer, weight, group.members)
    return found[0]


def _group(graph: DependencyGraph, source: str) -> ChannelGroup:
    grp = graph.group_of(source)
    assert grp is not None
    return grp


def _x(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(2, *shape)).astype("float32")


def test_add_couples_two_convs() -> None:
    inp = keras.Input((8, 8, 3))
    a = layers.Conv2D(8, 3, padding="same", name="a")(inp)
    b = layers.Conv2D(8, 1, name="b")(inp)
    h = layers.Add(name="add")([a, b])
    h = layers.Conv2D(4, 3, name="c")(h)
    out = layers.Dense(2, name="out")(layers.GlobalAveragePooling2D()(h))
    graph = build_dependency_graph(keras.Model(inp, out))

    grp = _group(graph, "a")
    assert grp is _group(graph, "b")
    assert grp.sources == ["a", "b"] and grp.size == 8 and grp.prunable
    assert set(grp.layers) == {"a", "b", "c"}
    consumer = _member(graph, grp, "c", "kernel")
    assert consumer.role == "in" and consumer.axis == 2
    np.testing.assert_array_equal(consumer.positions[:, 0], np.arange(8))
    assert _group(graph, "c") is not grp
    assert not _group(graph, "out").prunable  # produces the model output


def test_concatenate_offsets_and_depthwise_multiplier() -> None:
    inp = keras.Input((8, 8, 3))
    a = layers.Conv2D(6, 3, padding="same", name="a")(inp)
    b = layers.Conv2D(4, 3, padding="same", name="b")(inp)
    h = layers.Concatenate(name="cat")([a, b])
    h = layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(h)
    h = layers.Conv2D(3, 1, name="c")(h)
    graph = build_dependency_graph(keras.Model(inp, h))

    ga, gb = _group(graph, "a"), _group(graph, "b")
    assert ga is not gb
    dw_b = _member(graph, gb, "dw", "kernel")
    np.testing.assert_array_equal(dw_b.positions[:, 0], 6 + np.arange(4))
    # DepthwiseConv2D(depth_multiplier=2): input channel k feeds outputs 2k, 2k+1.
    c_b = _member(graph, gb, "c", "kernel")
    np.testing.assert_array_equal(c_b.positions, [[12, 13], [14, 15], [16, 17], [18, 19]])
    c_a = _member(graph, ga, "c", "kernel")
    np.testing.assert_array_equal(c_a.positions[0], [0, 1])


def test_flatten_owns_hw_rows_of_dense() -> None:
    inp = keras.Input((5, 5, 3))
    h = layers.Conv2D(4, 3, name="c")(inp)  # 3x3x4
    h = layers.Flatten()(h)
    out = layers.Dense(2, name="out")(h)
    graph = build_dependency_graph(keras.Model(inp, out))
    rows = _member(graph, _group(graph, "c"), "out", "kernel")
    assert rows.positions.shape == (4, 9)
    np.testing.assert_array_equal(rows.positions[1], [s * 4 + 1 for s in range(9)])


def test_squeeze_excitation_couples_expand_with_trunk() -> None:
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="c")(inp)
    s = layers.GlobalAveragePooling2D(keepdims=True)(x)
    s = layers.Conv2D(2, 1, activation="relu", name="se_reduce")(s)
    s = layers.Conv2D(8, 1, activation="sigmoid", name="se_expand")(s)
    h = layers.Multiply()([x, s])
    out = layers.Conv2D(4, 1, name="out")(h)
    graph = build_dependency_graph(keras.Model(inp, out))
    assert _group(graph, "c") is _group(graph, "se_expand")
    assert _group(graph, "se_reduce") is not _group(graph, "c")
    assert {"c", "se_reduce", "se_expand", "out"} <= set(_group(graph, "c").layers)


def test_shared_layer_ties_its_inputs() -> None:
    inp = keras.Input((6, 6, 3))
    a = layers.Conv2D(6, 3, padding="same", name="a")(inp)
    b = layers.Conv2D(6, 1, name="b")(inp)
    shared = layers.Conv2D(4, 3, name="shared")
    h = layers.Add()([shared(a), shared(b)])
    out = layers.Dense(2, name="out")(layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inp, out)
    graph = build_dependency_graph(model)
    assert _group(graph, "a") is _group(graph, "b")
    result = prune_channels(model, 0.5)
    assert result.model.get_layer("shared").kernel.shape == (3, 3, 3, 2)
    assert result.model(_x((6, 6, 3))).shape == (2, 2)


def _reasons(graph: DependencyGraph, source: str) -> str:
    return " | ".join(_group(graph, source).blocked)


def test_lambda_blocks_group_and_model_stays_valid() -> None:
    inp = keras.Input((6, 6, 3))
    h = layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    h = layers.Conv2D(6, 3, padding="same", name="c2")(h)
    h = layers.Lambda(lambda t: t * 2.0, name="double")(h)
    h = layers.Conv2D(4, 3, name="c3")(h)
    out = layers.Dense(2, name="out")(layers.Flatten()(h))
    model = keras.Model(inp, out)
    graph = build_dependency_graph(model)
    assert "Lambda" in _reasons(graph, "c2") and "double" in _reasons(graph, "c2")
    assert any(n.subject == "double" for n in graph.notes)
    assert _group(graph, "c1").prunable

    x = _x((6, 6, 3))
    result = prune_channels(model, 0.5)
    assert result.kept["c2"] == list(range(6))
    assert len(result.kept["c1"]) == 4
    assert result.model(x).shape == (2, 2)


def test_reshape_mixing_channels_is_blocked() -> None:
    inp = keras.Input((4, 4, 3))
    h = layers.Conv2D(4, 1, name="c")(inp)
    h = layers.Reshape((4, 16), name="mix")(h)  # channel axis changes size
    h = layers.Dense(3, name="d")(h)
    out = layers.Dense(2, name="out")(layers.Flatten()(h))
    model = keras.Model(inp, out)
    graph = build_dependency_graph(model)
    assert "mixes the channel axis" in _reasons(graph, "c")
    assert _group(graph, "d").prunable
    result = prune_channels(model, 0.5)
    assert result.kept["c"] == [0, 1, 2, 3]
    assert result.model(_x((4, 4, 3))).shape == (2, 2)


def test_unsafe_structures_are_blocked_with_reasons() -> None:
    class MyConv(layers.Conv2D):
        pass

    inp = keras.Input((6, 6, 3))
    a = MyConv(4, 3, padding="same", name="custom")(inp)
    b = layers.Conv2D(4, 3, padding="same", name="ln_src")(inp)
    b = layers.LayerNormalization(name="ln")(b)
    c = layers.Conv2D(3, 1, name="to_input")(inp)
    c = layers.Add(name="add_input")([c, inp])
    d = layers.Dense(5, activation="softmax", name="soft")(inp)
    e = layers.Conv2D(4, 1, name="cat_src")(inp)
    e = layers.Concatenate(axis=1, name="cat_rows")([e, e])
    f = layers.Conv2D(4, 1, name="bcast_src")(inp)
    f = layers.Multiply(name="bcast")([f, layers.Conv2D(1, 1, name="gate")(inp)])
    g = layers.Conv2D(4, 1, name="excluded_conv")(inp)
    merged = layers.Concatenate()(
        [
            layers.GlobalAveragePooling2D()(t)
            for t in (a, b, c, d, layers.Cropping2D(((0, 6), (0, 0)))(e), f, g)
        ]
    )
    out = layers.Dense(2, name="out")(merged)
    model = keras.Model(inp, out)
    graph = build_dependency_graph(model, exclude=[r"^excluded_"])

    assert "normalises across the channel axis" in _reasons(graph, "ln_src")
    assert "fixed" in _reasons(graph, "to_input")
    assert "softmax" in _reasons(graph, "soft")
    assert "not the channel axis" in _reasons(graph, "cat_src")
    assert "broadcasts along the channel axis" in _reasons(graph, "bcast_src")
    assert "exclude pattern" in _reasons(graph, "excluded_conv")
    assert "reaches model output" in _reasons(graph, "out")
    assert graph.group_of("custom") is None  # unknown layer type: not a source
    assert [s for g in graph.prunable_groups for s in g.sources] == []

    result = prune_channels(model, 0.5, exclude=[r"^excluded_"])  # nothing prunable
    x = _x((6, 6, 3))
    np.testing.assert_allclose(np.asarray(result.model(x)), np.asarray(model(x)), atol=1e-5)


def test_subclassed_model_is_reported_not_crashed() -> None:
    class Net(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.conv = layers.Conv2D(4, 3)

        def call(self, x: keras.KerasTensor) -> keras.KerasTensor:
            return self.conv(x)

    net = Net()
    net(_x((5, 5, 3)))
    graph = build_dependency_graph(net)
    assert graph.groups == [] and graph.notes
    result = prune_channels(net, 0.5)
    assert result.model is net and result.kept == {}
    assert any("unchanged" in n.reason for n in result.notes)
    assert any("FLOPs not counted" in n.reason for n in result.cost_before.notes)


def test_reshape_with_inferred_channel_axis_is_blocked() -> None:
    inp = keras.Input((4, 4, 3))
    h = layers.Conv2D(4, 1, name="c")(inp)
    h = layers.Reshape((-1,), name="flat")(h)
    out = layers.Dense(2, name="out")(h)
    graph = build_dependency_graph(keras.Model(inp, out))
    assert "inferred" in _reasons(graph, "c")


def test_reshape_to_vector_acts_like_flatten() -> None:
    inp = keras.Input((3, 3, 4))
    h = layers.Conv2D(4, 1, name="c")(inp)
    h = layers.Reshape((36,), name="flat")(h)
    out = layers.Dense(2, name="out")(h)
    model = keras.Model(inp, out)
    rows = _member(
        build_dependency_graph(model), _group(build_dependency_graph(model), "c"), "out", "kernel"
    )
    assert rows.positions.shape == (4, 9)
    result = prune_channels(model, 0.5)
    assert result.model.get_layer("flat").get_config()["target_shape"] == (18,)
    assert result.model(_x((3, 3, 4))).shape == (2, 2)

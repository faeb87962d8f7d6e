"""Pruned models must compute exactly what the original computes with the pruned channels
masked out. Masks are written by hand (by layer name and index arithmetic), independently
of the dependency graph, so these tests check the graph and the surgery together."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers

from prunekit.structured import apply_pruning, build_dependency_graph, prune_channels

ATOL = 1e-5


def _randomize(model: keras.Model, seed: int = 0) -> None:
    """Non-trivial biases and BatchNorm statistics, so wrong slices change outputs."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        if w.name in ("bias", "beta", "moving_mean"):
            w.assign(rng.normal(0.0, 0.5, shape).astype("float32"))
        elif w.name in ("gamma",):
            w.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
        elif w.name == "moving_variance":
            w.assign(rng.uniform(0.5, 2.0, shape).astype("float32"))


def _predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model(x, training=False))


def _clone_with_weights(model: keras.Model) -> keras.Model:
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _zero(layer: keras.layers.Layer, weight: str, axis: int, idx: list[int]) -> None:
    var = next(w for w in layer.weights if w.name == weight)
    value = np.array(var.numpy())
    index: list[slice | list[int]] = [slice(None)] * value.ndim
    index[axis] = list(idx)
    value[tuple(index)] = 0.0
    var.assign(value)


def _dropped(kept: list[int], size: int) -> list[int]:
    return sorted(set(range(size)) - set(kept))


def _check(
    model: keras.Model,
    x: np.ndarray,
    mask: Callable[[keras.Model, dict[str, list[int]]], None],
    tmp_path: Path | None = None,
    ratio: float = 0.5,
    round_to: int = 1,
) -> tuple[keras.Model, dict[str, list[int]]]:
    _randomize(model)
    result = prune_channels(model, ratio, round_to=round_to)
    drops = {name: _dropped(kept, _size(model, name)) for name, kept in result.kept.items()}
    assert any(drops.values()), "nothing was pruned"
    masked = _clone_with_weights(model)
    mask(masked, drops)
    np.testing.assert_allclose(_predict(result.model, x), _predict(masked, x), atol=ATOL)
    assert result.cost_after.params < result.cost_before.params
    assert result.cost_after.flops < result.cost_before.flops
    assert [lay.name for lay in result.model.layers] == [lay.name for lay in model.layers]
    if tmp_path is not None:
        path = tmp_path / "pruned.keras"
        result.model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        np.testing.assert_allclose(_predict(loaded, x), _predict(result.model, x), atol=ATOL)
    return result.model, drops


def _size(model: keras.Model, path: str) -> int:
    layer: keras.layers.Layer = model
    for part in path.split("/"):
        layer = layer.get_layer(part)  # type: ignore[attr-defined]
    cfg = layer.get_config()
    return int(cfg.get("filters") or cfg["units"])


def _x(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(2, *shape)).astype("float32")


def _conv_chain(c1: int, c2: int, pool: bool) -> tuple[keras.Model, Callable[..., None]]:
    """Conv-BN-ReLU-[MaxPool]-Conv-GAP-Dense, and its hand mask."""
    inp = keras.Input((8, 8, 3), name="img")
    h = layers.Conv2D(c1, 3, padding="same", name="c1")(inp)
    h = layers.BatchNormalization(name="bn1")(h)
    h = layers.ReLU(name="r1")(h)
    if pool:
        h = layers.MaxPooling2D(name="pool")(h)
    h = layers.Conv2D(c2, 3, padding="same", activation="relu", name="c2")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    out = layers.Dense(3, name="out")(h)

    def mask(m: keras.Model, d: dict[str, list[int]]) -> None:
        _zero(m.get_layer("c2"), "kernel", 2, d["c1"])
        _zero(m.get_layer("out"), "kernel", 0, d["c2"])

    return keras.Model(inp, out), mask


def test_conv_bn_relu_conv_chain(tmp_path: Path) -> None:
    model, mask = _conv_chain(8, 6, pool=False)
    pruned, drops = _check(model, _x((8, 8, 3)), mask, tmp_path)
    assert len(drops["c1"]) == 4 and len(drops["c2"]) == 3 and drops["out"] == []
    assert pruned.get_layer("c1").filters == 4
    assert pruned.get_layer("bn1").get_weights()[0].shape == (4,)
    assert pruned.input.name == "img" and pruned.output_names == model.output_names


def test_round_to_keeps_exactly_the_rounded_channels(tmp_path: Path) -> None:
    """Widths rounded to a multiple of 4 (12 -> keep 6 -> 8, 10 -> keep 5 -> 8): the pruned
    model still computes the original with exactly the dropped channels masked, and the
    rounded selection contains the unrounded one."""
    model, mask = _conv_chain(12, 10, pool=True)
    pruned, drops = _check(model, _x((8, 8, 3)), mask, tmp_path, round_to=4)
    assert pruned.get_layer("c1").filters == 8 and pruned.get_layer("c2").filters == 8
    assert pruned.get_layer("bn1").get_weights()[0].shape == (8,)
    plain = prune_channels(model, 0.5).kept
    assert set(_dropped(plain["c1"], 12)) >= set(drops["c1"])
    assert set(_dropped(plain["c2"], 10)) >= set(drops["c2"])


def test_residual_add_block(tmp_path: Path) -> None:
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="c0")(inp)
    h = layers.Conv2D(6, 3, padding="same", name="c1")(x)
    h = layers.BatchNormalization(name="bn1")(h)
    h = layers.Activation("relu", name="a1")(h)
    h = layers.Conv2D(8, 3, padding="same", name="c2")(h)
    h = layers.BatchNormalization(name="bn2")(h)
    h = layers.Add(name="add")([x, h])
    h = layers.Activation("relu", name="a2")(h)
    h = layers.Conv2D(4, 1, name="c3")(h)
    h = layers.GlobalAveragePooling2D()(h)
    out = layers.Dense(2, name="out")(h)
    model = keras.Model(inp, out)

    def mask(m: keras.Model, d: dict[str, list[int]]) -> None:
        assert d["c0"] == d["c2"]  # one coupled group
        _zero(m.get_layer("c1"), "kernel", 2, d["c0"])
        _zero(m.get_layer("c3"), "kernel", 2, d["c0"])
        _zero(m.get_layer("c2"), "kernel", 2, d["c1"])
        _zero(m.get_layer("out"), "kernel", 0, d["c3"])

    _check(model, _x((8, 8, 3)), mask, tmp_path)


def test_concatenate_offsets() -> None:
    inp = keras.Input((6, 6, 3))
    a = layers.Conv2D(6, 3, padding="same", activation="relu", name="a")(inp)
    b = layers.Conv2D(4, 3, padding="same", activation="relu", name="b")(inp)
    h = layers.Concatenate(name="cat")([a, b])
    h = layers.BatchNormalization(name="bn")(h)
    h = layers.Conv2D(5, 3, name="c")(h)
    h = layers.GlobalMaxPooling2D()(h)
    out = layers.Dense(2, name="out")(h)
    model = keras.Model(inp, out)

    def mask(m: keras.Model, d: dict[str, list[int]]) -> None:
        _zero(m.get_layer("c"), "kernel", 2, d["a"] + [6 + i for i in d["b"]])
        _zero(m.get_layer("out"), "kernel", 0, d["c"])

    pruned, _ = _check(model, _x((6, 6, 3)), mask)
    assert pruned.get_layer("c").kernel.shape == (3, 3, 5, 3)


def test_depthwise_and_separable() -> None:
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, padding="same", name="c0")(inp)
    y = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)
    y = layers.BatchNormalization(name="dw_bn")(y)
    y = layers.ReLU(6.0, name="dw_relu")(y)
    y = layers.Conv2D(4, 1, name="c1")(y)
    z = layers.SeparableConv2D(5, 3, depth_multiplier=2, name="sep")(x)
    h = layers.Concatenate()(
        [layers.GlobalAveragePooling2D()(y), layers.GlobalAveragePooling2D()(z)]
    )
    out = layers.Dense(2, name="out")(h)
    model = keras.Model(inp, out)

    def mask(m: keras.Model, d: dict[str, list[int]]) -> None:
        _zero(m.get_layer("c1"), "kernel", 2, [2 * c + j for c in d["c0"] for j in (0, 1)])
        _zero(m.get_layer("sep"), "depthwise_kernel", 2, d["c0"])
        _zero(m.get_layer("out"), "kernel", 0, d["c1"] + [4 + i for i in d["sep"]])

    pruned, _ = _check(model, _x((8, 8, 3)), mask)
    assert pruned.get_layer("dw").kernel.shape == (3, 3, 3, 2)
    assert pruned.get_layer("sep").pointwise_kernel.shape == (1, 1, 6, 3)


def test_flatten_dense_rows(tmp_path: Path) -> None:
    inp = keras.Input((6, 6, 2))
    h = layers.Conv2D(4, 3, activation="relu", name="c")(inp)  # 4x4x4
    h = layers.Flatten(name="flat")(h)
    h = layers.Dense(5, activation="relu", name="d1")(h)
    out = layers.Dense(2, name="out")(h)
    model = keras.Model(inp, out)

    def mask(m: keras.Model, d: dict[str, list[int]]) -> None:
        _zero(m.get_layer("d1"), "kernel", 0, [s * 4 + c for s in range(16) for c in d["c"]])
        _zero(m.get_layer("out"), "kernel", 0, d["d1"])

    pruned, _ = _check(model, _x((6, 6, 2)), mask, tmp_path)
    assert pruned.get_layer("d1").kernel.shape == (32, 3)


def test_squeeze_excitation_block(tmp_path: Path) -> None:
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="swish", name="c")(inp)
    s = layers.GlobalAveragePooling2D(name="se_squeeze")(x)
    s = layers.Dense(4, activation="relu", name="se_reduce")(s)
    s = layers.Dense(8, activation="sigmoid", name="se_expand")(s)
    s = layers.Reshape((1, 1, 8), name="se_reshape")(s)
    h = layers.Multiply(name="se_excite")([x, s])
    h = layers.Conv2D(4, 1, name="c2")(h)
    h = layers.GlobalAveragePooling2D()(h)
    out = layers.Dense(2, name="out")(h)
    model = keras.Model(inp, out)

    def mask(m: keras.Model, d: dict[str, list[int]]) -> None:
        assert d["c"] == d["se_expand"]
        _zero(m.get_layer("se_reduce"), "kernel", 0, d["c"])
        _zero(m.get_layer("c2"), "kernel", 2, d["c"])
        _zero(m.get_layer("se_expand"), "kernel", 0, d["se_reduce"])
        _zero(m.get_layer("out"), "kernel", 0, d["c2"])

    pruned, _ = _check(model, _x((8, 8, 3)), mask, tmp_path)
    assert pruned.get_layer("se_reshape").get_config()["target_shape"] == (1, 1, 4)


def test_nested_functional_model(tmp_path: Path) -> None:
    block_in = keras.Input((8, 8, 6), name="block_in")
    b = layers.Conv2D(6, 3, padding="same", name="conv")(block_in)
    b = layers.BatchNormalization(name="bn")(b)
    b = layers.ReLU(name="relu")(b)
    block = keras.Model(block_in, b, name="block")

    inp = keras.Input((8, 8, 3))
    h = layers.Conv2D(6, 3, padding="same", activation="relu", name="c0")(inp)
    h = block(h)
    h = layers.Conv2D(4, 3, name="c2")(h)
    h = layers.GlobalAveragePooling2D()(h)
    out = layers.Dense(2, name="out")(h)
    model = keras.Model(inp, out)

    def mask(m: keras.Model, d: dict[str, list[int]]) -> None:
        _zero(m.get_layer("block").get_layer("conv"), "kernel", 2, d["c0"])
        _zero(m.get_layer("c2"), "kernel", 2, d["block/conv"])
        _zero(m.get_layer("out"), "kernel", 0, d["c2"])

    pruned, drops = _check(model, _x((8, 8, 3)), mask, tmp_path)
    assert drops["block/conv"]
    inner = pruned.get_layer("block")
    assert inner.get_layer("conv").kernel.shape == (3, 3, 3, 3)
    assert inner.input.shape[-1] == 3


def test_sequential_model() -> None:
    model = keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            layers.Conv2D(8, 3, activation="relu", name="c1"),
            layers.MaxPooling2D(name="pool"),
            layers.Flatten(name="flat"),
            layers.Dropout(0.2, name="drop"),
            layers.Dense(3, name="out"),
        ]
    )

    def mask(m: keras.Model, d: dict[str, list[int]]) -> None:
        _zero(m.get_layer("out"), "kernel", 0, [s * 8 + c for s in range(4) for c in d["c1"]])

    pruned, _ = _check(model, _x((6, 6, 3)), mask)
    assert isinstance(pruned, keras.Sequential)


def test_pruning_zero_channels_keeps_outputs() -> None:
    inp = keras.Input((8, 8, 3))
    h = layers.Conv2D(8, 3, padding="same", name="c1")(inp)
    h = layers.BatchNormalization(name="bn1")(h)
    h = layers.ReLU()(h)
    h = layers.Conv2D(4, 3, padding="same", name="c2")(h)
    out = layers.GlobalAveragePooling2D(name="gap")(h)
    model = keras.Model(inp, out)
    _randomize(model)
    zero = [1, 4, 6]
    for name in ("gamma", "beta"):
        _zero(model.get_layer("bn1"), name, 0, zero)
    x = _x((8, 8, 3))
    reference = _predict(model, x)

    result = prune_channels(model, 3 / 8, criterion="bn_gamma")
    assert result.kept["c1"] == [0, 2, 3, 5, 7]
    assert result.kept["c2"] == [0, 1, 2, 3]  # reaches the model output
    np.testing.assert_allclose(_predict(result.model, x), reference, atol=ATOL)


def test_explicit_plan_rejects_blocked_group() -> None:
    inp = keras.Input((4, 4, 3))
    out = layers.Conv2D(4, 3, name="c")(inp)
    model = keras.Model(inp, out)
    graph = build_dependency_graph(model)
    with pytest.raises(ValueError, match="not prunable"):
        apply_pruning(graph, {0: [0, 1]})

"""FLOPs per sample against hand-computed numbers, dense and counting non-zero weights."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from prunekit.formats import ModelFormat
from prunekit.metrics.flops import FlopsError, count_flops, model_cost, nonzero_from_weights
from prunekit.model import LoadedModel, load_model
from tests import tiny_models

# mlp: 8 -> 16 -> 16 -> 3, 2 * MACs
MLP_FLOPS = 2 * (8 * 16 + 16 * 16 + 16 * 3)
# cnn: Conv2D(4, 3x3) on 12x12x1 -> 10x10x4, then Dense 400 -> 5 (BatchNorm not counted)
CONV_FLOPS = 2 * 10 * 10 * 4 * 3 * 3 * 1
CNN_FLOPS = CONV_FLOPS + 2 * 400 * 5


def _zero_first_half(model: keras.Model, layer: str) -> None:
    kernel = model.get_layer(layer).kernel
    flat = keras.ops.convert_to_numpy(kernel).reshape(-1).copy()
    flat[: flat.size // 2] = 0
    kernel.assign(flat.reshape(kernel.shape))


def _keras(model: keras.Model) -> LoadedModel:
    return LoadedModel(ModelFormat.KERAS, keras_model=model)


def test_dense_model() -> None:
    model = tiny_models.mlp()
    report = count_flops(_keras(model))
    assert report.dense == report.nonzero == MLP_FLOPS
    assert [o.type for o in report.ops] == ["MatMul"] * 3
    _zero_first_half(model, "dense_1")  # 64 of 128 weights zero
    report = count_flops(_keras(model))
    assert report.dense == MLP_FLOPS
    assert report.nonzero == 2 * (64 + 16 * 16 + 16 * 3)


def test_conv_model_keras_and_saved_model(tmp_path: Path) -> None:
    model = tiny_models.cnn()
    assert count_flops(_keras(model)).summary() == {"dense": CNN_FLOPS, "nonzero": CNN_FLOPS}
    _zero_first_half(model, "conv")  # 18 of 36 weights zero
    expected = {"dense": CNN_FLOPS, "nonzero": CONV_FLOPS // 2 + 2 * 400 * 5}
    assert count_flops(_keras(model)).summary() == expected
    saved = load_model(tiny_models.export_saved_model(model, tmp_path / "sm"), "saved_model")
    assert count_flops(saved).summary() == expected


def test_split_by_weight_recounts_new_weight_values_without_freezing(tmp_path: Path) -> None:
    model = tiny_models.cnn()
    for loaded in (
        _keras(model),
        load_model(tiny_models.export_saved_model(model, tmp_path / "sm"), "saved_model"),
    ):
        table = count_flops(loaded).by_weight()
        assert table is not None
        assert table["weights"] == {"conv/kernel": CONV_FLOPS, "logits/kernel": 2 * 400 * 5}
        assert table["dense"] == CNN_FLOPS and table["fixed_nonzero"] == 0
        conv = next(w for w in loaded.weights() if w.name == "conv/kernel")
        flat = conv.numpy().reshape(-1).copy()
        flat[:27] = 0  # 27 of 36 weights zero: the conv keeps a quarter of its work
        conv.assign(flat.reshape(conv.shape))
        expected = CONV_FLOPS // 4 + 2 * 400 * 5
        assert nonzero_from_weights(table, loaded.weights()) == expected
        assert count_flops(loaded).nonzero == expected  # what freezing again gives
        others = [w for w in loaded.weights() if w.name != "logits/kernel"]
        assert nonzero_from_weights(table, others) is None  # a weight it needs is gone


def test_depthwise_transposed_and_1d_convs() -> None:
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 2))
    x = keras.layers.DepthwiseConv2D(3, name="dw")(inp)  # -> 4x4x2
    x = keras.layers.Conv2DTranspose(3, 2, strides=2, name="up")(x)  # 4x4x2 -> 8x8x3
    x = keras.layers.Reshape((64, 3))(x)
    x = keras.layers.Conv1D(5, 4, name="c1d")(x)  # -> 61x5
    model = keras.Model(inp, x)
    report = count_flops(_keras(model))
    by_type = {o.type: o.flops for o in report.ops}
    assert by_type["DepthwiseConv2dNative"] == 2 * 4 * 4 * 2 * 3 * 3
    assert by_type["Conv2DBackpropInput"] == 2 * (4 * 4 * 2) * 2 * 2 * 3
    assert by_type["Conv2D"] == 2 * 61 * 5 * 4 * 3  # Conv1D runs as a Conv2D
    kernel = model.get_layer("c1d").kernel
    kernel.assign(np.zeros(kernel.shape, "float32"))
    zeroed = {o.type: o.nonzero_flops for o in count_flops(_keras(model)).ops}
    assert zeroed["Conv2D"] == 0  # the kernel density is found through ExpandDims
    assert zeroed["DepthwiseConv2dNative"] == by_type["DepthwiseConv2dNative"]


def test_unknown_input_dims_need_a_sample_shape() -> None:
    inp = keras.Input((None, 3))
    model = keras.Model(inp, keras.layers.Dense(2)(inp))
    with pytest.raises(FlopsError, match="unknown dimensions"):
        count_flops(_keras(model))
    assert count_flops(_keras(model), data_shape=[7, 3]).dense == 2 * 7 * 3 * 2


def test_the_two_named_counts_differ_only_by_the_non_matmul_layers() -> None:
    """``count_flops`` (matmul/conv) and ``model_cost`` (all ops) on one model: the same on a
    plain MLP; on the CNN, all ops adds exactly its BatchNorm's 2 per output element."""
    mlp = tiny_models.mlp()
    assert model_cost(mlp).flops == count_flops(_keras(mlp)).dense == MLP_FLOPS
    cnn = tiny_models.cnn()
    assert count_flops(_keras(cnn)).dense == CNN_FLOPS
    assert model_cost(cnn).flops == CNN_FLOPS + 2 * 10 * 10 * 4

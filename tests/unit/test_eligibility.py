"""Speed-up eligibility: which path could make each layer faster, from the model alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from prunekit.eligibility import speedup_paths, zero_layout
from prunekit.formats import ModelFormat
from prunekit.inspection import inspect_model
from prunekit.model import LoadedModel, load_model


def _rows(model: keras.Model) -> dict[str, dict[str, Any]]:
    report = speedup_paths(LoadedModel(ModelFormat.KERAS, keras_model=model))
    return {row["layer"]: row for row in report["layers"]}


def _option(row: dict[str, Any], path: str, dtype: str | None = None) -> dict[str, Any]:
    (found,) = [o for o in row["options"] if o["path"] == path and o.get("dtype") == dtype]
    return found


def lenet() -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((784,), name="pixels")
    x = keras.layers.Dense(300, activation="relu", name="fc1")(inp)
    x = keras.layers.Dense(100, activation="relu", name="fc2")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(x))


def convnet(stem_stride: int) -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=stem_stride, padding="same", name="conv3x3")(inp)
    x = keras.layers.Conv2D(12, 1, activation="relu", name="conv1x1")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(x))


def test_dense_layers_get_the_block_layouts_their_input_dimension_tiles_by() -> None:
    rows = _rows(lenet())
    fc1, fc2, logits = rows["fc1"], rows["fc2"], rows["logits"]
    assert fc1["kind"] == "dense" and fc1["shape"] == [784, 300]
    assert _option(fc1, "block_sparse_fc", "float32")["eligible"]  # 784 % 4 == 0
    assert _option(fc1, "block_sparse_fc", "int8")["eligible"]  # 784 % 16 == 0
    assert _option(fc2, "block_sparse_fc", "float32")["eligible"]  # 300 % 4 == 0
    int8 = _option(fc2, "block_sparse_fc", "int8")
    assert not int8["eligible"] and "300 inputs do not tile by 16" in int8["reason"]
    # hidden layers' channels can go; the logits are the model's output, fixed
    assert "channel_removal" in fc1["paths"] and "channel_removal" in fc2["paths"]
    assert not _option(logits, "channel_removal")["eligible"]
    assert _option(logits, "2:4")["eligible"]  # 100 inputs tile by 4
    assert fc1["sparsity"] == 0.0 and fc1["zero_layout"] is None and fc1["none"] is None


def test_convolutions_one_by_one_and_three_by_three() -> None:
    rows = _rows(convnet(stem_stride=1))
    one, three = rows["conv1x1"], rows["conv3x3"]
    assert one["kind"] == "conv2d_1x1" and three["kind"] == "conv2d"
    sparse = _option(one, "sparse_1x1_conv")
    assert not sparse["eligible"] and "not 3x3 stride 2" in sparse["reason"]
    assert not any(o["path"] == "sparse_1x1_conv" for o in three["options"])
    assert not any(o["path"] == "block_sparse_fc" for o in three["options"])
    assert "channel_removal" in three["paths"] and "channel_removal" in one["paths"]
    assert not _option(three, "2:4")["eligible"]  # 3 input channels
    assert _option(one, "2:4")["eligible"]  # 8 input channels

    # a stride-2 3x3 stem on 3 channels closed by global pooling: XNNPACK's sparse frame
    framed = _rows(convnet(stem_stride=2))["conv1x1"]
    assert _option(framed, "sparse_1x1_conv")["eligible"]
    assert "sparse_1x1_conv" in framed["paths"]


class Matmul(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = tf.Variable(np.ones((6, 5), np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32, name="x")])
    def __call__(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": tf.matmul(x, self.w)}


def test_a_saved_model_without_keras_graph_cannot_remove_channels(tmp_path: Path) -> None:
    module = Matmul()
    tf.saved_model.save(
        module, str(tmp_path / "sm"), signatures={"serving_default": module.__call__}
    )
    report = speedup_paths(load_model(tmp_path / "sm", ModelFormat.SAVED_MODEL))
    (row,) = report["layers"]
    assert row["kind"] == "dense" and row["class_name"] is None
    channels = _option(row, "channel_removal")
    assert not channels["eligible"] and "no Keras graph" in channels["reason"]
    assert not _option(row, "block_sparse_fc", "float32")["eligible"]  # 6 inputs
    assert row["paths"] == [] and "do not tile by 4" in row["none"]
    assert report["summary"]["none"] == 1


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [("dense", None), ("1x16", "1x16"), ("1x4", "1x4"), ("2:4", "2:4"), ("random", "unstructured")],
)
def test_zero_layout_of_hand_made_kernels(pattern: str, expected: str | None) -> None:
    w = np.arange(1, 32 * 8 + 1, dtype=np.float32).reshape(32, 8)  # (inputs, outputs)
    if pattern == "1x16":
        w[0:16, 0] = 0
        w[16:32, 5] = 0
    elif pattern == "1x4":
        w[4:8, 1] = 0
        w[20:24, 7] = 0
    elif pattern == "2:4":
        w[0::4] = 0
        w[1::4] = 0
    elif pattern == "random":
        w[[3, 10, 17], [0, 4, 6]] = 0
    assert zero_layout(w, inputs_axis=0) == expected


def test_inspection_carries_the_analysis(tmp_path: Path) -> None:
    path = tmp_path / "lenet.keras"
    lenet().save(path)
    info = inspect_model(path, "keras")
    layers = info["speedup_paths"]["layers"]
    assert [row["layer"] for row in layers] == ["fc1", "fc2", "logits"]
    assert info["speedup_paths"]["summary"]["block_sparse_fc"] == 3

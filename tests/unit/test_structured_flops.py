"""FLOPs / parameter counting on hand-computed models."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
from keras import layers

from prunekit.metrics.flops import model_cost


def test_conv_family_flops_by_hand() -> None:
    inp = keras.Input((8, 8, 3))
    h = layers.Conv2D(8, 3, padding="same")(inp)  # 2*9*3*8*64
    h = layers.BatchNormalization()(h)  # 2*8*8*8
    h = layers.ReLU()(h)
    h = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(h)  # 2*9*16*64
    h = layers.SeparableConv2D(4, 3, padding="same")(h)  # 2*64*(9*16 + 16*4)
    h = layers.MaxPooling2D(2)(h)  # 4 * (4*4*4)
    h = layers.Conv2DTranspose(2, 3, strides=2, padding="same")(h)  # 2*9*4*2*16
    h = layers.GlobalAveragePooling2D()(h)  # 8*8*2
    out = layers.Dense(5)(h)  # 2*2*5
    model = keras.Model(inp, out)
    expected = 27648 + 1024 + 18432 + 26624 + 256 + 2304 + 128 + 20
    cost = model_cost(model)
    assert cost.flops == expected
    assert cost.params == model.count_params()
    assert cost.non_trainable_params == 16  # BN moving mean + variance
    assert cost.notes == []


def test_conv1d_merge_nested_and_unknown_layers() -> None:
    inner_in = keras.Input((10, 3))
    inner = keras.Model(inner_in, layers.Conv1D(4, 3)(inner_in), name="inner")  # 2*3*3*4*8
    inp = keras.Input((10, 3))
    a = inner(inp)
    b = layers.Conv1D(4, 3, name="b")(inp)  # 576
    h = layers.Add()([a, b])  # 32
    h = layers.Lambda(lambda t: t * 2.0, name="lam")(h)
    out = layers.Dense(1)(h)  # 2*4*1 per step * 8 steps
    cost = model_cost(keras.Model(inp, out))
    assert cost.flops == 576 + 576 + 32 + 64
    assert [n.subject for n in cost.notes] == ["lam"]
    assert any(k.startswith("inner/") for k in cost.per_layer)


def test_attention_flops_by_hand_and_against_the_graph() -> None:
    """Q/K/V/O projections + scores + weighted sum, by hand (self- and cross-attention with
    its own value width); the count agrees with the graph count (every matmul/einsum TF
    runs), a gated layer attending along one of two axes included; a third of the heads is a
    third of the work."""
    from prunekit.metrics.flops import count_flops
    from prunekit.model import LoadedModel

    def both(inputs: list[keras.KerasTensor], out: keras.KerasTensor) -> tuple[int, int]:
        model = keras.Model(inputs, out)
        cost = model_cost(model)
        assert cost.notes == []
        shape = [int(d) for d in inputs[0].shape[1:]]
        graph = count_flops(LoadedModel(format="keras", keras_model=model), shape)
        return cost.flops, graph.dense

    x = keras.Input((5, 12))
    counted, graph = both([x], layers.MultiHeadAttention(3, key_dim=4)(x, x))
    # 4 projections of 5 tokens through 12x3x4 kernels; 3 heads x 5x5 positions x (4 + 4)
    assert counted == 4 * 2 * 5 * 12 * 3 * 4 + 2 * 3 * 5 * 5 * (4 + 4) == graph == 6960
    x = keras.Input((5, 12))
    half, _ = both([x], layers.MultiHeadAttention(3 // 3, key_dim=4)(x, x))
    assert half * 3 == counted

    q, v = keras.Input((5, 12)), keras.Input((7, 12))  # key = value: 7 positions
    mha = layers.MultiHeadAttention(3, key_dim=4, value_dim=6, output_shape=9)
    cross = model_cost(keras.Model([q, v], mha(q, v)))
    q_k_v_o = 2 * (5 * 12 * 3 * 4 + 7 * 12 * 3 * 4 + 7 * 12 * 3 * 6 + 5 * 3 * 6 * 9)
    assert cross.flops == q_k_v_o + 2 * 3 * 5 * 7 * (4 + 6) == 10200

    x = keras.Input((4, 5, 12))
    gated = layers.MultiHeadAttention(2, key_dim=4, attention_axes=(2,), use_gate=True)
    counted, graph = both([x], gated(x, x))
    assert counted == graph == 22400

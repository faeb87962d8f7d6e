"""Group importance: channels coupled through an Add and a depthwise layer are one group,
scored as the sum of every member's own score (hand-computed per layer)."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from prunekit.structured import build_dependency_graph, group_importance, select_channels


def _residual_depthwise() -> keras.Model:
    """a (3x3 conv) + b (1x1 conv) -> Add -> depthwise 3x3 -> c (1x1 conv) -> GAP -> Dense.
    a's, b's, the depthwise's and c's input channels are one group of 3."""
    inp = keras.Input((6, 6, 2))
    a = layers.Conv2D(3, 3, padding="same", use_bias=False, name="a")(inp)
    b = layers.Conv2D(3, 1, use_bias=False, name="b")(inp)
    h = layers.Add(name="add")([a, b])
    h = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(h)
    h = layers.Conv2D(4, 1, use_bias=False, name="c")(h)
    h = layers.GlobalAveragePooling2D()(h)
    out = layers.Dense(2, name="logits")(h)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(1)
    for w in model.weights:
        w.assign(rng.normal(size=tuple(w.shape)).astype("float32"))
    return model


def test_coupled_group_score_is_the_sum_of_member_scores() -> None:
    model = _residual_depthwise()
    graph = build_dependency_graph(model)
    grp = graph.group_of("a")
    assert grp is not None and graph.group_of("b") is grp
    assert set(grp.layers) == {"a", "b", "dw", "c"}
    k = {name: model.get_layer(name).get_weights()[0] for name in ("a", "b", "dw", "c")}
    # per member, per channel: producers over their output axis, the depthwise kernel over
    # its input-channel axis (2), the consumer c over its input axis (2)
    member_l1 = [
        np.abs(k["a"]).sum(axis=(0, 1, 2)),
        np.abs(k["b"]).sum(axis=(0, 1, 2)),
        np.abs(k["dw"]).sum(axis=(0, 1, 3)),
        np.abs(k["c"]).sum(axis=(0, 1, 3)),
    ]
    member_l2 = [
        np.sqrt((k["a"] ** 2).sum(axis=(0, 1, 2))),
        np.sqrt((k["b"] ** 2).sum(axis=(0, 1, 2))),
        np.sqrt((k["dw"] ** 2).sum(axis=(0, 1, 3))),
        np.sqrt((k["c"] ** 2).sum(axis=(0, 1, 3))),
    ]
    l1, _ = group_importance(graph, "l1")
    l2, _ = group_importance(graph, "l2")
    np.testing.assert_allclose(l1[grp.id], np.sum(member_l1, axis=0), rtol=1e-6)
    np.testing.assert_allclose(l2[grp.id], np.sum(member_l2, axis=0), rtol=1e-6)

    # Taylor: (sum over each member's slice of w * dL/dw)^2, summed over members
    grads = {f"{n}/kernel": np.full_like(k[n], 0.5) for n in ("a", "b", "dw", "c")}
    taylor, _ = group_importance(graph, "taylor", grads)
    member_taylor = [
        (0.5 * k["a"].sum(axis=(0, 1, 2))) ** 2,
        (0.5 * k["b"].sum(axis=(0, 1, 2))) ** 2,
        (0.5 * k["dw"].sum(axis=(0, 1, 3))) ** 2,
        (0.5 * k["c"].sum(axis=(0, 1, 3))) ** 2,
    ]
    np.testing.assert_allclose(taylor[grp.id], np.sum(member_taylor, axis=0), rtol=1e-6)

    # selection works on the group: one decision removes the channel from every member
    kept = select_channels(l1, 1 / 3)[grp.id]
    assert kept.tolist() == sorted(np.argsort(np.sum(member_l1, axis=0))[1:].tolist())

"""Real keras.applications architectures (random weights, small inputs, no downloads)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pytest

from prunekit.structured import apply_pruning, build_dependency_graph, prune_channels

BUILDERS: dict[str, Callable[[], keras.Model]] = {
    "mobilenetv2": lambda: keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10
    ),
    "efficientnetb0": lambda: keras.applications.EfficientNetB0(
        input_shape=(32, 32, 3), weights=None, classes=10
    ),
    "resnet50": lambda: keras.applications.ResNet50(
        input_shape=(32, 32, 3), weights=None, classes=10
    ),
    "densenet121": lambda: keras.applications.DenseNet121(
        input_shape=(32, 32, 3), weights=None, classes=10
    ),
}


def _randomize(model: keras.Model) -> None:
    rng = np.random.default_rng(0)
    for w in model.weights:
        shape = tuple(w.shape)
        if w.name in ("bias", "beta", "moving_mean"):
            w.assign(rng.normal(0.0, 0.1, shape).astype("float32"))
        elif w.name == "gamma":
            w.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
        elif w.name == "moving_variance":
            w.assign(rng.uniform(0.5, 2.0, shape).astype("float32"))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_application_prunes_and_zero_channels_match(name: str, tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    model = BUILDERS[name]()
    _randomize(model)
    graph = build_dependency_graph(model)
    prunable = graph.prunable_groups
    assert len(prunable) >= 10, graph.notes
    assert not graph.groups[-1].prunable  # the classifier output

    # Make 30% of every prunable group exactly zero at its producers, then prune them.
    rng = np.random.default_rng(1)
    kept: dict[int, list[int]] = {}
    values: dict[tuple[str, int], np.ndarray] = {}
    for grp in prunable:
        drop = rng.permutation(grp.size)[: int(0.3 * grp.size)]
        kept[grp.id] = sorted(set(range(grp.size)) - {int(i) for i in drop})
        for m in grp.members:
            if m.role != "out" or m.kind not in ("kernel", "bias", "gamma", "beta"):
                continue
            key = (m.layer, m.weight_index)
            if key not in values:
                values[key] = np.array(graph.layers[m.layer].weights[m.weight_index].numpy())
            index: list[object] = [slice(None)] * values[key].ndim
            index[m.axis] = m.positions[drop].ravel()
            values[key][tuple(index)] = 0.0
    for (layer, i), value in values.items():
        graph.layers[layer].weights[i].assign(value)

    x = np.random.default_rng(2).uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    reference = np.asarray(model(x, training=False))
    pruned, _ = apply_pruning(graph, kept)
    assert pruned.count_params() < model.count_params()
    np.testing.assert_allclose(np.asarray(pruned(x, training=False)), reference, atol=1e-5)

    path = tmp_path / f"{name}.keras"
    pruned.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), reference, atol=1e-5)
    assert [lay.name for lay in loaded.layers] == [lay.name for lay in model.layers]

    result = prune_channels(model, 0.3)
    assert result.cost_after.params < result.cost_before.params
    assert result.cost_after.flops < 0.8 * result.cost_before.flops
    assert result.model(x).shape == (2, 10)


def test_nested_application_backbone(tmp_path: Path) -> None:
    """Transfer-learning layout: an application model used as a layer of another model."""
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None
    )
    inp = keras.Input((32, 32, 3), name="image")
    h = base(inp)
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    h = keras.layers.Dense(16, activation="relu", name="head")(h)
    out = keras.layers.Dense(3, name="logits")(h)
    model = keras.Model(inp, out)
    _randomize(model)

    result = prune_channels(model, 0.3, criterion="l2")
    assert any(k.startswith(f"{base.name}/") and len(v) < 64 for k, v in result.kept.items())
    assert result.cost_after.flops < result.cost_before.flops
    assert len(result.kept["head"]) == 12

    path = tmp_path / "nested.keras"
    result.model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).uniform(0, 1, size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(result.model(x)), atol=1e-5)
    assert loaded.get_layer(base.name).input.shape[-1] == 3

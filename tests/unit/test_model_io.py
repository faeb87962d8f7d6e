"""Loading, pruning and saving real models in both formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from prunekit.formats import ModelFormat
from prunekit.metrics.size import raw_size
from prunekit.model import load_model
from prunekit.pipeline import prune
from prunekit.spec import PruneSpec
from tests import tiny_models


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    tmp = tmp_path_factory.mktemp("models")
    model = tiny_models.mlp()
    x = tiny_models.sample(model, 6)
    sm = tiny_models.export_saved_model(model, tmp / "sm")
    ks = tmp / "m.keras"
    model.save(ks)
    return sm, ks, x


def test_prunable_weights_are_kernels_only(exported: tuple[Path, Path, np.ndarray]) -> None:
    sm, ks, _ = exported
    for path, fmt in ((sm, "saved_model"), (ks, "keras")):
        names = [w.name for w in load_model(path, fmt).prunable_weights()]
        assert names == ["dense_1/kernel", "dense_2/kernel", "logits/kernel"]


def test_exclude_regex(exported: tuple[Path, Path, np.ndarray]) -> None:
    sm, _, _ = exported
    names = [w.name for w in load_model(sm, "saved_model").prunable_weights(["^logits"])]
    assert names == ["dense_1/kernel", "dense_2/kernel"]


def test_saved_model_round_trip(exported: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    sm, _, x = exported
    original = load_model(sm, "saved_model")
    before = {w.name: w.numpy() for w in original.weights()}
    result = prune(
        sm, "saved_model", PruneSpec(strategy={"name": "magnitude", "sparsity": 0.6}), tmp_path
    )
    assert result.format is ModelFormat.SAVED_MODEL
    restored = tf.saved_model.load(str(result.model_path))
    assert set(restored.signatures) == set(tf.saved_model.load(str(sm)).signatures)
    pruned = load_model(result.model_path, "saved_model")
    after = {w.name: w.numpy() for w in pruned.weights()}
    assert set(after) == set(before)
    prunable = {w.name for w in pruned.prunable_weights()}
    n = sum(before[k].size for k in prunable)
    zeros = sum(int((after[k] == 0).sum()) for k in prunable)
    assert zeros == round(0.6 * n)
    for name in after:
        changed = after[name] != before[name]
        # every changed weight became zero; non-prunable ones are untouched
        assert (after[name][changed] == 0).all()
        if name not in prunable:
            assert not changed.any()
    # the restored signature runs and equals a numpy forward pass with the pruned weights
    out = restored.signatures["serving_default"](features=tf.constant(x))["output_0"].numpy()
    h = np.maximum(x @ after["dense_1/kernel"] + after["dense_1/bias"], 0)
    h = np.maximum(h @ after["dense_2/kernel"] + after["dense_2/bias"], 0)
    np.testing.assert_allclose(out, h @ after["logits/kernel"] + after["logits/bias"], atol=1e-5)
    # Keras 3 exports keep a second, unused copy of every variable: it must be gone
    assert raw_size(result.model_path / "variables") < raw_size(sm / "variables")


def test_keras_round_trip(exported: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    _, ks, x = exported
    result = prune(
        ks,
        "keras",
        PruneSpec(strategy={"name": "magnitude", "sparsity": 0.5, "scope": "layer"}),
        tmp_path,
    )
    assert result.download.suffix == ".keras"
    pruned = load_model(result.download, "keras")
    for w in pruned.prunable_weights():
        assert int((w.numpy() == 0).sum()) == round(0.5 * w.size)
    assert pruned.predict(x).shape == (6, 3)
    m = result.metrics
    assert m["parameters"]["total"] == m["parameters"]["total_before"]
    assert m["parameters"]["nonzero"] < m["parameters"]["nonzero_before"]
    assert m["size_bytes"]["pruned_compressed"] < m["size_bytes"]["original_compressed"]
    assert [row["layer"] for row in m["layers"]] == ["dense_1", "dense_2", "logits"]


def test_unsafe_keras_lambda_is_refused(tmp_path: Path) -> None:
    import keras

    inp = keras.Input((4,))
    out = keras.layers.Lambda(lambda t: t * 2)(inp)
    path = tmp_path / "lambda.keras"
    keras.Model(inp, out).save(path)
    from prunekit.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="Lambda"):
        load_model(path, "keras")


def test_a_safe_mode_refusal_names_what_keras_refused_not_always_a_lambda() -> None:
    from prunekit.model import _keras_load_message

    other = _keras_load_message(
        ValueError("StringLookup: loading this vocabulary needs safe_mode=False (unsafe)")
    )
    assert "Lambda" not in other and "StringLookup" in other and "safe_mode=True" in other
    lam = _keras_load_message(
        ValueError("Requested the deserialization of a `lambda` function; pass safe_mode=False")
    )
    assert "a Lambda layer" in lam

"""Evaluation maths against hand-computed cases, and latency sanity."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
import pytest

from prunekit.data import Dataset, DatasetError, Split
from prunekit.evaluation import (
    accuracy,
    agreement,
    class_probabilities,
    eval_set,
    kl_divergence,
    loss_value,
    macro_f1,
    quality,
    relative_l2,
    top1_agreement,
    top_k_accuracy,
)
from prunekit.formats import ModelFormat
from prunekit.losses import LossName, LossSpec, keras_loss
from prunekit.metrics.latency import LatencyConfig, measure_latency
from prunekit.metrics.timing import TimingConfig
from prunekit.model import LoadedModel
from prunekit.pipeline import prune
from prunekit.spec import PruneSpec
from tests import tiny_models

SPARSE_LOGITS = LossSpec(LossName.SPARSE_CATEGORICAL, from_logits=True)


def test_accuracy_and_top_k() -> None:
    probs = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert accuracy(probs, np.array([1, 1, 1])) == pytest.approx(2 / 3)
    # 10 classes; the label is ranked 1st, 5th and 6th in the three rows
    scores = np.tile(np.arange(10, 0, -1, dtype=float), (3, 1))  # class 0 best ... 9 worst
    labels = np.array([0, 4, 5])
    assert top_k_accuracy(scores, labels, 5) == pytest.approx(2 / 3)
    assert top_k_accuracy(scores, labels, 1) == pytest.approx(1 / 3)


def test_macro_f1_small_confusion() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    # class 0: tp 1 fp 1 fn 1 -> 0.5; class 1: tp 2 fp 1 fn 0 -> 0.8; class 2: tp 1 fn 1 -> 2/3
    assert macro_f1(pred, labels) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert macro_f1(labels, labels) == 1.0
    # a class only ever predicted counts with F1 0 (as scikit-learn does)
    assert macro_f1(np.array([0, 3]), np.array([0, 0])) == pytest.approx((2 / 3 + 0) / 2)


def test_kl_relative_l2_agreement() -> None:
    p, q = np.array([[0.5, 0.5]]), np.array([[0.25, 0.75]])
    assert kl_divergence(p, q) == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(0.5 / 0.75))
    assert kl_divergence(p, p) == pytest.approx(0.0)
    assert relative_l2(np.array([3.0, 0.0]), np.array([3.0, 4.0])) == pytest.approx(0.8)
    assert top1_agreement(
        np.array([[1, 0], [0, 1], [1, 0]]), np.array([[1, 0], [1, 0], [1, 0]])
    ) == (pytest.approx(2 / 3))


def test_logits_are_softmaxed_for_agreement() -> None:
    ref = np.array([[0.0, math.log(3.0)]])  # softmax -> [0.25, 0.75]
    out = np.array([[0.0, 0.0]])  # softmax -> [0.5, 0.5]
    a = agreement(out, ref, SPARSE_LOGITS)
    assert a["kl_divergence"] == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5))
    assert a["top1"] == 0.0  # argmax of [0.5, 0.5] is class 0
    probs = agreement(np.array([[0.5, 0.5]]), np.array([[0.25, 0.75]]),
                      LossSpec(LossName.SPARSE_CATEGORICAL))  # fmt: skip
    assert probs["kl_divergence"] == pytest.approx(a["kl_divergence"])


def test_binary_outputs_become_two_classes() -> None:
    spec = LossSpec(LossName.BINARY, from_logits=True)
    probs = class_probabilities(np.array([[0.0], [math.log(3.0)]]), spec)
    np.testing.assert_allclose(probs, [[0.5, 0.5], [0.25, 0.75]])
    assert loss_value(np.array([[0.0]]), np.array([1]), spec) == pytest.approx(math.log(2))


@pytest.mark.parametrize(
    ("spec", "y"),
    [
        (LossSpec(LossName.SPARSE_CATEGORICAL, True), np.array([0, 2, 1, 2])),
        (LossSpec(LossName.CATEGORICAL, True), np.eye(3)[[0, 2, 1, 2]]),
        (LossSpec(LossName.BINARY, True), np.array([[0.0], [1.0], [1.0], [0.0]])),
        (LossSpec(LossName.MSE), np.arange(12, dtype=float).reshape(4, 3) / 10),
    ],
)
def test_loss_matches_keras(spec: LossSpec, y: np.ndarray) -> None:
    width = 1 if spec.name is LossName.BINARY else 3
    outputs = np.random.default_rng(0).normal(size=(4, width)).astype("float32")
    expected = float(keras_loss(spec)(y, outputs))
    assert loss_value(outputs, y, spec) == pytest.approx(expected, rel=1e-5)


def test_quality_keys_depend_on_task() -> None:
    logits = np.random.default_rng(1).normal(size=(20, 10))
    labels = np.arange(20) % 10
    q = quality(logits, labels, SPARSE_LOGITS)
    assert set(q) == {"loss", "accuracy", "top5_accuracy", "macro_f1"}
    assert set(quality(logits[:, :3], labels % 3, SPARSE_LOGITS)) == {
        "loss",
        "accuracy",
        "macro_f1",
    }
    assert set(quality(logits, logits, LossSpec(LossName.MSE))) == {"loss"}


def test_eval_set_caps_samples() -> None:
    split = Split(np.arange(50).reshape(50, 1), np.arange(50))
    es = eval_set("test", split, max_samples=10)
    assert len(es.x) == 10 and es.total == 50
    assert np.all(np.diff(es.y) > 0) and np.array_equal(es.x[:, 0], es.y)
    assert es.describe() == {"split": "test", "samples": 10, "split_samples": 50}


def test_latency_positive_medians() -> None:
    model = LoadedModel(ModelFormat.KERAS, keras_model=tiny_models.mlp())
    cfg = LatencyConfig(
        batch_sizes=(1, 4), timing=TimingConfig(warmup=1, min_pairs=5, budget_s=0.2)
    )
    out = measure_latency(model, [8], "float32", cfg)
    assert out["device"].endswith("CPU:0") or "GPU" in out["device"]
    for batch in (1, 4):
        row = out[f"batch_{batch}"]
        assert row["median_ms"] > 0 and row["p90_ms"] >= row["median_ms"] and row["runs"] >= 3
    keras.backend.clear_session()


def test_pipeline_evaluates_a_saved_model_before_and_after(tmp_path: Path) -> None:
    """Labels are the original model's own predictions: accuracy before is exactly 1."""
    keras_model = tiny_models.mlp(seed=5)
    x = np.random.default_rng(2).normal(size=(64, 8)).astype("float32")
    y = np.argmax(keras_model.predict(x, verbose=0), axis=-1)
    sm = tiny_models.export_saved_model(keras_model, tmp_path / "sm")
    spec = PruneSpec(strategy={"name": "magnitude", "sparsity": 0.3})
    result = prune(sm, "saved_model", spec, tmp_path / "out", data=Dataset(Split(x, y)))
    m = result.metrics
    assert m["evaluation"]["split"] == "train" and m["evaluation"]["samples"] == 64
    assert m["evaluation"]["loss"] == {
        "name": "sparse_categorical_crossentropy",
        "from_logits": True,
    }
    assert m["before"]["accuracy"] == 1.0
    assert m["after"]["agreement"]["top1"] == m["after"]["accuracy"]  # same labels, same argmax
    assert m["before"]["flops"]["dense"] == 2 * (8 * 16 + 16 * 16 + 16 * 3)
    assert m["after"]["flops"]["nonzero"] < m["after"]["flops"]["dense"]
    assert any("training split" in n for n in result.notes)


def test_pipeline_refuses_data_that_does_not_fit(tmp_path: Path) -> None:
    path = tmp_path / "m.keras"
    tiny_models.mlp().save(path)
    spec = PruneSpec(strategy={"name": "magnitude", "sparsity": 0.3})
    wrong_shape = Dataset(Split(np.zeros((4, 8, 8), "float32"), np.zeros(4, "int64")))
    with pytest.raises(DatasetError, match=r"x_train: dataset samples have shape \[8, 8\]"):
        prune(path, "keras", spec, tmp_path / "a", data=wrong_shape)
    x = np.zeros((4, 8), "float32")
    bad_labels = Dataset(Split(x, np.array([0, 1, 2, 0])), test=Split(x, np.array([0, 1, 7, 2])))
    with pytest.raises(DatasetError, match=r"labels range over \[0, 7\].*3 classes"):
        prune(path, "keras", spec, tmp_path / "b", data=bad_labels)

"""Distillation during recovery: the loss by hand, and that it really pulls the pruned model
toward the original (``fine_tune.distill``), through the pipeline, in both model formats."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from prunekit.data import Dataset, Split
from prunekit.distillation import blend, kd_loss
from prunekit.losses import LossName, LossSpec
from prunekit.pipeline import prune
from prunekit.progress import RecordingReporter
from prunekit.spec import PruneSpec
from tests.unit import strategy_helpers as h

LOGITS = LossSpec(LossName.SPARSE_CATEGORICAL, from_logits=True)
PROBS = LossSpec(LossName.SPARSE_CATEGORICAL, from_logits=False)


def test_kd_loss_by_hand() -> None:
    # teacher logits (0, ln 3): p = (1/4, 3/4); student (0, 0): q = (1/2, 1/2)
    teacher = np.array([[0.0, math.log(3.0)]], "float32")
    student = np.zeros((1, 2), "float32")
    kl_t1 = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)  # 0.1308
    assert float(kd_loss(LOGITS, teacher, student, 1.0)) == pytest.approx(kl_t1, rel=1e-5)
    # T = 2: logits halved, p = softmax(0, ln 3 / 2) = (1, sqrt 3) / (1 + sqrt 3); times T^2
    p1 = 1.0 / (1.0 + math.sqrt(3.0))
    kl_t2 = p1 * math.log(p1 / 0.5) + (1 - p1) * math.log((1 - p1) / 0.5)
    assert float(kd_loss(LOGITS, teacher, student, 2.0)) == pytest.approx(4 * kl_t2, rel=1e-5)
    # a softmax output gives the same term as its logits
    probs_t = np.array([[0.25, 0.75]], "float32")
    probs_s = np.array([[0.5, 0.5]], "float32")
    assert float(kd_loss(PROBS, probs_t, probs_s, 1.0)) == pytest.approx(kl_t1, rel=1e-4)
    # identical outputs: nothing to learn
    assert float(kd_loss(LOGITS, teacher, teacher, 4.0)) == pytest.approx(0.0, abs=1e-6)


def test_kd_loss_binary_and_regression() -> None:
    binary = LossSpec(LossName.BINARY, from_logits=True)
    # one logit z is the pair (0, z): the same as a two-class softmax on (0, z)
    two = kd_loss(LOGITS, np.array([[0.0, 1.0]]), np.array([[0.0, -1.0]]), 2.0)
    assert float(kd_loss(binary, np.array([[1.0]]), np.array([[-1.0]]), 2.0)) == pytest.approx(
        float(two), rel=1e-5
    )
    mse = LossSpec(LossName.MSE)
    value = kd_loss(mse, np.array([[1.0, 2.0]]), np.array([[0.0, 0.0]]), 4.0)
    assert float(value) == pytest.approx((1 + 4) / 2)  # temperature plays no part


def test_blend_weights_task_and_teacher() -> None:
    teacher = np.array([[0.0, math.log(3.0)]], "float32")
    student = np.zeros((1, 2), "float32")
    kd = float(kd_loss(LOGITS, teacher, student, 1.0))
    assert float(blend(2.0, LOGITS, teacher, student, 0.0, 1.0)) == pytest.approx(2.0)
    assert float(blend(2.0, LOGITS, teacher, student, 1.0, 1.0)) == pytest.approx(kd)
    assert float(blend(2.0, LOGITS, teacher, student, 0.25, 1.0)) == pytest.approx(
        0.75 * 2.0 + 0.25 * kd
    )


def test_distill_spec_is_validated() -> None:
    spec = PruneSpec(
        strategy={"name": "magnitude", "sparsity": 0.5},
        fine_tune={"epochs": 1, "distill": {}},
    )
    assert spec.fine_tune is not None and spec.fine_tune.distill is not None
    assert (spec.fine_tune.distill.alpha, spec.fine_tune.distill.temperature) == (0.5, 4.0)
    for bad in ({"alpha": 1.5}, {"temperature": 0}, {"beta": 1}):
        with pytest.raises(ValidationError):
            PruneSpec(
                strategy={"name": "magnitude", "sparsity": 0.5},
                fine_tune={"epochs": 1, "distill": bad},
            )


def _shuffled_labels(data: Dataset, seed: int = 0) -> Dataset:
    """The same images with labels permuted: the labels now teach nothing true."""
    y = np.random.default_rng(seed).permutation(data.train.y)
    return Dataset(train=Split(data.train.x, y), test=data.test)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return h.save_models(tmp_path_factory.mktemp("distill"))


@pytest.mark.parametrize("fmt", ["keras", "saved_model"])
def test_distillation_pulls_the_pruned_model_toward_the_original(
    models: dict[str, Path], tmp_path: Path, fmt: str
) -> None:
    """Fine-tuned on wrong labels, a pruned model forgets what the original predicted;
    with alpha 1 the teacher alone drives training and agreement stays high."""
    data = _shuffled_labels(h.digits(512))
    agreement = {}
    for alpha in (None, 1.0):
        fine_tune: dict = {"epochs": 6, "batch_size": 32, "learning_rate": 0.01}
        if alpha is not None:
            fine_tune["distill"] = {"alpha": alpha, "temperature": 2.0}
        spec = PruneSpec(
            strategy={"name": "magnitude", "sparsity": 0.5}, fine_tune=fine_tune, seed=0
        )
        reporter = RecordingReporter()
        out = tmp_path / f"{fmt}_{alpha}"
        res = prune(models[fmt], fmt, spec, out, reporter=reporter, data=data)
        agreement[alpha] = res.metrics["after"]["agreement"]["top1"]
        events = " ".join(str(c[1].get("message", "")) for c in reporter.calls if c[0] == "event")
        assert ("distilling from the original model" in events) == (alpha is not None)
    assert agreement[None] < 0.6, agreement
    assert agreement[1.0] > 0.85, agreement


def test_structured_fine_tuning_distils_too(tmp_path: Path) -> None:
    """``filter`` removes channels, then fine-tunes its smaller model against the original."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    out = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inp, out)
    true = h.digits(512)
    images = true.train.x.reshape(-1, 8, 8, 1)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images, true.train.y, epochs=10, batch_size=32, verbose=0)  # a teacher that knows
    path = tmp_path / "cnn.keras"
    model.save(path)
    shuffled = _shuffled_labels(true)
    data = Dataset(
        train=Split(images, shuffled.train.y),
        test=Split(true.test.x.reshape(-1, 8, 8, 1), true.test.y),
    )
    agreement = {}
    for alpha in (None, 1.0):
        fine_tune: dict = {"epochs": 6, "batch_size": 32, "learning_rate": 0.01}
        if alpha is not None:
            fine_tune["distill"] = {"alpha": alpha, "temperature": 2.0}
        spec = PruneSpec(strategy={"name": "filter", "ratio": 0.5}, fine_tune=fine_tune, seed=0)
        res = prune(path, "keras", spec, tmp_path / str(alpha), data=data)
        assert res.metrics["details"]["structured"]["channels"]["prunable_after"] == 8
        agreement[alpha] = res.metrics["after"]["agreement"]["top1"]
    assert agreement[None] < 0.6, agreement
    assert agreement[1.0] > 0.8, agreement

"""Masked training: zeros stay exactly zero, other weights move, progress and cancellation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prunekit.data import Dataset, Split
from prunekit.errors import CancelledError
from prunekit.masks import magnitude_masks
from prunekit.progress import RecordingReporter
from tests import tiny_models
from tests.unit import strategy_helpers as h


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return h.save_models(tmp_path_factory.mktemp("training"))


@pytest.mark.parametrize("fmt", ["keras", "saved_model"])
def test_masked_fine_tune_keeps_zeros_and_moves_the_rest(fmt: str, models: dict[str, Path]) -> None:
    model = h.load(models[fmt])
    ctx = h.context(
        model,
        {"name": "magnitude", "sparsity": 0.7},
        h.digits(),
        fine_tune={"epochs": 2, "batch_size": 32, "learning_rate": 1e-2},
    )
    masks = magnitude_masks(ctx.prunable_arrays(), 0.7)
    ctx.apply_masks(masks)
    before = ctx.prunable_arrays()
    loss_before = ctx.evaluate("train")["loss"]
    history = ctx.fine_tune(masks)
    after = ctx.prunable_arrays()
    assert len(history) == 2
    assert ctx.evaluate("train")["loss"] < loss_before
    for name, m in masks.items():
        assert np.all(after[name][~m] == 0)  # exactly zero, not merely small
        # the kept weights trained (some first-layer rows see only blank border pixels)
        assert np.mean(after[name][m] != before[name][m]) > 0.7
    progress = [d for kind, d in ctx.reporter.calls if kind == "progress"]  # type: ignore[attr-defined]
    assert progress and {"epoch", "step", "loss"} <= set(progress[-1])
    fractions = [d["fraction"] for d in progress]
    assert fractions == sorted(fractions) and fractions[0] >= 0.2 and fractions[-1] <= 0.85


def test_saved_model_batchnorm_statistics_frozen_is_reported(tmp_path: Path) -> None:
    model = tiny_models.cnn()
    sm = tiny_models.export_saved_model(model, tmp_path / "cnn")
    loaded = h.load(sm)
    rng = np.random.default_rng(0)
    data = Dataset(
        train=Split(rng.normal(size=(64, 12, 12, 1)).astype("float32"), rng.integers(0, 5, 64))
    )
    ctx = h.context(loaded, {"name": "magnitude", "sparsity": 0.5}, data, fine_tune={"epochs": 1})
    stats = {w.name: w.numpy() for w in loaded.weights() if not w.trainable}
    masks = magnitude_masks(ctx.prunable_arrays(), 0.5)
    ctx.apply_masks(masks)
    ctx.fine_tune(masks)
    events = [d["message"] for kind, d in ctx.reporter.calls if kind == "event"]  # type: ignore[attr-defined]
    assert any("stay frozen" in e for e in events)
    for w in loaded.weights():
        if not w.trainable:
            assert np.array_equal(w.numpy(), stats[w.name])


def test_fine_tune_stops_when_cancelled(models: dict[str, Path]) -> None:
    class Cancelling(RecordingReporter):
        def check_cancelled(self) -> None:
            if sum(1 for kind, _ in self.calls if kind == "progress") >= 3:
                raise CancelledError("cancelled")

    model = h.load(models["keras"])
    ctx = h.context(model, {"name": "magnitude", "sparsity": 0.5}, h.digits(), fine_tune={})
    ctx.reporter = Cancelling()
    with pytest.raises(CancelledError):
        ctx.fine_tune(magnitude_masks(ctx.prunable_arrays(), 0.5), epochs=5)
    assert sum(1 for kind, _ in ctx.reporter.calls if kind == "progress") == 3


def test_fine_tune_schedule_is_validated() -> None:
    from pydantic import ValidationError

    from prunekit.spec import FineTune

    assert FineTune().schedule == "cosine"
    assert FineTune(schedule="cosine").schedule == "cosine"
    with pytest.raises(ValidationError):
        FineTune(schedule="linear")  # type: ignore[arg-type]


def test_optimizer_names_are_the_specs() -> None:
    """One table for every strategy, with exactly the names the spec (and so the API) takes;
    ``sgd`` is plain SGD."""
    import re

    import keras
    from pydantic import ValidationError

    from prunekit.errors import SpecError
    from prunekit.spec import FineTune
    from prunekit.training import OPTIMIZERS, make_optimizer

    pattern = FineTune.model_json_schema()["properties"]["optimizer"]["pattern"]
    match = re.fullmatch(r"\^\((.*)\)\$", pattern)
    assert match is not None
    assert set(match.group(1).split("|")) == set(OPTIMIZERS)
    for name in OPTIMIZERS:
        assert FineTune(optimizer=name).optimizer == name
        assert isinstance(make_optimizer(name, 1e-3, "cosine", 10), keras.optimizers.Optimizer)
    assert make_optimizer("sgd", 1e-3).momentum == 0
    for name in ("sgd_momentum", "nadam"):
        with pytest.raises(ValidationError):
            FineTune(optimizer=name)
        with pytest.raises(SpecError, match="unknown optimizer"):
            make_optimizer(name, 1e-3)


def test_cosine_schedule_needs_total_steps() -> None:
    from prunekit.errors import SpecError
    from prunekit.training import make_optimizer

    with pytest.raises(SpecError):
        make_optimizer("adam", 1e-3, "cosine", None)
    with pytest.raises(SpecError):
        make_optimizer("adam", 1e-3, "step", 10)


@pytest.mark.parametrize("pieces", [1, 2])
def test_cosine_fine_tune_rate_decays_to_zero_over_the_run(
    pieces: int, models: dict[str, Path]
) -> None:
    """256 samples, batch 32: 8 steps per epoch, 2 epochs -> the cosine spans 16 steps,
    also when the run is fed one epoch per ``fit`` (as l0 does)."""
    import math

    lr = 1e-2
    ctx = h.context(
        h.load(models["keras"]),
        {"name": "magnitude", "sparsity": 0.5},
        h.digits(256),
        fine_tune={"epochs": 2, "batch_size": 32, "learning_rate": lr, "schedule": "cosine"},
    )
    config = ctx.train_config()
    assert config.schedule == "cosine"
    trainer = ctx.trainer(magnitude_masks(ctx.prunable_arrays(), 0.5), config)
    assert trainer.total_steps is None  # known only once fit sees the data
    assert ctx.data is not None
    if pieces == 1:
        trainer.fit(ctx.data.train, 2)
    else:
        trainer.fit(ctx.data.train, 1)
        assert int(trainer.optimizer.iterations) == 8
        # half way: 0.5 * lr * (1 + cos(pi / 2)) = lr / 2
        assert trainer.current_learning_rate() == pytest.approx(lr / 2, rel=1e-5)
        trainer.fit(ctx.data.train, 1)
    assert trainer.total_steps == 16
    assert int(trainer.optimizer.iterations) == 16
    schedule = trainer.optimizer._learning_rate  # the CosineDecay itself
    for step in (0, 4, 12):
        expected = 0.5 * lr * (1 + math.cos(math.pi * step / 16))
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)
    assert trainer.current_learning_rate() == pytest.approx(0.0, abs=1e-9)


def test_constant_fine_tune_rate_stays() -> None:
    from prunekit.training import make_optimizer

    opt = make_optimizer("adam", 3e-3)
    assert float(np.asarray(opt.learning_rate)) == pytest.approx(3e-3)


def test_label_smoothing_reaches_every_trainer_through_the_spec(models: dict[str, Path]) -> None:
    from prunekit.losses import keras_loss, training_loss

    raw = {"name": "magnitude", "sparsity": 0.5}
    data = h.digits()
    x, y = data.train.x[:32].astype("float32"), data.train.y[:32]
    values = {}
    for eps in (0.0, 0.2):
        ctx = h.context(h.load(models["keras"]), raw, data, fine_tune={"label_smoothing": eps})
        assert ctx.train_config().label_smoothing == eps
        trainer = ctx.trainer()
        out = trainer.model.call(x, training=False)
        values[eps] = float(np.asarray(trainer.loss_fn(y, out)))
        expected = training_loss(ctx.loss_spec, eps)(y, out)  # type: ignore[operator]
        assert values[eps] == pytest.approx(float(np.asarray(expected)), rel=1e-6)
    plain = keras_loss(ctx.loss_spec)(y, out)  # type: ignore[operator]
    assert values[0.0] == pytest.approx(float(np.asarray(plain)), rel=1e-6)
    assert values[0.2] != pytest.approx(values[0.0], rel=1e-3)  # the smoothing is applied


def test_fit_sees_every_sample_and_weights_the_epoch_mean() -> None:
    """5 samples in batches of 2: three steps (the last batch of one included); the epoch loss
    is the mean over samples, not over batches, and adds the model's own losses. Output 0
    (zero inputs), targets 1,1,1,1,4: MSE per sample 1,1,1,1,16, so 20/5 = 4, plus the
    kernel's L2 regulariser 0.5 * 1^2; a rate of 1e-12 leaves the weights where they are."""
    import keras

    from prunekit.formats import ModelFormat
    from prunekit.losses import LossName, LossSpec
    from prunekit.model import LoadedModel
    from prunekit.training import TrainConfig, Trainer

    inp = keras.Input((1,))
    dense = keras.layers.Dense(
        1, use_bias=False, kernel_initializer="ones", kernel_regularizer=keras.regularizers.L2(0.5)
    )
    model = LoadedModel(ModelFormat.KERAS, keras_model=keras.Model(inp, dense(inp)))
    trainer = Trainer(model, [], LossSpec(LossName.MSE), TrainConfig(1, 2, 1e-12, "sgd"))
    x = np.zeros((5, 1), "float32")
    y = np.array([1.0, 1.0, 1.0, 1.0, 4.0], "float32")
    history = trainer.fit(Split(x, y), 2)
    assert trainer.global_step == 6
    assert history == pytest.approx([4.5, 4.5], rel=1e-6)

"""The structured strategies (slimming, filter) end to end on tiny Conv+BN models.

The library's own tests prove the graph, importance and surgery; these prove what the
strategies add: sparsity training, the global gamma threshold, the requested reduction,
fine-tuning, data-free determinism, and that the result saves and loads in both formats.
"""

from __future__ import annotations

import os
from dataclasses import replace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from pydantic import ValidationError

from prunekit.context import PruningContext, StrategyOutcome
from prunekit.data import Dataset, Split
from prunekit.errors import SpecError
from prunekit.formats import ModelFormat
from prunekit.losses import LossName, LossSpec
from prunekit.model import LoadedModel, load_model
from prunekit.pipeline import prune
from prunekit.progress import RecordingReporter
from prunekit.spec import PruneSpec
from prunekit.strategies import build, get, parse_params
from prunekit.structured import model_cost
from prunekit.structured.export import export_saved_model, save_other_formats
from prunekit.structured.training import gamma_summary, keras_trainer, train
from prunekit.training import TrainConfig

WIDTHS = (8, 16)


def conv_bn(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1), name="image")
    x = inp
    for i, f in enumerate(WIDTHS):
        x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(3, name="logits")(x)
    return keras.Model(inp, out, name="conv_bn")


@pytest.fixture(scope="module")
def data() -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8, 8, 1)).astype("float32")
    y = (x[:, :4].mean(axis=(1, 2, 3)) > 0).astype("int64") + (x.mean(axis=(1, 2, 3)) > 0)
    return Dataset(Split(x, y))


def _run(
    model: keras.Model,
    strategy: dict[str, Any],
    data: Dataset | None = None,
    fine_tune: dict[str, Any] | None = None,
    exclude: list[str] | None = None,
    fmt: ModelFormat = ModelFormat.KERAS,
) -> tuple[StrategyOutcome, RecordingReporter]:
    spec = PruneSpec(strategy=strategy, fine_tune=fine_tune, exclude=exclude or [], seed=0)
    reporter = RecordingReporter()
    ctx = PruningContext(
        model=LoadedModel(fmt, keras_model=model), spec=spec, reporter=reporter, data=data
    )
    return build(parse_params(spec.strategy)).run(ctx), reporter


def _set_gammas(model: keras.Model, values: dict[str, list[float]]) -> None:
    for name, gamma in values.items():
        model.get_layer(name).gamma.assign(np.asarray(gamma, dtype="float32"))


def _widths(model: keras.Model) -> list[int]:
    return [int(model.get_layer(f"conv{i}").filters) for i in range(len(WIDTHS))]


# --------------------------------------------------------------------------- parameters
def test_params_validate_and_alias() -> None:
    assert get("slimnet").name == "slimming"
    assert parse_params({"name": "slimnet", "ratio": 0.5}).name == "slimming"
    with pytest.raises(ValidationError):
        parse_params({"name": "filter", "ratio": 1.0})
    with pytest.raises(ValidationError):
        parse_params({"name": "filter", "ratio": 0.5, "criterion": "bn_gamma"})
    with pytest.raises(ValidationError):
        parse_params({"name": "slimming", "ratio": 0.5, "min_channels": 0})
    assert parse_params({"name": "filter", "ratio": 0.5}).requires_data() is False  # type: ignore[attr-defined]
    taylor = parse_params({"name": "filter", "ratio": 0.5, "criterion": "taylor"})
    assert taylor.requires_data() is True  # type: ignore[attr-defined]
    assert parse_params({"name": "slimming", "ratio": 0.5}).requires_data() is True  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------- slimming
def test_sparsity_training_drives_gammas_towards_zero(data: Dataset) -> None:
    """Same data, seed and optimizer; only lambda differs."""
    rng = np.random.default_rng(3)
    start = {f"bn{i}": rng.uniform(0.1, 0.5, f).tolist() for i, f in enumerate(WIDTHS)}
    results = {}
    for lam in (0.0, 1.0):
        model = conv_bn()
        _set_gammas(model, start)
        gammas = [model.get_layer(f"bn{i}").gamma for i in range(len(WIDTHS))]
        trainer = keras_trainer(
            model,
            LossSpec(LossName.SPARSE_CATEGORICAL, from_logits=True),
            TrainConfig(epochs=4, batch_size=32, learning_rate=0.02, optimizer="adam"),
            l1_lambda=lam,
            gammas=gammas,
            seed=0,
        )
        train(trainer, data.train.x, data.train.y)
        results[lam] = gamma_summary(gammas, threshold=0.05)
    plain, sparse = results[0.0], results[1.0]
    assert sparse["sum_abs"] < 0.3 * plain["sum_abs"]
    assert sparse["below_threshold"] >= 0.75 * sparse["channels"]
    assert plain["below_threshold"] <= 0.25 * plain["channels"]


@pytest.mark.parametrize(
    ("schedule", "w_after", "final_rate"),
    # loss w^2 (gradient 2w), lr 0.1, two steps. Plain SGD: 1 -> 0.8 -> 0.64 (momentum 0.9,
    # what structured "sgd" used to be, would give 0.46); cosine over the two steps: the
    # second update is at 0.05 (0.8 -> 0.72) and the rate ends at 0.
    [("constant", 0.64, 0.1), ("cosine", 0.72, 0.0)],
)
def test_structured_training_uses_the_shared_optimizers_and_schedules(
    schedule: str, w_after: float, final_rate: float
) -> None:
    inp = keras.Input((1,))
    model = keras.Model(inp, keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")(inp))
    x, y = np.ones((2, 1), "float32"), np.zeros((2, 1), "float32")
    config = TrainConfig(1, 1, 0.1, "sgd", schedule)
    report = train(keras_trainer(model, LossSpec(LossName.MSE), config), x, y)
    assert report.steps == 2
    assert float(model.weights[0].numpy().ravel()[0]) == pytest.approx(w_after, rel=1e-5)
    assert report.final_learning_rate == pytest.approx(final_rate, abs=1e-7)
    with pytest.raises(SpecError, match="unknown optimizer"):
        keras_trainer(model, LossSpec(LossName.MSE), replace(config, optimizer="sgdm"))


# hand-picked BatchNorm scales of conv_bn() for the slimming threshold tests
BN0_GAMMAS = [0.9, 0.01, 0.5, 0.02, 0.8, 0.03, 0.7, 0.6]
BN1_GAMMAS = [0.05, 0.4, 0.04, 0.3, 0.06, 0.9, 0.1, 0.8, 0.7, 0.6, 0.5, 0.45, 0.35, 0.25, 0.2, 0.15]


def slim_hand_gammas(**strategy: Any) -> tuple[StrategyOutcome, RecordingReporter]:
    """``slimming`` on conv_bn() with the hand-picked scales: no sparsity training, no
    fine-tune, so the cut alone decides the result."""
    model = conv_bn()
    _set_gammas(model, {"bn0": BN0_GAMMAS, "bn1": BN1_GAMMAS})
    return _run(
        model,
        {"name": "slimming", "sparsity_epochs": 0, **strategy},
        data=Dataset(Split(np.zeros((4, 8, 8, 1), "float32"), np.zeros(4, "int64"))),
        fine_tune={"epochs": 0},
    )


def test_slimming_removes_the_smallest_gammas_globally() -> None:
    """Raw |gamma| compared across layers (hand-picked values), not per-layer ranks."""
    bn1 = BN1_GAMMAS
    # 24 channels, ratio 0.25 -> the 6 smallest: bn0 {1, 3, 5}, bn1 {2, 0, 4}
    outcome, reporter = slim_hand_gammas(ratio=0.25)
    new = outcome.model.keras_model  # type: ignore[union-attr]
    np.testing.assert_allclose(new.get_layer("bn0").gamma.numpy(), [0.9, 0.5, 0.8, 0.7, 0.6])
    expected_bn1 = [g for i, g in enumerate(bn1) if i not in (0, 2, 4)]
    np.testing.assert_allclose(new.get_layer("bn1").gamma.numpy(), expected_bn1)
    s = outcome.details["structured"]
    assert s["kept"]["conv0"] == {"before": 8, "after": 5}
    assert s["channels"]["removed_fraction"] == pytest.approx(0.25)
    assert s["gamma"]["threshold"] == pytest.approx(0.06)
    assert s["gamma"]["smallest_kept"] == pytest.approx(0.1)
    # global, not uniform: uniform 0.25 would take 2 from bn0 and 4 from bn1
    assert [c[1]["name"] for c in reporter.calls if c[0] == "phase"] == ["removing channels"]

    # min_channels: bn0 may lose only 2 of 8, so bn1 gives up its 4 smallest
    outcome, _ = slim_hand_gammas(ratio=0.25, min_channels=6)
    new = outcome.model.keras_model  # type: ignore[union-attr]
    np.testing.assert_allclose(new.get_layer("bn0").gamma.numpy(), [0.9, 0.5, 0.8, 0.03, 0.7, 0.6])
    assert _widths(new) == [6, 12]
    assert 0.1 not in new.get_layer("bn1").gamma.numpy().round(4).tolist()


def test_slimming_end_to_end_saves_and_loads_both_formats(data: Dataset, tmp_path: Path) -> None:
    model = conv_bn()
    outcome, reporter = _run(
        model,
        {"name": "slimming", "ratio": 0.5, "sparsity_epochs": 2, "l1_lambda": 0.01},
        data=data,
        fine_tune={"epochs": 1, "batch_size": 32, "schedule": "cosine"},
    )
    s = outcome.details["structured"]
    g = s["gamma"]
    assert g["after_sparsity_training"]["sum_abs"] < g["before_sparsity_training"]["sum_abs"]
    assert s["channels"] == {
        "prunable_before": 24,
        "prunable_after": 12,
        "removed_fraction": 0.5,
        "groups": 3,
        "prunable_groups": 2,
    }
    assert s["flops_all_ops"]["after"] < s["flops_all_ops"]["before"]
    assert s["params"]["after"] < s["params"]["before"]
    assert len(s["sparsity_training"]["epoch_losses"]) == 2
    assert len(s["fine_tune"]["epoch_losses"]) == 1
    # fine_tune.schedule reaches the fine-tuning; sparsity training keeps its constant rate
    sparse, ft = s["sparsity_training"], s["fine_tune"]
    assert (sparse["schedule"], sparse["final_learning_rate"]) == ("constant", pytest.approx(1e-3))
    assert (ft["schedule"], ft["final_learning_rate"]) == ("cosine", pytest.approx(0.0, abs=1e-9))
    # the output layer's group is blocked and says so, in details and in the event log
    assert any("reaches model output" in n for n in s["blocked"])
    assert any(
        c[0] == "event" and "reaches model output" in c[1]["message"] for c in reporter.calls
    )
    phases = [c[1]["name"] for c in reporter.calls if c[0] == "phase"]
    assert phases == ["sparsity training", "removing channels", "fine-tuning"]

    pruned = outcome.model
    assert pruned is not None and pruned.format is ModelFormat.KERAS
    x = data.train.x[:5]
    expected = np.asarray(pruned.keras_model(x, training=False))  # type: ignore[misc]
    keras_path = pruned.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(keras_path, safe_mode=True)
    np.testing.assert_allclose(np.asarray(reloaded(x, training=False)), expected, atol=1e-5)
    assert sum(_widths(reloaded)) == 12

    alt = save_other_formats(pruned, tmp_path / "out")
    assert set(alt) == {ModelFormat.SAVED_MODEL}
    import zipfile

    zipfile.ZipFile(alt[ModelFormat.SAVED_MODEL]).extractall(tmp_path / "sm")
    restored = tf.saved_model.load(str(tmp_path / "sm"))
    assert set(restored.signatures) == {"serving_default", "serve"}
    out = restored.signatures["serving_default"](image=tf.constant(x))["output_0"]
    np.testing.assert_allclose(np.asarray(out), expected, atol=1e-5)
    again = load_model(tmp_path / "sm", "saved_model")
    assert again.keras_model is not None  # prunekit SavedModels keep their Keras graph
    assert model_cost(again.keras_model).flops == s["flops_all_ops"]["after"]


def test_slimming_needs_data_and_batchnorm() -> None:
    with pytest.raises(SpecError) as err:
        _run(conv_bn(), {"name": "slimming", "ratio": 0.5})
    assert err.value.reason == "dataset_required"
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,), name="x")
    h = keras.layers.Dense(8, activation="relu", name="hidden")(inp)
    mlp = keras.Model(inp, keras.layers.Dense(2, name="out")(h))
    tiny = Dataset(Split(np.zeros((4, 8), "float32"), np.zeros(4, "int64")))
    with pytest.raises(SpecError) as err:
        _run(mlp, {"name": "slimming", "ratio": 0.5}, data=tiny)
    assert err.value.reason == "no_batchnorm"


# ------------------------------------------------------------------------------ filter
def test_filter_l1_is_data_free_and_deterministic() -> None:
    model = conv_bn()
    before = [w.numpy().copy() for w in model.weights]
    a, _ = _run(model, {"name": "filter", "ratio": 0.5})
    b, _ = _run(model, {"name": "filter", "ratio": 0.5})
    for w, old in zip(model.weights, before, strict=True):  # the input model is untouched
        np.testing.assert_array_equal(w.numpy(), old)
    sa, sb = a.details["structured"], b.details["structured"]
    assert sa["data_free"] is True and sa["fine_tune"] is None
    assert (
        sa["kept"]
        == sb["kept"]
        == {
            "conv0": {"before": 8, "after": 4},
            "conv1": {"before": 16, "after": 8},
            "logits": {"before": 3, "after": 3},
        }
    )
    for wa, wb in zip(a.model.keras_model.weights, b.model.keras_model.weights, strict=True):  # type: ignore[union-attr]
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())
    # the kept conv0 filters are the 4 of largest L1 norm (conv0 only feeds bn0 and conv1)
    k0 = model.get_layer("conv0").kernel.numpy()
    k1 = model.get_layer("conv1").kernel.numpy()
    norms = np.abs(k0).sum(axis=(0, 1, 2)) + np.abs(k1).sum(axis=(0, 1, 3))
    top = np.sort(np.argsort(-norms)[:4])
    np.testing.assert_allclose(
        a.model.keras_model.get_layer("conv0").kernel.numpy(),  # type: ignore[union-attr]
        k0[..., top],
    )
    assert sa["flops_all_ops"]["after"] < sa["flops_all_ops"]["before"]


def test_filter_respects_exclude_and_min_channels() -> None:
    outcome, reporter = _run(
        conv_bn(), {"name": "filter", "ratio": 0.75, "min_channels": 6}, exclude=["^conv0$"]
    )
    s = outcome.details["structured"]
    assert s["kept"]["conv0"] == {"before": 8, "after": 8}  # excluded: blocked
    assert s["kept"]["conv1"] == {"before": 16, "after": 6}  # 16 - 12 = 4 < 6
    assert any("exclude" in n for n in s["blocked"])
    assert any(c[0] == "event" and "exclude" in c[1]["message"] for c in reporter.calls)


def test_filter_taylor_uses_data_and_fine_tunes(data: Dataset) -> None:
    with pytest.raises(SpecError) as err:
        _run(conv_bn(), {"name": "filter", "ratio": 0.5, "criterion": "taylor"})
    assert err.value.reason == "dataset_required"
    outcome, _ = _run(
        conv_bn(),
        {"name": "filter", "ratio": 0.5, "criterion": "taylor", "scope": "global"},
        data=data,
        fine_tune={"epochs": 1, "batch_size": 64},
    )
    s = outcome.details["structured"]
    assert s["data_free"] is False and len(s["fine_tune"]["epoch_losses"]) == 1
    assert s["channels"]["prunable_after"] == 12
    assert s["flops_all_ops"]["after"] < s["flops_all_ops"]["before"]
    pred = outcome.model.predict(data.train.x[:8])  # type: ignore[union-attr]
    assert pred.shape == (8, 3) and np.isfinite(pred).all()


@pytest.mark.parametrize(
    ("schedule", "final_rate"), [(None, 0.0), ("constant", 0.01), ("cosine", 0.0)]
)
def test_filter_fine_tune_follows_the_spec_schedule(
    data: Dataset, schedule: str | None, final_rate: float
) -> None:
    """Absent, ``fine_tune.schedule`` is the spec's default (cosine), as in every strategy."""
    fine_tune: dict[str, Any] = {"epochs": 1, "batch_size": 64, "learning_rate": 0.01}
    if schedule is not None:
        fine_tune["schedule"] = schedule
    outcome, reporter = _run(conv_bn(), {"name": "filter", "ratio": 0.5}, data, fine_tune)
    ft = outcome.details["structured"]["fine_tune"]
    expected = schedule or "cosine"
    assert ft["schedule"] == expected
    assert ft["final_learning_rate"] == pytest.approx(final_rate, abs=1e-9)
    assert any(c[0] == "event" and f"({expected})" in c[1]["message"] for c in reporter.calls)


# ------------------------------------------------------------------------ model formats
def test_structured_needs_a_keras_graph(tmp_path: Path) -> None:
    model = conv_bn()
    model.export(str(tmp_path / "generic"), verbose=False)
    generic = load_model(tmp_path / "generic", "saved_model")
    assert generic.keras_model is None
    spec = PruneSpec(strategy={"name": "filter", "ratio": 0.5})
    ctx = PruningContext(model=generic, spec=spec)
    with pytest.raises(SpecError) as err:
        build(parse_params(spec.strategy)).run(ctx)
    assert err.value.reason == "keras_graph_required"
    assert ".keras" in str(err.value)


def test_prunekit_saved_model_is_pruned_and_keeps_its_signatures(tmp_path: Path) -> None:
    """A SavedModel prunekit wrote (custom signature name) -> filter -> same signatures."""
    model = conv_bn()
    export_saved_model(model, tmp_path / "sm", ["predict", "serving_default"])
    spec = PruneSpec(strategy={"name": "filter", "ratio": 0.5})
    result = prune(tmp_path / "sm", "saved_model", spec, tmp_path / "out")
    assert result.format is ModelFormat.SAVED_MODEL
    assert set(result.alternates) == {ModelFormat.KERAS}
    restored = tf.saved_model.load(str(result.model_path))
    assert set(restored.signatures) == {"predict", "serving_default"}
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 1)).astype("float32")
    out = restored.signatures["predict"](image=tf.constant(x))["output_0"]
    alt = keras.saving.load_model(result.alternates[ModelFormat.KERAS], safe_mode=True)
    np.testing.assert_allclose(np.asarray(out), np.asarray(alt(x, training=False)), atol=1e-5)
    assert _widths(alt) == [4, 8]
    details = result.metrics["details"]["structured"]
    assert result.metrics["parameters"]["total"] < result.metrics["parameters"]["total_before"]
    assert details["params"]["after"] == result.metrics["parameters"]["total"]


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _unzip(name: str, dest: Path) -> Path:
    import zipfile

    zipfile.ZipFile(FIXTURES / name).extractall(dest)
    return dest


def test_tf_keras_saved_model_is_rebuilt_and_pruned(tmp_path: Path) -> None:
    """A Keras 2 (tf_keras) SavedModel: the graph comes from keras_metadata.pb, the weights
    from its variables; pruning keeps its signature, input and output names."""
    src = _unzip("tf_keras_conv_bn.zip", tmp_path / "k2")
    loaded = load_model(src, "saved_model")
    assert loaded.keras_model is not None and loaded.output_name == "logits"
    x = np.random.default_rng(0).normal(size=(3, 10, 10, 1)).astype("float32")
    original = tf.saved_model.load(str(src)).signatures["serving_default"]
    reference = np.asarray(original(image=tf.constant(x))["logits"])
    np.testing.assert_allclose(
        np.asarray(loaded.keras_model([x], training=False)), reference, atol=1e-4
    )

    spec = PruneSpec(strategy={"name": "filter", "ratio": 0.5})
    result = prune(src, "saved_model", spec, tmp_path / "out")
    restored = tf.saved_model.load(str(result.model_path))
    assert list(restored.signatures) == ["serving_default"]
    fn = restored.signatures["serving_default"]
    assert set(fn.structured_input_signature[1]) == {"image"}
    assert set(fn.structured_outputs) == {"logits"}
    assert result.metrics["details"]["structured"]["kept"]["conv1"] == {"before": 16, "after": 8}
    assert np.asarray(fn(image=tf.constant(x))["logits"]).shape == (3, 4)


def test_tf_keras_lambda_is_not_rebuilt(tmp_path: Path) -> None:
    src = _unzip("tf_keras_lambda.zip", tmp_path / "k2l")
    loaded = load_model(src, "saved_model")  # still usable as a function-only SavedModel
    assert loaded.keras_model is None
    assert any("Lambda" in note for note in loaded.notes)
    spec = PruneSpec(strategy={"name": "filter", "ratio": 0.5})
    with pytest.raises(SpecError) as err:
        build(parse_params(spec.strategy)).run(PruningContext(model=loaded, spec=spec))
    assert err.value.reason == "keras_graph_required"


def test_unstructured_jobs_on_a_rebuildable_saved_model_keep_its_functions(
    tmp_path: Path,
) -> None:
    """The rebuilt Keras graph is only for structured strategies: magnitude still prunes
    and saves the SavedModel's own variables and functions."""
    src = _unzip("tf_keras_conv_bn.zip", tmp_path / "k2")
    spec = PruneSpec(strategy={"name": "magnitude", "sparsity": 0.5})
    result = prune(src, "saved_model", spec, tmp_path / "out")
    assert result.alternates == {}
    assert result.metrics["sparsity"] == pytest.approx(0.5, abs=0.01)
    restored = tf.saved_model.load(str(result.model_path))
    assert set(restored.signatures["serving_default"].structured_outputs) == {"logits"}
    kernel = next(
        v for v in restored.signatures["serving_default"].variables if "conv1/kernel" in v.name
    )
    assert float(np.mean(kernel.numpy() == 0)) > 0.3

"""Custom classes load only from operator allow-listed modules; subclassed models prune
unstructured and are refused, with the reason, by structured strategies."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import keras
import numpy as np
import pytest

from bench.coverage import check_unstructured
from prunekit.custom_objects import ENV, allowed_modules, custom_classes
from prunekit.errors import ModelLoadError, SpecError
from prunekit.model import load_model
from prunekit.pipeline import prune
from prunekit.spec import Measure, PruneSpec
from tests.custom_keras import Projection, TinyNet

MODULE = "tests.custom_keras"


@pytest.fixture
def subclassed(tmp_path: Path) -> tuple[Path, np.ndarray]:
    keras.utils.set_random_seed(0)
    model = TinyNet()
    x = np.random.default_rng(0).normal(size=(4, 10)).astype("float32")
    model(x)
    path = tmp_path / "tiny.keras"
    model.save(path)
    return path, x


def _spec(strategy: dict[str, object]) -> PruneSpec:
    return PruneSpec(strategy=strategy, measure=Measure(latency_budget_s=0.01))


def test_setting_lists_modules() -> None:
    assert allowed_modules(" a.b, c ,,a.b") == ("a.b", "c")


def test_custom_class_refused_unless_its_module_is_allowed(
    subclassed: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = subclassed
    # a subclassed model's config names the model; its layers come from its own __init__
    assert dict(custom_classes(path)) == {"prunekit_tests>TinyNet": MODULE}
    inp = keras.Input((10,))
    functional = keras.Model(inp, keras.layers.Dense(2)(Projection(4)(inp)))
    functional.save(path.with_name("functional.keras"))
    assert dict(custom_classes(path.with_name("functional.keras"))) == {
        "prunekit_tests>Projection": MODULE
    }
    # registered in this process already, yet refused: the upload does not choose the code
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(ModelLoadError) as err:
        load_model(path, "keras")
    assert err.value.reason == "custom_class_not_allowed"
    assert "prunekit_tests>" in str(err.value) and ENV in str(err.value)
    monkeypatch.setenv(ENV, "keras_something_else")
    with pytest.raises(ModelLoadError) as err:
        load_model(path, "keras")
    assert err.value.reason == "custom_objects_misconfigured"


def test_subclassed_model_prunes_unstructured_with_the_module_allowed(
    subclassed: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path, x = subclassed
    monkeypatch.setenv(ENV, MODULE)
    loaded = load_model(path, "keras")
    assert type(loaded.keras_model).__name__ == "TinyNet"
    assert {w.name for w in loaded.prunable_weights()} == {"proj/kernel", "head/kernel"}
    result = prune(path, "keras", _spec({"name": "magnitude", "sparsity": 0.8}), tmp_path / "o")
    assert abs(result.metrics["sparsity"] - 0.8) < 0.01
    ref_shape = tuple(np.asarray(loaded.keras_model(x)).shape)
    row = check_unstructured(loaded, "keras", result, x, ref_shape)
    assert row.status == "ok", row.reason

    with pytest.raises(SpecError) as err:
        prune(path, "keras", _spec({"name": "filter", "ratio": 0.3}), tmp_path / "f")
    assert err.value.reason == "untraceable_graph"
    assert "TinyNet" in str(err.value) and "Functional API" in str(err.value)


def test_inspection_reason_and_submission_422_for_untraceable_model() -> None:
    from app.jobs.structured import check_submission
    from app.problems import Problem
    from prunekit.strategies import parse_params
    from prunekit.structured.traceable import untraceable_reason

    model = TinyNet()
    model(np.zeros((1, 10), dtype="float32"))
    why = untraceable_reason(model)
    assert why is not None and "tests.custom_keras.TinyNet" in why
    inp = keras.Input((10,))
    assert untraceable_reason(keras.Model(inp, Projection(4)(inp))) is None

    record = {
        "id": "m1",
        "inspection": {
            "status": "succeeded",
            "details": {"has_keras_graph": True, "structured_untraceable": why},
        },
    }
    with pytest.raises(Problem) as err:
        check_submission(parse_params({"name": "filter", "ratio": 0.3}), record, None)
    assert err.value.status == 422
    assert err.value.extra["errors"][0]["field"] == "body.strategy.name"
    assert err.value.extra["errors"][0]["type"] == "untraceable_graph"
    # unstructured strategies pass the same model
    check_submission(parse_params({"name": "magnitude", "sparsity": 0.5}), record, None)

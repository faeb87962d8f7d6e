"""Iterative structured pruning (``steps: k``) and recalibration inside structured jobs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from prunekit.context import PruningContext
from prunekit.data import Dataset, Split
from prunekit.errors import SpecError
from prunekit.formats import ModelFormat
from prunekit.model import LoadedModel
from prunekit.progress import RecordingReporter
from prunekit.spec import PruneSpec
from prunekit.strategies import build, parse_params
from prunekit.structured.steps import keep_top, step_keep_counts
from tests.unit.test_structured_strategies import conv_bn


def _data() -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 8, 8, 1)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 0).astype("int64")
    return Dataset(Split(x, y), test=Split(x[:32], y[:32]))


def _run(strategy: dict[str, Any], data: Dataset | None, fine_tune: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    spec = PruneSpec(strategy=strategy, fine_tune=fine_tune, seed=0)
    reporter = RecordingReporter()
    ctx = PruningContext(
        model=LoadedModel(ModelFormat.KERAS, keras_model=conv_bn()),
        spec=spec,
        reporter=reporter,
        data=data,
    )
    return build(parse_params(spec.strategy)).run(ctx), reporter


def test_step_keep_counts_reach_the_target_exactly() -> None:
    # 8 -> 3 channels in 3 steps: 5 removed as 1, 2, 2 (floor of i * 5 / 3 = 1, 3, 5)
    assert [step_keep_counts(8, 3, i, 3) for i in (1, 2, 3)] == [7, 5, 3]
    for size, target, steps in [(16, 8, 20), (7, 1, 4), (5, 5, 3), (32, 9, 7)]:
        counts = [step_keep_counts(size, target, i, steps) for i in range(1, steps + 1)]
        assert counts[-1] == target
        assert all(a >= b for a, b in zip([size, *counts], counts, strict=False))
    with pytest.raises(ValueError):
        step_keep_counts(8, 3, 0, 3)
    assert keep_top(np.array([0.3, 0.1, 0.3, 0.9]), 2).tolist() == [2, 3]  # tie: lower index goes


def test_steps_reach_exactly_the_one_shot_widths() -> None:
    data = _data()
    one, _ = _run({"name": "filter", "ratio": 0.5}, data, {"epochs": 0})
    # step_epochs 0: the cuts alone (recovery training is the next test's)
    three, reporter = _run(
        {"name": "filter", "ratio": 0.5, "steps": 3, "step_epochs": 0}, data, {"epochs": 0}
    )
    s1, s3 = one.details["structured"], three.details["structured"]
    assert s1["kept"]["conv0"] == {"before": 8, "after": 4}
    assert s3["kept"] == s1["kept"]
    model = three.model.keras_model  # type: ignore[union-attr]
    assert [int(model.get_layer(n).filters) for n in ("conv0", "conv1")] == [4, 8]
    # every cut recalibrated, in its own phase
    assert [r["after"] for r in s3["recalibration"]] == ["cut 1/3", "cut 2/3", "cut 3/3"]
    phases = [c[1].get("step") for c in reporter.calls if c[0] == "phase"]
    assert [p for p in phases if p is not None] == [1, 2, 3]
    messages = [c[1]["message"] for c in reporter.calls if c[0] == "event"]
    assert any("BatchNorm recalibration after cut 2/3" in m for m in messages)
    rec = s3["recalibration"][0]
    assert set(rec["before"]) == set(rec["recalibrated"]) == {"accuracy", "loss"}


def test_slimming_steps_recover_between_cuts() -> None:
    data = _data()
    params = {"name": "slimming", "ratio": 0.5, "sparsity_epochs": 0}
    one, _ = _run(params, data, {"epochs": 0})
    two, _ = _run({**params, "steps": 2, "step_epochs": 1}, data, {"epochs": 0})
    s1, s2 = one.details["structured"], two.details["structured"]
    assert s2["kept"] == s1["kept"]
    assert [r["after"] for r in s2["recalibration"]] == ["cut 1/2", "cut 2/2"]
    # recovery after every cut but the last, its rate rewound (a fresh cosine from 1e-3)
    (recovery,) = s2["step_recovery"]
    assert recovery["step"] == 1 and recovery["epochs"] == 1
    assert recovery["learning_rate"] == 1e-3 and recovery["final_learning_rate"] == 0.0


def test_recalibration_defaults_and_refusals() -> None:
    data = _data()
    with_data, _ = _run({"name": "filter", "ratio": 0.5}, data, {"epochs": 0})
    recs = with_data.details["structured"]["recalibration"]
    assert [r["after"] for r in recs] == ["the cut"]
    off, _ = _run({"name": "filter", "ratio": 0.5, "recalibrate": False}, data)
    assert off.details["structured"]["recalibration"] is None
    no_data, _ = _run({"name": "filter", "ratio": 0.5}, None)
    assert no_data.details["structured"]["recalibration"] is None
    assert no_data.details["structured"]["data_free"] is True
    with pytest.raises(SpecError) as err:
        _run({"name": "filter", "ratio": 0.5, "recalibrate": True}, None)
    assert err.value.reason == "dataset_required"

    asks = parse_params({"name": "filter", "ratio": 0.5, "recalibrate": True})
    assert asks.missing_data()[0] == "strategy.recalibrate"
    for steps in (0, 21):
        with pytest.raises(ValidationError) as verr:
            parse_params({"name": "filter", "ratio": 0.5, "steps": steps})
        assert verr.value.errors()[0]["loc"] == ("steps",)

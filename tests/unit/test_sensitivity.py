"""Strategy sensitivity (one-shot per-layer curves, the model left as it was), its plot, and
the sensitivity layer budget that builds on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prunekit.errors import SpecError
from prunekit.reporting import SENSITIVITY_PNG, attach_analysis
from prunekit.strategies import build, parse_params
from tests.unit import strategy_helpers as h


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return h.save_models(tmp_path_factory.mktemp("sensitivity"))


def test_sensitivity_job_measures_every_layer_and_changes_nothing(
    models: dict[str, Path], tmp_path: Path
) -> None:
    model = h.load(models["keras"])
    before = {w.name: w.numpy().copy() for w in model.weights()}
    raw = {"name": "sensitivity", "ratios": [0.9, 0.5], "max_samples": 64}
    ctx = h.context(model, raw, h.digits())
    build(parse_params(raw)).run(ctx)
    for w in model.weights():  # every tensor restored after its turn
        assert np.array_equal(w.numpy(), before[w.name]), w.name
    metrics: dict[str, object] = {}
    files = attach_analysis(metrics, ctx.cache, tmp_path)
    report = metrics["sensitivity"]
    assert isinstance(report, dict) and report["samples"] == 26  # a tenth of 256, under 64
    layers = report["layers"]
    assert [row["name"] for row in layers] == [w.name for w in model.prunable_weights()]
    for row in layers:
        assert [p["ratio"] for p in row["points"]] == [0.5, 0.9]  # sorted
        assert all(p["accuracy"] is not None and p["drop"] >= 0 for p in row["points"])
    assert files[SENSITIVITY_PNG].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sensitivity_budget_needs_data_and_shares_by_the_curves(models: dict[str, Path]) -> None:
    raw = {"name": "magnitude", "sparsity": 0.5, "allocation": "sensitivity"}
    with pytest.raises(SpecError) as err:
        build(parse_params(raw)).run(h.context(h.load(models["keras"]), raw, None))
    assert err.value.reason == "dataset_required"
    model = h.load(models["keras"])
    ctx = h.context(model, raw, h.digits())
    outcome = build(parse_params(raw)).run(ctx)
    total = sum(m.size for m in outcome.masks.values())
    pruned = sum(int((~m).sum()) for m in outcome.masks.values())
    assert abs(pruned - 0.5 * total) <= len(outcome.masks)  # per-tensor rounding only
    shares = {n: r["sparsity"] for n, r in ctx.cache["allocation"]["layers"].items()}
    assert len(set(shares.values())) > 1  # not uniform: the curves decided


def test_a_sweep_cancelled_mid_tensor_puts_that_tensor_back(models: dict[str, Path]) -> None:
    from prunekit.data import Split
    from prunekit.sensitivity import analyse_weights

    model = h.load(models["keras"])
    before = {w.name: w.numpy().copy() for w in model.weights()}
    points: list[float] = []

    class Stop(Exception):
        pass

    def cancel_at_third_point() -> None:
        if len(points) == 3:  # the second tensor, half-way through its ratios
            raise Stop

    def evaluate(m: object, split: Split) -> dict[str, float | None]:
        return {"accuracy": 1.0, "loss": 0.0}

    with pytest.raises(Stop):
        analyse_weights(
            model, model.prunable_weights(), Split(np.zeros((1, 1)), np.zeros(1)), evaluate,
            ratios=(0.5, 0.9), check_cancelled=cancel_at_third_point, progress=points.append,
        )  # fmt: skip
    total = 2 * len(model.prunable_weights())
    assert points == [1 / total, 2 / total, 3 / total]
    for w in model.weights():
        assert np.array_equal(w.numpy(), before[w.name]), w.name

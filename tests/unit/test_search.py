"""The accuracy-budget search (prunekit.search) on a model whose every weight matters.

``Dense(1, use_bias=False)`` over 200 one-hot inputs, every kernel weight +1, every label
1: sample k is right only while weight k is non-zero (a pruned weight gives logit 0, read
as class 0, and stays zero through masked fine-tuning). Pruning ``n`` weights therefore
costs exactly ``n / 200`` of validation accuracy, so the budget arithmetic is exact.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from prunekit.context import PruningContext
from prunekit.data import Dataset, Split
from prunekit.errors import CancelledError
from prunekit.evaluation import evaluate
from prunekit.formats import ModelFormat
from prunekit.losses import LossName, LossSpec
from prunekit.model import LoadedModel
from prunekit.progress import RecordingReporter
from prunekit.search import BudgetNotMetError, SearchConfig, run_search
from prunekit.spec import PruneSpec

N = 200


def one_hot_context() -> PruningContext:
    keras.utils.set_random_seed(0)
    inp = keras.Input((N,))
    model = keras.Model(inp, keras.layers.Dense(1, use_bias=False, name="w")(inp))
    model.get_layer("w").set_weights([np.ones((N, 1), "float32")])
    x = np.eye(N, dtype="float32")
    y = np.ones(N, dtype="int64")
    data = Dataset(train=Split(x, y), val=Split(x, y), test=Split(x, y))
    spec = PruneSpec(
        strategy={"name": "auto", "max_accuracy_drop": 0.05},
        loss=LossName.BINARY,
        seed=0,
        fine_tune={"epochs": 1, "batch_size": 50, "learning_rate": 1e-3},
    )
    loaded = LoadedModel(format=ModelFormat.KERAS, keras_model=model)
    return PruningContext(
        loaded,
        spec,
        RecordingReporter(),
        data=data,
        loss=LossSpec(LossName.BINARY, from_logits=True),
    )


def config(drop: float) -> SearchConfig:
    return SearchConfig(
        max_accuracy_drop=drop,
        max_fine_tune_epochs=8,
        candidate_epochs=1,
        final_epochs=1,
        tolerance=0.01,
    )


def test_search_stays_within_the_budget_on_validation() -> None:
    ctx = one_hot_context()
    found = run_search(ctx, config(0.05))
    # at most 10 of 200 weights may go: the chosen ratio prunes 10 (0.05 <= r < 0.0525)
    assert found.chosen.passes and found.chosen.drop <= 0.05 + 1e-9
    assert any(not c.passes for c in found.candidates)  # it found the edge, not a corner
    after = evaluate(ctx.model, ctx.data.val, ctx.loss_spec)  # type: ignore[union-attr]
    assert after["accuracy"] is not None and 1.0 - after["accuracy"] <= 0.05 + 1e-9
    zeros = int((ctx.model.keras_model.get_layer("w").get_weights()[0] == 0).sum())  # type: ignore[union-attr]
    assert 5 <= zeros <= 10  # bisection to within tolerance 0.01 of the 0.05 edge
    assert found.chosen.pareto
    assert found.epochs_used <= 8
    events = [c for c in ctx.reporter.calls if c[0] == "progress"]  # type: ignore[attr-defined]
    assert any("candidates" in detail for _, detail in events)


def test_search_fails_cleanly_when_even_the_mildest_candidate_misses() -> None:
    ctx = one_hot_context()
    with pytest.raises(BudgetNotMetError, match=r"smallest drop reached was 0\.0\d+") as err:
        run_search(ctx, config(0.001))  # even 1% of weights (2 of 200) costs 0.01
    assert err.value.reason == "budget_not_met"


class CancelAfter(RecordingReporter):
    """Cancels the job once ``n`` candidates have been reported."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.seen = 0

    def progress(self, fraction: float, **detail: object) -> None:
        super().progress(fraction, **detail)
        self.seen = int(detail.get("candidates", self.seen))  # type: ignore[call-overload]

    def check_cancelled(self) -> None:
        if self.seen >= self.n:
            raise CancelledError("cancelled on request")


def test_cancel_between_candidates_keeps_the_best_within_budget() -> None:
    ctx = one_hot_context()
    # scan 0.1 misses; bisection from [0, 1]: 0.5, 0.25, 0.125, 0.0625 miss, 0.03125 passes
    ctx.reporter = CancelAfter(6)
    found = run_search(ctx, config(0.05))
    assert found.stopped == "cancelled" and len(found.candidates) == 6
    assert found.chosen.passes and found.chosen.ratio == 0.03125
    assert found.final["fine_tune_epochs"] == 0  # no final fine-tune after a cancel
    zeros = int((ctx.model.keras_model.get_layer("w").get_weights()[0] == 0).sum())  # type: ignore[union-attr]
    assert zeros == 6  # round(0.03125 * 200)


def test_cancel_before_any_candidate_passes_stops_the_job() -> None:
    ctx = one_hot_context()
    ctx.reporter = CancelAfter(3)  # 0.1, 0.5 and 0.25 all miss the budget: nothing to keep
    with pytest.raises(CancelledError):
        run_search(ctx, config(0.05))

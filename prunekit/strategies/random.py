"""Random pruning: a baseline that zeroes a random subset of weights.

One-shot by default. ``iterative`` prunes in ``steps`` equal increments of sparsity,
fine-tunes after each and evaluates on the validation split (carved from train when the
dataset has none); it stops before the accuracy drop exceeds ``max_accuracy_drop`` and keeps
the last step that stayed within it. The random order is drawn once from the job's seed, so
successive masks are nested and the same seed gives the same masks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from prunekit.layer_budget import budget_masks
from prunekit.masks import Scope, mask_sparsity
from prunekit.strategies.base import (
    LayerBudget,
    Sparsity,
    Strategy,
    StrategyKind,
    StrategyParams,
    budget_zeros,
)
from prunekit.strategies.registry import register

if TYPE_CHECKING:
    from prunekit.context import PruningContext, StrategyOutcome


class RandomParams(StrategyParams):
    name: Literal["random"] = "random"
    sparsity: Sparsity
    allocation: LayerBudget = None
    scope: Scope = Field(
        default=Scope.GLOBAL,
        description="global: random over all prunable weights; layer: the same sparsity "
        "in every weight tensor.",
    )
    iterative: bool = Field(
        default=False,
        description="Prune in steps with fine-tuning and validation between them (needs data).",
    )
    steps: int = Field(default=5, ge=1, le=100, description="Pruning steps when iterative.")
    max_accuracy_drop: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="Iterative: stop before validation accuracy falls more than this "
        "(a fraction: 0.01 = 1 point) below the unpruned model's.",
    )

    def requires_data(self) -> bool:
        return self.iterative

    def missing_data(self) -> tuple[str, str]:
        return "dataset_id", "iterative pruning fine-tunes and validates between steps"

    def expected_zeros(self, units: Mapping[str, tuple[int, ...]]) -> int | None:
        # iterative pruning stops early when accuracy falls too far
        return (
            None
            if self.iterative
            else budget_zeros(self.sparsity, self.scope, self.allocation, units)
        )


@register
class RandomPruning(Strategy[RandomParams]):
    name = "random"
    kind = StrategyKind.UNSTRUCTURED
    description = "Random masks at the target sparsity (seeded); optionally iterative."
    Params = RandomParams

    def run(self, ctx: PruningContext) -> StrategyOutcome:
        p = self.params
        rng = ctx.rng()
        scores = {w.name: rng.random(w.shape) for w in ctx.prunable}
        if not p.iterative:
            masks = budget_masks(ctx, p, scores, p.sparsity)
            ctx.apply_masks(masks)
            history = ctx.fine_tune(masks, span=(0.0, 1.0)) if ctx.wants_fine_tune else []
            return ctx.outcome(masks, fine_tune_loss=history)
        return self._iterative(ctx, p, scores)

    def _iterative(
        self, ctx: PruningContext, p: RandomParams, scores: dict[str, np.ndarray]
    ) -> StrategyOutcome:
        ctx.require_data(self.name)
        train, val = ctx.validation_split()
        baseline = ctx.evaluate_accuracy(val)
        weights = ctx.model.weights()
        kept: dict[str, np.ndarray] | None = None
        snapshot = {w.name: w.numpy() for w in weights}
        trail = []
        for k in range(1, p.steps + 1):
            target = p.sparsity * k / p.steps
            masks = budget_masks(ctx, p, scores, target)
            ctx.apply_masks(masks)
            ctx.fine_tune(masks, data=train, span=((k - 1) / p.steps, k / p.steps))
            acc = ctx.evaluate_accuracy(val)
            trail.append({"sparsity": round(target, 6), "val_accuracy": acc})
            if baseline - acc > p.max_accuracy_drop:
                for w in weights:
                    w.assign(snapshot[w.name])
                ctx.reporter.event(
                    f"random: stopped at step {k}/{p.steps}: validation accuracy {acc:.4f} "
                    f"dropped more than {p.max_accuracy_drop} below {baseline:.4f}; "
                    f"keeping sparsity {mask_sparsity(kept) if kept else 0.0:.4f}",
                    level="warning",
                )
                break
            kept = masks
            snapshot = {w.name: w.numpy() for w in weights}
        if kept is None:
            kept = {w.name: np.ones(w.shape, dtype=bool) for w in ctx.prunable}
        return ctx.outcome(
            kept,
            baseline_val_accuracy=baseline,
            steps=trail,
            reached_sparsity=mask_sparsity(kept),
        )

"""Sparse optimisation with an L1 penalty, then magnitude pruning and masked fine-tuning.

Training minimises ``loss + l1 * sum|w|`` over the prunable weights by proximal gradient
descent (ISTA): after each SGD step every prunable weight is soft-thresholded,
``w <- sign(w) * max(|w| - lr * l1, 0)``, so weights the loss does not need reach exactly
zero instead of hovering near it. The sparse-optimisation phase uses plain SGD (the proximal
step is exact for it); pruning to the target by magnitude and the masked fine-tune with the
job's ``fine_tune`` settings follow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from prunekit.layer_budget import budget_masks
from prunekit.masks import Scope
from prunekit.strategies.base import BlockParams, Strategy, StrategyKind, block_plan
from prunekit.strategies.registry import register

if TYPE_CHECKING:
    from prunekit.context import PruningContext, StrategyOutcome


class L1Params(BlockParams):
    name: Literal["l1"] = "l1"
    needs_data = True
    l1: float = Field(
        default=1e-4, gt=0, le=10, description="lambda of the penalty lambda * sum|w|."
    )
    epochs: int = Field(
        default=2, ge=1, le=1000, description="Epochs of L1-regularised (proximal) training."
    )
    learning_rate: float = Field(
        default=0.05, gt=0, le=10, description="SGD learning rate of the proximal phase."
    )
    fine_tune_epochs: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Masked fine-tuning after pruning when the spec has no fine_tune.",
    )
    scope: Scope = Field(default=Scope.GLOBAL, description="Magnitude pruning scope.")


@register
class L1Pruning(Strategy[L1Params]):
    name = "l1"
    kind = StrategyKind.UNSTRUCTURED
    description = (
        "Proximal L1-regularised training drives weights to exactly zero, then magnitude "
        "pruning to the target and masked fine-tuning."
    )
    Params = L1Params

    def run(self, ctx: PruningContext) -> StrategyOutcome:
        from prunekit.training import TrainConfig

        p = self.params
        data = ctx.require_data(self.name)
        plan = block_plan(ctx, p.block, self.name)
        base = ctx.train_config(default_epochs=p.fine_tune_epochs)
        config = TrainConfig(
            p.epochs, base.batch_size, p.learning_rate, "sgd", label_smoothing=base.label_smoothing
        )
        trainer = ctx.trainer(config=config, l1=p.l1)
        history = trainer.fit(data.train, p.epochs, span=(0.0, 0.6), label="l1")
        weights = trainer.weights()
        n = sum(w.size for w in weights.values())
        exact_zeros = sum(int((w == 0).sum()) for w in weights.values())
        ctx.reporter.event(
            f"l1: proximal training zeroed {exact_zeros} of {n} prunable weights "
            f"({exact_zeros / max(n, 1):.1%}); pruning to {p.sparsity:.1%} by magnitude"
        )
        masks = budget_masks(ctx, p, {n: np.abs(w) for n, w in weights.items()}, p.sparsity, plan)
        ctx.apply_masks(masks)
        tune = ctx.fine_tune(
            masks, epochs=None if ctx.spec.fine_tune else p.fine_tune_epochs, span=(0.6, 1.0)
        )
        return ctx.outcome(
            masks,
            l1_loss=history,
            zeros_after_l1=exact_zeros,
            fine_tune_loss=tune,
            **plan.details(),
        )

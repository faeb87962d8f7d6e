"""One-shot magnitude pruning: zero the weights of smallest absolute value.

With a dataset and ``fine_tune`` in the job spec, a masked fine-tune follows (pruned weights
stay exactly zero)."""

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


class MagnitudeParams(BlockParams):
    name: Literal["magnitude"] = "magnitude"
    scope: Scope = Field(
        default=Scope.GLOBAL,
        description="global: one threshold over all prunable weights; "
        "layer: the same sparsity in every weight tensor.",
    )


@register
class Magnitude(Strategy[MagnitudeParams]):
    name = "magnitude"
    kind = StrategyKind.UNSTRUCTURED
    description = (
        "One-shot: zero the smallest |w|, globally or per layer (Han et al. 2015); "
        "masked fine-tune when the job has data and fine_tune."
    )
    Params = MagnitudeParams

    def run(self, ctx: PruningContext) -> StrategyOutcome:
        p = self.params
        plan = block_plan(ctx, p.block, self.name)
        scores = {name: np.abs(w) for name, w in ctx.prunable_arrays().items()}
        masks = budget_masks(ctx, p, scores, p.sparsity, plan)
        ctx.apply_masks(masks)
        blocks = plan.details()
        if not ctx.wants_fine_tune:
            return ctx.outcome(masks, **blocks)
        history = ctx.fine_tune(masks, span=(0.0, 1.0))
        return ctx.outcome(masks, fine_tune_loss=history, **blocks)

"""One-shot magnitude pruning: zero the weights of smallest absolute value."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from prunekit.masks import Scope, magnitude_masks
from prunekit.strategies.base import (
    Sparsity,
    Strategy,
    StrategyKind,
    StrategyParams,
)
from prunekit.strategies.registry import register

if TYPE_CHECKING:
    from prunekit.context import PruningContext, StrategyOutcome


class MagnitudeParams(StrategyParams):
    name: Literal["magnitude"] = "magnitude"
    sparsity: Sparsity
    scope: Scope = Field(
        default=Scope.GLOBAL,
        description="global: one threshold over all prunable weights; "
        "layer: the same sparsity in every weight tensor.",
    )


@register
class Magnitude(Strategy):
    name = "magnitude"
    kind = StrategyKind.UNSTRUCTURED
    description = "One-shot: zero the smallest |w|, globally or per layer (Han et al. 2015)."
    Params = MagnitudeParams

    def run(self, ctx: PruningContext) -> StrategyOutcome:
        p: MagnitudeParams = self.params  # type: ignore[assignment]
        masks = magnitude_masks(ctx.prunable_arrays(), p.sparsity, p.scope)
        ctx.apply_masks(masks)
        return ctx.outcome(masks)

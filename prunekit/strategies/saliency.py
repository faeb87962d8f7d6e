"""Greedy contribution pruning (saliency; ``sparsenet``).

Each round estimates every weight's contribution to the loss, prunes the least useful up to
the round's sparsity, and fine-tunes briefly with the mask held; ``steps`` rounds reach the
target. Criteria: ``taylor`` — first-order Taylor ``|w * dL/dw|`` accumulated over
``batches`` batches (Molchanov et al. 2017); ``snip`` — ``|w * g|`` at the start, one shot
(Lee et al. 2019); ``magnitude`` — ``|w|``. Pruned weights score zero, so masks are nested and
the final one prunes exactly ``round(s * n)`` weights.

A global ranking of raw gradient scores empties whole layers: a layer's contribution to the
loss is shared among its weights, so each weight of a large layer scores far below each
weight of a small one (on a BatchNorm VGG, 90% global Taylor pruning removed 100% of the
widest conv layer and the model fell to chance). ``normalize="l2"`` (the default) divides
each layer's scores by their L2 norm before the global ranking, as Molchanov et al. (2017)
do for their Taylor criterion; ``"none"`` ranks raw scores. Normalising rescales each tensor
as a whole, so it changes nothing within a layer nor under ``scope="layer"``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from prunekit.layer_budget import budget_masks
from prunekit.masks import Scope
from prunekit.strategies.base import BlockParams, Strategy, StrategyKind, block_plan
from prunekit.strategies.registry import register

if TYPE_CHECKING:
    from prunekit.context import PruningContext, StrategyOutcome


class SaliencyParams(BlockParams):
    name: Literal["saliency"] = "saliency"
    needs_data = True
    criterion: Literal["taylor", "snip", "magnitude"] = Field(
        default="taylor", description="How a weight's contribution is estimated."
    )
    steps: int = Field(
        default=3, ge=1, le=100, description="Rounds of score, prune, fine-tune (snip: 1)."
    )
    batches: int = Field(
        default=200,
        ge=1,
        le=100000,
        description="Batches the gradient scores accumulate over (per round; fewer give "
        "noisier scores).",
    )
    epochs_per_step: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Fine-tuning epochs after each round when the spec has no fine_tune.",
    )
    scope: Scope = Field(default=Scope.GLOBAL, description="Ranking scope.")
    rewind: bool = Field(
        default=True,
        description="Restart the fine-tune learning-rate schedule (and optimizer) after "
        "every round; false: one schedule over all rounds, so the last prune meets the "
        "smallest rates.",
    )
    normalize: Literal["l2", "none"] = Field(
        default="l2",
        description="Per-layer normalisation of gradient scores (taylor, snip) before a "
        "global ranking: l2 divides each layer's scores by their L2 norm (keeps large "
        "layers from being emptied); none ranks raw scores.",
    )


def normalize_scores(
    scores: dict[str, np.ndarray], how: Literal["l2", "none"]
) -> dict[str, np.ndarray]:
    """Each layer's scores divided by their L2 norm (``"l2"``), or unchanged (``"none"``)."""
    if how == "none":
        return scores
    out = {}
    for name, s in scores.items():
        norm = float(np.sqrt(np.sum(np.square(s, dtype="float64"))))
        out[name] = s / norm if norm > 0 else s
    return out


@register
class SaliencyPruning(Strategy[SaliencyParams]):
    name = "saliency"
    aliases = ("sparsenet",)
    kind = StrategyKind.UNSTRUCTURED
    description = (
        "Greedy: score each weight's contribution |w*dL/dw| (or SNIP, |w|), prune the least "
        "useful, fine-tune, repeat in steps to the target."
    )
    Params = SaliencyParams

    def run(self, ctx: PruningContext) -> StrategyOutcome:
        p = self.params
        data = ctx.require_data(self.name)
        plan = block_plan(ctx, p.block, self.name)
        config = ctx.train_config(default_epochs=p.epochs_per_step)
        epochs = config.epochs
        steps = 1 if p.criterion == "snip" else p.steps
        # rewind: each round's fine-tune has the whole schedule; else one over all rounds
        trainer = ctx.trainer(
            config=dataclasses.replace(config, epochs=epochs if p.rewind else steps * epochs)
        )
        masks: dict[str, np.ndarray] = {}
        trail = []
        for k in range(1, steps + 1):
            target = p.sparsity * k / steps
            if p.criterion == "magnitude":
                scores = {n: np.abs(w) for n, w in trainer.weights().items()}
            else:
                raw = trainer.taylor_scores(data.train, p.batches)
                scores = normalize_scores(raw, p.normalize)
            if masks:  # never revive: already-pruned weights rank first
                scores = {n: np.where(masks[n], s, -1.0) for n, s in scores.items()}
            masks = budget_masks(ctx, p, scores, target, plan)
            trainer.set_masks(masks)
            losses: list[float] = []
            if epochs > 0:
                if p.rewind and k > 1:
                    trainer.restart_schedule()
                span = ((k - 1) / steps, k / steps)
                losses = trainer.fit(data.train, epochs, span=span, label=f"round {k}")
            trail.append({"sparsity": round(target, 6), "fine_tune_loss": losses})
            ctx.reporter.event(f"saliency round {k}/{steps}: pruned to {target:.1%}")
        ctx.apply_masks(masks)
        return ctx.outcome(masks, criterion=p.criterion, rounds=trail, **plan.details())

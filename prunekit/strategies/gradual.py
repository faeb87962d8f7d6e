"""Gradual pruning during training (Zhu & Gupta 2017), optionally with regrowth.

Sparsity follows ``s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt))**3`` for
``t0 <= t <= t0 + n * dt`` (``s_i`` before, ``s_f`` after); the mask is recomputed by
magnitude every ``frequency`` (``dt``) steps. Without regrowth pruned weights stay zero.
With ``regrow`` (dynamic network surgery, Guo et al. 2016) the dense shadow weights keep
receiving the gradient taken at the masked weights, and the mask is recomputed from the
shadow's magnitudes, so a pruned weight comes back when it grows important again. The
schedule ends at ``end_fraction`` of training; the rest recovers at the final sparsity.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field, model_validator

from prunekit.layer_budget import budget_masks
from prunekit.masks import Scope, mask_sparsity
from prunekit.strategies.base import (
    BlockParams,
    Sparsity,
    Strategy,
    StrategyKind,
    block_plan,
)
from prunekit.strategies.registry import register

if TYPE_CHECKING:
    from prunekit.context import PruningContext, StrategyOutcome
    from prunekit.training import Trainer


def polynomial_sparsity(
    t: int, final: float, initial: float, begin: int, frequency: int, n: int
) -> float:
    """Zhu & Gupta's cubic schedule at step ``t``: ``n`` pruning steps every ``frequency``."""
    if t <= begin:
        return initial
    span = n * frequency
    if span <= 0 or t >= begin + span:
        return final
    return final + (initial - final) * (1.0 - (t - begin) / span) ** 3


class GradualParams(BlockParams):
    name: Literal["gradual"] = "gradual"
    needs_data = True
    sparsity: Sparsity = Field(description="Final sparsity s_f, in [0, 1).")
    initial_sparsity: float = Field(default=0.0, ge=0.0, lt=1.0, description="s_i.")
    epochs: int = Field(
        default=2, ge=1, le=1000, description="Training epochs when the spec has no fine_tune."
    )
    begin_step: int = Field(
        default=0, ge=0, le=100_000_000, description="t0: the step pruning starts."
    )
    frequency: int = Field(
        default=50, ge=1, le=1_000_000, description="dt: steps between mask updates."
    )
    end_fraction: float = Field(
        default=0.7,
        gt=0.0,
        le=1.0,
        description="Fraction of training steps by which the final sparsity is reached.",
    )
    regrow: bool = Field(
        default=False,
        description="Dynamic network surgery: keep updating dense shadow weights and mask "
        "by their magnitude, so pruned weights can come back.",
    )
    scope: Scope = Field(default=Scope.GLOBAL, description="Magnitude ranking scope.")

    @model_validator(mode="after")
    def _initial_below_final(self) -> GradualParams:
        if self.initial_sparsity > self.sparsity:
            raise ValueError("initial_sparsity must not exceed sparsity")
        return self


@register
class GradualPruning(Strategy[GradualParams]):
    name = "gradual"
    aliases = ("dynamic",)
    kind = StrategyKind.UNSTRUCTURED
    description = (
        "Prune while training on Zhu & Gupta's cubic schedule; regrow: dynamic network "
        "surgery lets pruned weights come back."
    )
    Params = GradualParams

    def run(self, ctx: PruningContext) -> StrategyOutcome:
        p = self.params
        data = ctx.require_data(self.name)
        config = ctx.train_config(default_epochs=p.epochs)
        epochs = max(1, config.epochs)
        # the steps Trainer.fit takes an epoch (its last, partial batch included)
        steps_per_epoch = max(
            1, math.ceil(len(data.train) / max(1, min(config.batch_size, len(data.train))))
        )
        total = epochs * steps_per_epoch
        n = max(0, int((p.end_fraction * total - p.begin_step) // p.frequency))
        plan = block_plan(ctx, p.block, self.name)
        from prunekit.strategies.gradual_trainer import ShadowTrainer

        trainer: Trainer
        if p.regrow:
            trainer = ctx.trainer(config=config, cls=ShadowTrainer)
        else:
            trainer = ctx.trainer(config=config)

        def scores() -> dict[str, np.ndarray]:
            if isinstance(trainer, ShadowTrainer):
                w = trainer.shadow_weights()
            else:
                w = trainer.weights()
            return {k: np.abs(v) for k, v in w.items()}

        trail: list[dict[str, float]] = []

        def update(t: int) -> None:
            if (
                t < p.begin_step
                or (t - p.begin_step) % p.frequency
                or t > p.begin_step + n * p.frequency
            ):
                return
            target = polynomial_sparsity(
                t, p.sparsity, p.initial_sparsity, p.begin_step, p.frequency, n
            )
            masks = budget_masks(ctx, p, scores(), target, plan)
            trainer.set_masks(masks)
            trail.append({"step": t, "target": target, "sparsity": mask_sparsity(masks)})

        update(0)
        history = trainer.fit(data.train, epochs, on_step=update, label="gradual")
        # the final mask, exact: from the weights the model holds (with regrowth, shadow
        # weights that grew during the recovery phase were never trained in place)
        final = {k: np.abs(v) for k, v in trainer.weights().items()}
        masks = budget_masks(ctx, p, final, p.sparsity, plan)
        trainer.set_masks(masks)
        ctx.apply_masks(masks)
        ctx.reporter.event(
            f"gradual: {len(trail)} mask updates over {total} steps to {p.sparsity:.1%}"
            + (" with regrowth" if p.regrow else "")
        )
        return ctx.outcome(masks, schedule=trail, loss=history, pruning_steps=n, **plan.details())

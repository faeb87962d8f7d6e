"""L0 regularisation with hard-concrete gates (Louizos, Welling & Kingma 2018).

Every prunable weight (or, with ``gates: units``, every output unit of a kernel) gets a
stochastic gate ``z`` drawn from a hard-concrete distribution with a learned ``log_alpha``.
Weights and gates are trained on ``loss + l0 * E[L0] / n`` (``E[L0]``: expected number of
non-zero weights, differentiable in ``log_alpha``). Afterwards the deterministic gates are
folded into the weights, the requested sparsity is reached exactly by keeping the top
``n - round(s * n)`` weights by ``|theta * gate|``, and a masked fine-tune follows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from prunekit.layer_budget import budget_masks
from prunekit.masks import Scope
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


class L0Params(StrategyParams):
    name: Literal["l0"] = "l0"
    needs_data = True
    sparsity: Sparsity
    allocation: LayerBudget = None
    gates: Literal["weights", "units"] = Field(
        default="weights", description="One gate per weight, or one per output unit."
    )
    l0: float = Field(
        default=1.0,
        gt=0,
        le=1000,
        description="lambda: loss units charged for keeping every weight (penalty is "
        "lambda * expected fraction of non-zero weights).",
    )
    epochs: int = Field(default=2, ge=1, le=1000, description="Epochs of gated training.")
    gate_learning_rate: float = Field(
        default=0.05, gt=0, le=10, description="Adam learning rate of the gate parameters."
    )
    init_keep: float = Field(
        default=0.9, gt=0, lt=1, description="Initial probability that a gate is open."
    )
    fine_tune_epochs: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Masked fine-tuning after pruning when the spec has no fine_tune.",
    )
    scope: Scope = Field(default=Scope.GLOBAL, description="Scope of the final top-k.")

    def expected_zeros(self, units: Mapping[str, tuple[int, ...]]) -> int | None:
        return budget_zeros(self.sparsity, self.scope, self.allocation, units)


@register
class L0Pruning(Strategy[L0Params]):
    name = "l0"
    kind = StrategyKind.UNSTRUCTURED
    description = (
        "Hard-concrete L0 gates trained with the expected-L0 penalty, then exact top-k on "
        "the gated weights and masked fine-tuning (Louizos et al. 2018)."
    )
    Params = L0Params

    def run(self, ctx: PruningContext) -> StrategyOutcome:
        p = self.params
        data = ctx.require_data(self.name)
        config = ctx.train_config(epochs=p.epochs, default_epochs=p.epochs)
        from prunekit.strategies.l0_trainer import HardConcreteTrainer

        trainer = ctx.trainer(
            config=config,
            cls=HardConcreteTrainer,
            lam=p.l0,
            per_unit=p.gates == "units",
            init_keep=p.init_keep,
            gate_learning_rate=p.gate_learning_rate,
            gate_seed=ctx.seed,
        )
        expected = [trainer.expected_l0()]
        history = []
        for epoch in range(p.epochs):
            span = (0.7 * epoch / p.epochs, 0.7 * (epoch + 1) / p.epochs)
            history += trainer.fit(data.train, 1, span=span, label="l0")
            expected.append(trainer.expected_l0())
        gated = trainer.finalize()
        n = sum(w.size for w in gated.values())
        closed = sum(int((w == 0).sum()) for w in gated.values())
        ctx.reporter.event(
            f"l0: expected non-zero weights {expected[0]:.0f} -> {expected[-1]:.0f} of {n}; "
            f"{closed} weights gated to exactly zero; top-k to sparsity {p.sparsity:.1%}"
        )
        masks = budget_masks(ctx, p, {k: abs(v) for k, v in gated.items()}, p.sparsity)
        ctx.apply_masks(masks)
        tune = ctx.fine_tune(
            masks, epochs=None if ctx.spec.fine_tune else p.fine_tune_epochs, span=(0.7, 1.0)
        )
        return ctx.outcome(
            masks,
            expected_l0=[round(e, 2) for e in expected],
            gated_zeros=closed,
            l0_loss=history,
            fine_tune_loss=tune,
        )

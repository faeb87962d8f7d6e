"""Strategy ``auto``: the smallest (or fastest) model within an accuracy budget.

A strategy name rather than a top-level ``budget`` on every strategy: the search chooses
the strategy family, the ratio and the per-layer allocation itself, which no single
strategy's parameters describe, and it brings its own parameters (objective, family, epoch
cap) that mean nothing to the others. The search is :mod:`prunekit.search`; this module
turns its outcome into the job's report (``search``: budget, every candidate with its
Pareto flag, the choice and why, the test figure).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from prunekit.allocation import Allocation
from prunekit.strategies.base import Strategy, StrategyKind, StrategyParams
from prunekit.strategies.registry import register

if TYPE_CHECKING:
    from prunekit.context import PruningContext, StrategyOutcome

Objective = Literal["size", "flops", "latency"]
Family = Literal["unstructured", "structured", "either"]


class AutoParams(StrategyParams):
    needs_data: ClassVar[bool] = True  # evaluates (and auto trains) on the job's data

    name: Literal["auto"] = "auto"
    max_accuracy_drop: float = Field(
        ge=0.0,
        le=1.0,
        description="Largest validation accuracy loss allowed, absolute (0.01 = one point), "
        "against the original model on the same validation samples.",
    )
    family: Family = Field(
        default="unstructured",
        description="unstructured: weights zeroed (magnitude, with `allocation`); structured: "
        "channels removed (L1, needs a Keras graph); either: both searched, each with half "
        "the candidate epochs, the best objective wins (latency: structured only).",
    )
    objective: Objective = Field(
        default="size",
        description="What the search minimises among candidates within budget: size "
        "(non-zero parameters), flops (non-zero FLOPs per sample) or latency (a batch-32 "
        "forward pass on the worker's TensorFlow, 10th percentile of 50 runs; structured "
        "candidates only, since TensorFlow runs a sparse kernel at dense speed).",
    )
    max_fine_tune_epochs: int = Field(
        default=10,
        ge=0,
        le=1000,
        description="Cap on all fine-tuning epochs of the job: every candidate's and the "
        "final one's together.",
    )
    candidate_epochs: int = Field(
        default=1, ge=0, le=100, description="Fine-tune epochs of each bisection candidate."
    )
    final_epochs: int = Field(
        default=3,
        ge=0,
        le=1000,
        description="Fine-tune epochs of the chosen candidate (reserved within the cap).",
    )
    max_candidates: int = Field(
        default=20, ge=1, le=200, description="Stop after this many candidates (scan included)."
    )
    tolerance: float = Field(
        default=0.02,
        gt=0.0,
        lt=1.0,
        description="Bisection stops when the passing and failing ratios are this close.",
    )
    allocation: Allocation = Field(
        default=Allocation.SENSITIVITY,
        description="Layer budget of every candidate (see the unstructured strategies). "
        "Structured candidates take uniform, global or sensitivity.",
    )
    max_samples: int = Field(
        default=2000,
        ge=1,
        le=1_000_000,
        description="Validation samples every evaluation uses (the first ones).",
    )

    @field_validator("objective")
    @classmethod
    def _measurable(cls, objective: str, info: ValidationInfo) -> str:
        if objective == "latency" and info.data.get("family") == "unstructured":
            raise ValueError(
                "objective latency cannot be measured on unstructured candidates: zeroed "
                "weights do not make TensorFlow faster (it runs them dense); use family "
                "structured or either, or objective size or flops"
            )
        return objective

    @model_validator(mode="after")
    def _consistent(self) -> AutoParams:
        if self.family == "structured" and self.allocation in (Allocation.LAMP, Allocation.ERK):
            raise ValueError(
                f"allocation {self.allocation} shares weights, not channels: use uniform, "
                "global or sensitivity with family structured"
            )
        return self


@register
class Auto(Strategy[AutoParams]):
    name = "auto"
    kind = StrategyKind.SEARCH
    description = (
        "Accuracy-budget search: the most compressed model (size, FLOPs or latency) whose "
        "validation accuracy stays within max_accuracy_drop. Sensitivity analysis, one-shot "
        "scan, then bisection over briefly fine-tuned candidates; the pick is fine-tuned "
        "fully and measured once on the test split. Fails naming the best drop reached when "
        "no candidate meets the budget."
    )
    Params = AutoParams

    def run(self, ctx: PruningContext) -> StrategyOutcome:
        from prunekit.allocation import layer_report
        from prunekit.search import SearchConfig, run_search

        p = self.params
        data = ctx.require_data(self.name)
        families = self._families(ctx, p)
        config = SearchConfig(
            max_accuracy_drop=p.max_accuracy_drop,
            objective=p.objective,
            families=families,
            max_fine_tune_epochs=p.max_fine_tune_epochs,
            candidate_epochs=p.candidate_epochs,
            final_epochs=p.final_epochs,
            max_candidates=p.max_candidates,
            tolerance=p.tolerance,
            allocation=str(p.allocation),
            max_samples=p.max_samples,
        )
        original = _original_figures(ctx, p.objective)
        test_before = ctx.evaluate(data.test) if data.test is not None else None
        ctx.reporter.phase("searching", ctx.progress_span[0], families=list(families))
        found = run_search(ctx, config)
        chosen = found.chosen
        if found.stopped == "cancelled":
            from prunekit.reporting import KEPT_AFTER_CANCEL

            ctx.cache[KEPT_AFTER_CANCEL] = True
        ctx.cache["sensitivity"] = found.sensitivity[chosen.family]
        if found.masks is not None:
            ctx.cache["allocation"] = layer_report(found.masks, p.allocation)
        test_after = None
        if data.test is not None:  # the one look at the test split
            if found.model is not None:
                from prunekit.evaluation import evaluate

                test_after = evaluate(found.model, data.test, ctx.loss_spec)
            else:
                test_after = ctx.evaluate(data.test)
        search = {
            "budget": {
                "max_accuracy_drop": p.max_accuracy_drop,
                "split": "val",
                "val_samples": min(p.max_samples, len(ctx.validation_split()[1])),
                "baseline_val_accuracy": _r(found.baseline["accuracy"]),
            },
            "objective": p.objective,
            "families": list(families),
            "original": original,
            "candidates": [c.describe() for c in found.candidates],
            "pareto_front": [c.index for c in found.candidates if c.pareto],
            "chosen": chosen.index,
            "why": _why(chosen, p, original, found.stopped),
            "stopped": found.stopped,
            "fine_tune_epochs_used": found.epochs_used,
            "final": found.final,
            "test": None
            if test_after is None
            else {
                "accuracy_before": _r(test_before["accuracy"]) if test_before else None,
                "accuracy_after": _r(test_after["accuracy"]),
                "loss_before": _r(test_before["loss"]) if test_before else None,
                "loss_after": _r(test_after["loss"]),
            },
            "sensitivity": {k: v.describe() for k, v in found.sensitivity.items()},
        }
        if test_after is None:
            search["test_note"] = "the dataset has no x_test: no test figure"
        ctx.cache["search"] = search
        details = {"search": {"chosen": chosen.describe(), "stopped": found.stopped}}
        if found.model is not None:
            from prunekit.context import StrategyOutcome

            return StrategyOutcome(model=found.model, details=details)
        return ctx.outcome(found.masks, **details)

    @staticmethod
    def _families(ctx: PruningContext, p: AutoParams) -> tuple[str, ...]:
        if p.family == "unstructured":
            return ("unstructured",)
        if p.family == "structured" or p.objective == "latency":
            return ("structured",)
        if ctx.model.keras_model is None:
            ctx.reporter.event(
                "family either: this model has no Keras layer graph, so only unstructured "
                "candidates are searched",
                level="warning",
            )
            return ("unstructured",)
        return ("unstructured", "structured")


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 6)


def _original_figures(ctx: PruningContext, objective: str) -> dict[str, Any]:
    """Non-zero parameters, FLOPs and (latency objective) batch-32 latency of the original."""
    import numpy as np

    from prunekit.search import time_forward

    weights = ctx.model.weights()
    out: dict[str, Any] = {"nonzero_params": sum(int(np.count_nonzero(w.numpy())) for w in weights)}
    shape = list(ctx.require_data("auto").train.x.shape[1:])
    try:
        from prunekit.metrics.flops import count_flops

        out["flops"] = int(count_flops(ctx.model, shape).nonzero)
    except Exception as exc:
        out["flops"] = None
        if objective == "flops":
            from prunekit.errors import SpecError

            raise SpecError(
                f"objective flops: this model's FLOPs cannot be counted ({type(exc).__name__}: "
                f"{str(exc)[:200]}); use objective size",
                reason="objective_not_measurable",
            ) from exc
    out["latency_ms"] = time_forward(ctx.model, shape) if objective == "latency" else None
    if objective == "latency" and out["latency_ms"] is None:
        from prunekit.errors import SpecError

        raise SpecError(
            "objective latency: this model's forward pass could not be timed; use objective size",
            reason="objective_not_measurable",
        )
    return out


def _why(chosen: Any, p: AutoParams, original: dict[str, Any], stopped: str) -> str:
    key = {"size": "nonzero_params", "flops": "flops", "latency": "latency_ms"}[p.objective]
    value = chosen.objective(p.objective)
    base = original.get(key)
    ratio = f" ({base / value:.2f}x smaller than the original)" if base and value else ""
    return (
        f"best {p.objective} among the candidates within the budget: {value:g}{ratio}, "
        f"{chosen.family} ratio {chosen.ratio:.3f}, validation drop {chosen.drop:.4f} <= "
        f"{p.max_accuracy_drop:g}; search stopped: {stopped}"
    )

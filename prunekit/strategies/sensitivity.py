"""Strategy ``sensitivity``: a one-shot sensitivity analysis as a job of its own.

Every prunable weight tensor (``family: unstructured``: smallest ``|w|``) or channel group
(``structured``: lowest-L1 channels, needs a Keras graph) is pruned alone at each of
``ratios`` and the model evaluated on the validation split (the dataset's ``x_val``, else
a seeded tenth of train). Nothing is fine-tuned and the model is not changed: the job's
model download is the original. The curves are in the report (``sensitivity``) and drawn in
a PNG (``GET /v1/jobs/{id}/model?format=sensitivity_png``). The same analysis is the first
step of strategy ``auto`` and the input of ``allocation: "sensitivity"``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from prunekit.sensitivity import DEFAULT_MAX_SAMPLES, DEFAULT_RATIOS
from prunekit.strategies.base import Strategy, StrategyKind, StrategyParams
from prunekit.strategies.registry import register

if TYPE_CHECKING:
    from prunekit.context import PruningContext, StrategyOutcome

Ratio = Annotated[float, Field(gt=0.0, lt=1.0)]


class SensitivityParams(StrategyParams):
    needs_data: ClassVar[bool] = True  # evaluates on the job's data

    name: Literal["sensitivity"] = "sensitivity"
    family: Literal["unstructured", "structured"] = Field(
        default="unstructured",
        description="unstructured: each weight tensor loses its smallest |w|; structured: "
        "each channel group loses its lowest-L1 channels (a Keras graph is needed).",
    )
    ratios: list[Ratio] = Field(
        default_factory=lambda: list(DEFAULT_RATIOS),
        min_length=1,
        max_length=20,
        description="Fractions each layer is pruned to, alone, one evaluation each.",
    )
    max_samples: int = Field(
        default=DEFAULT_MAX_SAMPLES,
        ge=1,
        le=1_000_000,
        description="Validation samples every evaluation uses (the first ones).",
    )

    @field_validator("ratios")
    @classmethod
    def _sorted_unique(cls, v: list[float]) -> list[float]:
        if len(set(v)) != len(v):
            raise ValueError("ratios lists a value more than once")
        return sorted(v)


@register
class Sensitivity(Strategy[SensitivityParams]):
    name = "sensitivity"
    kind = StrategyKind.ANALYSIS
    description = (
        "Analysis, not pruning: each prunable layer (or channel group) pruned alone at "
        "several ratios, validation accuracy and loss recorded, one-shot; curves in the "
        "report and a PNG (?format=sensitivity_png). The model is returned unchanged."
    )
    Params = SensitivityParams

    def run(self, ctx: PruningContext) -> StrategyOutcome:
        from prunekit.evaluation import evaluate
        from prunekit.sensitivity import (
            SensitivityReport,
            analyse_channels,
            analyse_weights,
            keras_evaluator,
            subsample,
        )

        p = self.params
        ctx.require_data(self.name)
        val = subsample(ctx.validation_split()[1], p.max_samples)
        loss = ctx.loss_spec
        started = time.perf_counter()
        progress = ctx.report
        if p.family == "structured":
            from prunekit.structured.runner import keras_model_or_raise

            base, curves = analyse_channels(
                keras_model_or_raise(ctx, self.name),
                ctx.spec.exclude,
                val,
                keras_evaluator(loss),
                p.ratios,
                ctx.reporter.check_cancelled,
                progress,
            )
        else:
            base, curves = analyse_weights(
                ctx.model,
                ctx.prunable,
                val,
                lambda m, s: evaluate(m, s, loss),
                p.ratios,
                ctx.reporter.check_cancelled,
                progress,
            )
        report = SensitivityReport(
            p.family, "val", len(val), base, curves, time.perf_counter() - started
        )
        ctx.cache["sensitivity"] = report
        ctx.reporter.event(
            f"sensitivity: {len(curves)} {'group' if p.family == 'structured' else 'tensor'}(s) "
            f"x {len(p.ratios)} ratio(s) on {len(val)} validation samples in "
            f"{report.seconds:.1f} s"
        )
        return ctx.outcome(None, analysis="sensitivity", family=p.family)

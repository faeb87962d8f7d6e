"""The job side of layer budgets: which rule a strategy's parameters ask for, the
sensitivity curves the ``sensitivity`` rule needs (measured once per job), and the masks.

Strategies call :func:`budget_masks` where they used to call ``plan.masks(scores, sparsity,
scope)``; ``uniform`` and ``global`` go through the block plan unchanged (so block layouts
keep working), the other rules allocate per tensor with :func:`prunekit.allocation.allocate`.
What each tensor got is kept in ``ctx.cache["allocation"]`` for the report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from prunekit.allocation import Allocation, allocate, layer_report
from prunekit.errors import SpecError
from prunekit.masks import Masks, Scope, masks_from_scores

if TYPE_CHECKING:
    from prunekit.blocks import BlockPlan
    from prunekit.context import PruningContext
    from prunekit.sensitivity import SensitivityReport


def rule_of(params: Any) -> Allocation:
    """The layer budget of a strategy's parameters: ``allocation`` when set, else its
    ``scope`` (``layer`` = uniform, ``global`` = global)."""
    chosen = getattr(params, "allocation", None)
    if chosen is not None:
        return Allocation(chosen)
    scope = getattr(params, "scope", Scope.GLOBAL)
    return Allocation.UNIFORM if Scope(scope) is Scope.LAYER else Allocation.GLOBAL


def sensitivity_of(ctx: PruningContext, max_samples: int | None = None) -> SensitivityReport:
    """The job's one-shot unstructured sensitivity analysis (measured on first use)."""
    import time

    from prunekit.evaluation import evaluate
    from prunekit.sensitivity import (
        DEFAULT_MAX_SAMPLES,
        SensitivityReport,
        analyse_weights,
        subsample,
    )

    found = ctx.cache.get("sensitivity")
    if found is not None:
        return found  # type: ignore[no-any-return]
    if ctx.data is None:
        raise SpecError(
            "the sensitivity layer budget evaluates every layer pruned alone on validation "
            "data: attach a dataset to the job, or choose allocation uniform, global, lamp or erk",
            reason="dataset_required",
        )
    val = subsample(ctx.validation_split()[1], max_samples or DEFAULT_MAX_SAMPLES)
    loss = ctx.loss_spec
    started = time.perf_counter()
    ctx.reporter.event(f"sensitivity analysis: {len(ctx.prunable)} tensor(s), {len(val)} samples")
    base, curves = analyse_weights(
        ctx.model,
        ctx.prunable,
        val,
        lambda m, s: evaluate(m, s, loss),
        check_cancelled=ctx.reporter.check_cancelled,
    )
    report = SensitivityReport(
        "unstructured", "val", len(val), base, curves, time.perf_counter() - started
    )
    ctx.cache["sensitivity"] = report
    return report


def budget_masks(
    ctx: PruningContext,
    params: Any,
    scores: Mapping[str, np.ndarray],
    sparsity: float,
    plan: BlockPlan | None = None,
) -> Masks:
    """Masks at ``sparsity`` over ``scores`` shared out by the parameters' layer budget."""
    rule = rule_of(params)
    if rule in (Allocation.UNIFORM, Allocation.GLOBAL):
        scope = Scope.LAYER if rule is Allocation.UNIFORM else Scope.GLOBAL
        masks = (
            plan.masks(scores, sparsity, scope)
            if plan
            else masks_from_scores(scores, sparsity, scope)
        )
    else:
        curves = sensitivity_of(ctx).allocation_curves() if rule is Allocation.SENSITIVITY else None
        masks = allocate(scores, sparsity, rule, curves)
    ctx.cache["allocation"] = layer_report(masks, rule)
    return masks

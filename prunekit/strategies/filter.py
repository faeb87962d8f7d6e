"""Filter pruning: remove the least important channels, ranked by norm or Taylor score.

* ``l1`` / ``l2``: filter norms over every weight slice of a channel group (Li et al.
  2017, "Pruning Filters for Efficient ConvNets"). Data-free: without ``fine_tune`` (or
  without a dataset) the job never touches data and its result is deterministic.
* ``taylor``: first-order Taylor importance (Molchanov et al. 2019), ``(sum w * dL/dw)^2``
  per channel, accumulated over mini-batches of the job's training split
  (``taylor_samples`` samples). Needs a dataset.

``scope``: ``uniform`` removes ``floor(ratio * size)`` channels of every prunable group;
``global`` removes ``floor(ratio * total)`` channels overall, ranking channels after
dividing each group's scores by the group's mean (so layers of different scale compare).
The smaller model is then fine-tuned when the job has a dataset and ``fine_tune`` asks
for epochs (``fine_tune``'s optimizer and learning-rate ``schedule``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from prunekit.strategies.base import Strategy, StrategyKind
from prunekit.strategies.registry import register
from prunekit.strategies.structured_common import StructuredParams, channels_kept

if TYPE_CHECKING:
    from prunekit.context import PruningContext, StrategyOutcome


class FilterParams(StructuredParams):
    name: Literal["filter"] = "filter"
    criterion: Literal["l1", "l2", "taylor"] = Field(
        default="l1",
        description="l1/l2: filter norms (data-free); taylor: first-order Taylor importance "
        "on the job's data.",
    )
    scope: Literal["uniform", "global"] = Field(
        default="uniform",
        description="uniform: the same fraction of every layer; global: one ranking over "
        "all layers (scores normalised per layer).",
    )
    taylor_samples: int = Field(
        default=512,
        ge=1,
        le=1_000_000,
        description="Training samples the Taylor scores are accumulated over.",
    )

    def requires_data(self) -> bool:
        return self.criterion == "taylor" or super().requires_data()

    def missing_data(self) -> tuple[str, str]:
        if self.criterion != "taylor":
            return super().missing_data()
        return (
            "strategy.criterion",
            f"criterion {self.criterion!r} scores channels on it; or use criterion 'l1'/'l2', "
            "which are data-free",
        )

    def expected_zeros(self, units: Mapping[str, tuple[int, ...]]) -> int | None:
        if self.scope == "global":
            return super().expected_zeros(units)
        return sum(
            w - channels_kept(w, self.ratio, self.min_channels, self.round_to)
            for (w, *_) in units.values()
        )


def taylor_scores(
    graph: Any,
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    loss: Any,
    batch_size: int,
    check_cancelled: Any = None,
) -> tuple[dict[int, np.ndarray], list[Any]]:
    """Molchanov's per-channel ``(sum w*g)^2``, summed over mini-batches of ``(x, y)``."""
    from prunekit.structured import compute_gradients, group_importance

    total: dict[int, np.ndarray] = {}
    notes: list[Any] = []
    for start in range(0, len(x), batch_size):
        grads = compute_gradients(
            model, x[start : start + batch_size], y[start : start + batch_size], loss
        )
        scores, notes = group_importance(graph, "taylor", grads)
        for gid, s in scores.items():
            total[gid] = total.get(gid, 0.0) + s
        if check_cancelled is not None:
            check_cancelled()
    return total, notes


@register
class Filter(Strategy[FilterParams]):
    name = "filter"
    kind = StrategyKind.STRUCTURED
    description = (
        "Filter pruning: remove whole channels ranked by L1/L2 filter norm (data-free) or "
        "Taylor importance (needs data), uniformly per layer or globally; the model gets "
        "physically smaller. Optional fine-tuning. Needs a Keras graph (.keras)."
    )
    Params = FilterParams

    def run(self, ctx: PruningContext) -> StrategyOutcome:
        from prunekit.losses import keras_loss, loss_targets
        from prunekit.structured import (
            build_dependency_graph,
            group_importance,
            model_cost,
            select_channels,
        )
        from prunekit.structured.runner import (
            channel_totals,
            cost_details,
            data_or_raise,
            keras_model_or_raise,
            outcome,
            run_training,
            train_settings,
            training_details,
        )
        from prunekit.structured.steps import cut_in_steps, recalibrate_after_cut

        p = self.params
        model = keras_model_or_raise(ctx, self.name)
        graph = build_dependency_graph(model, exclude=ctx.spec.exclude)
        cost_before = model_cost(model)
        settings = train_settings(ctx)
        recalibrate = p.wants_recalibration(ctx.data is not None)
        if recalibrate:
            data_or_raise(ctx, self.name, "was asked to recalibrate BatchNorm statistics")

        used_data = False
        importance_notes: list[Any] = []

        def score(g: Any, m: Any) -> dict[int, np.ndarray]:
            nonlocal importance_notes
            if p.criterion != "taylor":
                scores, importance_notes = group_importance(g, p.criterion)
                return scores
            data = data_or_raise(ctx, self.name, "ranks channels by Taylor importance")
            spec = ctx.loss_spec
            n = min(p.taylor_samples, len(data.train))
            x = np.asarray(data.train.x[:n], dtype="float32")
            y = loss_targets(spec, data.train.y[:n])
            scores, importance_notes = taylor_scores(
                g, m, x, y, keras_loss(spec), settings.batch_size, ctx.reporter.check_cancelled
            )
            return scores

        ctx.reporter.phase("scoring channels", 0.25, criterion=p.criterion)
        scores = score(graph, model)
        used_data = p.criterion == "taylor"
        first_cut = select_channels(scores, p.ratio, p.scope, p.min_channels, p.round_to)
        cut = cut_in_steps(
            ctx,
            graph,
            first_cut,
            graph.prunable_groups,
            score,
            steps=p.steps,
            recovery=replace(settings, epochs=p.step_epochs),
            recalibrate=recalibrate,
            samples=p.recalibration_samples,
            extra_notes=importance_notes,
        )
        new_model = cut.model
        used_data = used_data or recalibrate or bool(cut.recovery)
        cost_after = model_cost(new_model)

        fine_tune: dict[str, Any] | None = None
        wants_ft = ctx.spec.fine_tune is not None and ctx.spec.fine_tune.epochs > 0
        if wants_ft and ctx.data is None:
            ctx.reporter.event(
                "fine_tune was asked for but the job has no dataset: the pruned model is "
                "not fine-tuned",
                level="warning",
            )
        elif wants_ft and ctx.data is not None:
            report = run_training(ctx, new_model, ctx.data, settings, (0.5, 0.85), "fine-tuning")
            fine_tune = training_details(report, settings)
            used_data = True
            if recalibrate and p.recalibrate_after_fine_tune:
                rec = recalibrate_after_cut(ctx, new_model, p.recalibration_samples, "fine-tuning")
                if rec is not None:
                    cut.recalibration.append(rec)
        ctx.reporter.check_cancelled()

        details: dict[str, Any] = {
            "structured": {
                "method": "filter",
                "criterion": p.criterion,
                "scope": p.scope,
                "ratio": p.ratio,
                "steps": p.steps,
                "data_free": not used_data,
                "channels": channel_totals(graph, cut.kept_counts),
                "kept": cut.kept,
                "blocked": cut.notes,
                **cost_details(cost_before, cost_after),
                "recalibration": cut.recalibration or None,
                "step_recovery": cut.recovery or None,
                "fine_tune": fine_tune,
            }
        }
        return outcome(ctx, new_model, details)

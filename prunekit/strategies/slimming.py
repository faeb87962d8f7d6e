"""Network Slimming (Liu et al. 2017): sparsify BatchNorm scales, cut the smallest, retrain.

1. Sparsity training on the job's data: the loss gets ``l1_lambda * sum |gamma|`` over the
   BatchNormalization scales of the prunable channels (the subgradient
   ``l1_lambda * sign(gamma)`` is added to each gamma's gradient), ``sparsity_epochs``
   epochs with the optimizer and batch size of ``fine_tune`` at a constant learning rate
   (``sparsity_learning_rate``, default ``fine_tune``'s).
2. One global threshold on ``|gamma|``, as in the paper: the ``ratio`` fraction of channels
   with the smallest scales, across all layers, are removed (``min_channels`` kept per
   group). The scales are compared raw, not normalised per layer: after sparsity training
   ``|gamma|`` itself says how much a channel contributes. A channel group fed to several
   BatchNorms (through an ``Add``) is scored by its mean ``|gamma|``.
3. Surgery (``prunekit.structured``) builds the smaller dense model; then it is
   fine-tuned (``fine_tune``, its ``schedule`` included; absent means one epoch with
   defaults, ``epochs: 0`` skips).

Channels whose group has no BatchNormalization are kept (prune them with ``filter``).
Sparsity training updates the loaded model in memory; the job's input file is untouched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from prunekit.strategies.base import Strategy, StrategyKind
from prunekit.strategies.registry import register
from prunekit.strategies.structured_common import StructuredParams, round_keep

if TYPE_CHECKING:
    from prunekit.context import PruningContext, StrategyOutcome


class SlimmingParams(StructuredParams):
    name: Literal["slimming"] = "slimming"
    l1_lambda: float = Field(
        default=1e-3,
        ge=0.0,
        le=1.0,
        description="Weight of the L1 penalty on BatchNorm scales during sparsity training "
        "(the paper uses 1e-4 over a full training run; a few epochs need more).",
    )
    sparsity_epochs: int = Field(
        default=3, ge=0, le=1000, description="Epochs of sparsity training before the cut."
    )
    sparsity_learning_rate: float | None = Field(
        default=None,
        gt=0,
        le=10,
        description="Constant learning rate of sparsity training (default: fine_tune's). "
        "With Adam a scale moves about this much per step, so a short schedule needs a "
        "rate large enough for unimportant scales to reach zero.",
    )

    needs_data = True


def select_global_threshold(
    scores: Mapping[int, np.ndarray], ratio: float, min_channels: int = 1, round_to: int = 1
) -> dict[int, np.ndarray]:
    """Remove ``floor(ratio * total)`` channels with the smallest raw scores over all
    groups, keeping at least ``min_channels`` per group (ties: lower group id, then lower
    channel index first), then round each group's kept count up to a multiple of
    ``round_to`` (``round_keep``: the highest-scored removed channels come back first).
    Returns ``{group id: sorted kept indices}``."""

    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    ids = sorted(scores)
    total = sum(int(scores[g].size) for g in ids)
    target = math.floor(ratio * total)
    entries = sorted(
        (float(v), gid, c) for gid in ids for c, v in enumerate(np.asarray(scores[gid]))
    )
    removed: dict[int, list[int]] = {gid: [] for gid in ids}
    n_removed = 0
    for _, gid, c in entries:
        if n_removed >= target:
            break
        size = int(scores[gid].size)
        if size - len(removed[gid]) <= max(1, min(size, min_channels)):
            continue
        removed[gid].append(c)
        n_removed += 1
    kept: dict[int, np.ndarray] = {}
    for gid in ids:
        size = int(scores[gid].size)
        keep = round_keep(size - len(removed[gid]), size, round_to)
        # removed[gid] is in increasing score order: give back the largest first
        drop = removed[gid][: size - keep]
        kept[gid] = np.setdiff1d(np.arange(size), np.asarray(drop, dtype=int))
    return kept


@register
class Slimming(Strategy[SlimmingParams]):
    name = "slimming"
    aliases = ("slimnet",)
    kind = StrategyKind.STRUCTURED
    description = (
        "Network Slimming (Liu et al. 2017): L1 sparsity training of BatchNorm scales, a "
        "global |gamma| threshold removes whole channels, then the smaller model is "
        "fine-tuned. Needs a Keras graph (.keras) and a dataset."
    )
    Params = SlimmingParams

    def run(self, ctx: PruningContext) -> StrategyOutcome:
        from prunekit.errors import SpecError
        from prunekit.layers import Note
        from prunekit.structured import build_dependency_graph, group_importance, model_cost
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
        from prunekit.structured.training import gamma_summary, prunable_gammas

        p = self.params
        model = keras_model_or_raise(ctx, self.name)
        data = data_or_raise(ctx, self.name, "trains the BatchNorm scales towards sparsity")
        graph = build_dependency_graph(model, exclude=ctx.spec.exclude)
        n_gamma = {
            g.id: sum(1 for m in g.members if m.kind == "gamma") for g in graph.prunable_groups
        }
        bn_groups = [g for g in graph.prunable_groups if n_gamma[g.id] > 0]
        if not bn_groups:
            raise SpecError(
                "slimming prunes channels by their BatchNormalization scale, but no prunable "
                "channel of this model goes through a BatchNormalization layer; use strategy "
                "'filter' (norm or Taylor importance) instead",
                reason="no_batchnorm",
            )
        gammas = prunable_gammas(graph)

        def gamma_scores(g: Any, m: Any) -> dict[int, np.ndarray]:
            """Mean |gamma| over each group's BatchNorms (the rebuilt graphs of steps > 1)."""
            counts = {
                x.id: sum(1 for mm in x.members if mm.kind == "gamma") for x in g.prunable_groups
            }
            groups = [x for x in g.prunable_groups if counts[x.id] > 0]
            sums, _ = group_importance(g, "bn_gamma", groups=groups)
            return {gid: v / counts[gid] for gid, v in sums.items()}

        cost_before = model_cost(model)
        before = gamma_summary(gammas)

        sparse_settings = train_settings(
            ctx, p.sparsity_epochs, p.sparsity_learning_rate, schedule="constant"
        )
        sparse_report = run_training(
            ctx,
            model,
            data,
            sparse_settings,
            (0.2, 0.5),
            "sparsity training",
            l1_lambda=p.l1_lambda,
            gammas=gammas,
        )
        after = gamma_summary(gammas)

        ctx.reporter.phase("removing channels", 0.5)
        sums, importance_notes = group_importance(graph, "bn_gamma", groups=bn_groups)
        scores = {gid: s / n_gamma[gid] for gid, s in sums.items()}
        kept_by_group = select_global_threshold(scores, p.ratio, p.min_channels, p.round_to)
        removed = [
            float(scores[gid][c])
            for gid, keep in kept_by_group.items()
            for c in np.setdiff1d(np.arange(scores[gid].size), keep)
        ]
        survivors = [float(scores[gid][c]) for gid, keep in kept_by_group.items() for c in keep]
        skipped = [
            Note(
                f"group {g.id} ({', '.join(g.sources)})",
                "no BatchNormalization scale: slimming keeps its channels (use 'filter')",
            )
            for g in graph.prunable_groups
            if n_gamma[g.id] == 0
        ]
        recalibrate = p.wants_recalibration(True)
        ft_settings = train_settings(ctx)
        cut = cut_in_steps(
            ctx,
            graph,
            kept_by_group,
            bn_groups,
            gamma_scores,
            steps=p.steps,
            recovery=replace(ft_settings, epochs=p.step_epochs),
            recalibrate=recalibrate,
            samples=p.recalibration_samples,
            extra_notes=[*importance_notes, *skipped],
            span=(0.5, 0.55),
        )
        new_model, kept, notes = cut.model, cut.kept, cut.notes
        cost_after = model_cost(new_model)

        ft_report = run_training(ctx, new_model, data, ft_settings, (0.55, 0.85), "fine-tuning")
        if recalibrate and p.recalibrate_after_fine_tune and ft_report.epoch_losses:
            rec = recalibrate_after_cut(ctx, new_model, p.recalibration_samples, "fine-tuning")
            if rec is not None:
                cut.recalibration.append(rec)
        ctx.reporter.check_cancelled()

        details: dict[str, Any] = {
            "structured": {
                "method": "slimming",
                "criterion": "bn_gamma",
                "scope": "global",
                "ratio": p.ratio,
                "channels": channel_totals(graph, kept_by_group, bn_groups),
                "kept": kept,
                "blocked": notes,
                "steps": p.steps,
                **cost_details(cost_before, cost_after),
                "recalibration": cut.recalibration or None,
                "step_recovery": cut.recovery or None,
                "gamma": {
                    "before_sparsity_training": before,
                    "after_sparsity_training": after,
                    "threshold": max(removed) if removed else None,
                    "smallest_kept": min(survivors) if survivors else None,
                },
                "sparsity_training": {
                    "l1_lambda": p.l1_lambda,
                    **training_details(sparse_report, sparse_settings),
                },
                "fine_tune": training_details(ft_report, ft_settings),
            }
        }
        return outcome(ctx, new_model, details)

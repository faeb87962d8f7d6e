"""The recovery side of structured jobs: BN recalibration after a cut, iterative steps.

* :func:`recalibrate_after_cut` re-estimates every BatchNorm's moving statistics on the
  job's training inputs (:mod:`prunekit.structured.recalibration`), measuring the quality on
  the held-out split (capped) before and after, and says so in the job's events; the figures
  go in the report (``details.structured.recalibration``).
* :func:`step_keep_counts` plans ``steps: k`` iterative pruning: the channels each group keeps
  after step ``i`` of ``k``, reaching exactly the one-shot target at step ``k``.
* :func:`keep_top` keeps a group's ``count`` best-scored channels.

Channel groups are matched across the rebuilt models of successive steps by their source
layers (surgery keeps every layer's name), not by group id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from prunekit.context import PruningContext
from prunekit.data import Split
from prunekit.evaluation import eval_set, quality
from prunekit.layers import Note
from prunekit.structured.graph import ChannelGroup, DependencyGraph
from prunekit.structured.recalibration import recalibrate_batchnorm
from prunekit.training import TrainConfig

EVAL_SAMPLES = 1000  # held-out samples the before/after figures are measured on


def group_key(group: ChannelGroup) -> tuple[str, ...]:
    """A group's identity across rebuilt graphs: its sorted source layer paths."""
    return tuple(sorted(group.sources))


def step_keep_counts(size: int, target: int, step: int, steps: int) -> int:
    """Channels kept after ``step`` (1..``steps``) of a group going from ``size`` to
    ``target`` channels: ``size - floor(step * (size - target) / steps)``; ``target`` at the
    last step."""
    if not 1 <= step <= steps:
        raise ValueError(f"step must be in [1, {steps}], got {step}")
    if not 1 <= target <= size:
        raise ValueError(f"target must be in [1, {size}], got {target}")
    return size - (step * (size - target)) // steps


def keep_top(scores: np.ndarray, count: int) -> np.ndarray:
    """Sorted indices of the ``count`` highest-scored channels (ties: the lower index is
    removed first, as in :func:`prunekit.structured.selection.select_channels`)."""
    scores = np.asarray(scores)
    if not 1 <= count <= scores.size:
        raise ValueError(f"count must be in [1, {scores.size}], got {count}")
    order = np.lexsort((np.arange(scores.size), scores))  # least important first
    return np.sort(order[scores.size - count :])


def _held_out(ctx: PruningContext) -> tuple[str, Split] | None:
    if ctx.data is None:
        return None
    return ctx.data.held_out() or ("train", ctx.data.train)


def _quality(ctx: PruningContext, model: keras.Model, split: Split) -> dict[str, float]:
    x = np.asarray(split.x, dtype="float32")
    as_list = isinstance(model.input, list)
    # eager batches, not model.predict: no graph is traced for a model used this once
    out = np.concatenate(
        [
            np.asarray(keras.ops.convert_to_numpy(model([xb] if as_list else xb, training=False)))
            for xb in (x[i : i + 256] for i in range(0, len(x), 256))
        ]
    )
    q = quality(out, np.asarray(split.y), ctx.loss_spec)
    return {k: round(float(q[k]), 6) for k in ("accuracy", "loss") if k in q}


def recalibrate_after_cut(
    ctx: PruningContext, model: keras.Model, samples: int, label: str
) -> dict[str, Any] | None:
    """Re-estimate ``model``'s BatchNorm statistics (in place) on up to ``samples`` training
    inputs; ``None`` when the job has no data. Returns what the report records."""
    if ctx.data is None:
        return None
    held = _held_out(ctx)
    assert held is not None
    name, split = held
    ev = eval_set(name, split, EVAL_SAMPLES)
    ev_split = Split(ev.x, ev.y)
    before = _quality(ctx, model, ev_split)
    # a fixed, seeded sample of the training inputs (not the first rows: those may be sorted)
    x = ctx.data.train.x
    n = min(len(x), samples)
    idx = np.sort(ctx.rng().choice(len(x), size=n, replace=False)) if n < len(x) else None
    xs = np.asarray(x if idx is None else x[idx], dtype="float32")
    report = recalibrate_batchnorm(
        model,
        xs,
        batch_size=ctx.train_config().batch_size,
        max_samples=n,
        check_cancelled=ctx.reporter.check_cancelled,
    )
    after = _quality(ctx, model, ev_split)
    details = {
        "after": label,
        "batchnorm_layers": report.layers,
        "frozen_batchnorm_layers": report.frozen,
        "samples": report.samples,
        "evaluated_on": ev.describe(),
        "before": before,
        "recalibrated": after,
    }
    metric = "accuracy" if "accuracy" in before else "loss"
    ctx.reporter.event(
        f"BatchNorm recalibration after {label}: {report.layers} layer(s) on {report.samples} "
        f"training samples; {name} {metric} {before[metric]:.4f} -> {after[metric]:.4f}"
        + (f" ({report.frozen} frozen BatchNorm layer(s) kept)" if report.frozen else "")
    )
    return details


def keep_counts_by_key(
    groups: list[ChannelGroup], kept: Mapping[int, np.ndarray]
) -> dict[tuple[str, ...], int]:
    """The one-shot selection's kept count per group, keyed by :func:`group_key`."""
    return {group_key(g): len(kept.get(g.id, range(g.size))) for g in groups}


Scorer = Callable[[DependencyGraph, keras.Model], dict[int, np.ndarray]]


@dataclass
class CutResult:
    """The outcome of :func:`cut_in_steps`, in terms of the ORIGINAL graph's groups."""

    model: keras.Model
    kept_counts: dict[int, np.ndarray]  # original group id -> kept positions (length counts)
    kept: dict[str, dict[str, int]]  # source layer path -> channels before/after
    notes: list[str]
    recalibration: list[dict[str, Any]] = field(default_factory=list)
    recovery: list[dict[str, Any]] = field(default_factory=list)


def cut_in_steps(
    ctx: PruningContext,
    graph: DependencyGraph,
    first_cut: Mapping[int, np.ndarray],
    groups: Sequence[ChannelGroup],
    score: Scorer,
    *,
    steps: int,
    recovery: TrainConfig,
    recalibrate: bool,
    samples: int,
    extra_notes: Sequence[Note] = (),
    span: tuple[float, float] = (0.4, 0.5),
) -> CutResult:
    """Remove channels of ``groups`` in ``steps`` cuts reaching exactly the widths of
    ``first_cut`` (the one-shot selection on ``graph``): cut ``i`` keeps
    :func:`step_keep_counts` channels of each group, the best by ``score`` on the model as
    it is then. Every cut is followed by BatchNorm recalibration (``recalibrate``) and, but
    the last, by ``recovery`` training with a fresh optimizer: the learning rate is rewound
    to its start at every step. With ``steps == 1`` this is the one-shot cut."""
    from prunekit.structured import build_dependency_graph
    from prunekit.structured.runner import run_training, surgery, training_details

    sizes = {group_key(g): g.size for g in groups}
    targets = keep_counts_by_key(list(groups), first_cut)
    model = graph.model
    current = graph
    notes: list[str] = []
    result = CutResult(model, {}, {}, [])
    lo, hi = span
    for step in range(1, steps + 1):
        if step > 1:
            current = build_dependency_graph(model, exclude=ctx.spec.exclude)
        if steps == 1:  # the one-shot selection as it is
            kept_now = {g.id: np.asarray(first_cut[g.id]) for g in groups if g.id in first_cut}
        else:
            mine = [g for g in current.prunable_groups if group_key(g) in targets]
            scores = score(current, model)
            kept_now = {}
            for g in mine:
                key = group_key(g)
                count = step_keep_counts(sizes[key], targets[key], step, steps)
                kept_now[g.id] = keep_top(scores[g.id], min(g.size, count))
        label = "the cut" if steps == 1 else f"cut {step}/{steps}"
        if steps > 1:  # a one-shot cut's phase is the strategy's own
            ctx.reporter.phase("removing channels", lo + (hi - lo) * (step - 1) / steps, step=step)
        model, _, step_notes = surgery(ctx, current, kept_now, extra_notes if step == 1 else ())
        notes.extend(n for n in step_notes if n not in notes)
        if recalibrate:
            rec = recalibrate_after_cut(ctx, model, samples, label)
            if rec is not None:
                result.recalibration.append(rec)
        if step < steps and ctx.data is not None and recovery.epochs > 0:
            report = run_training(
                ctx,
                model,
                ctx.data,
                recovery,
                (lo + (hi - lo) * (step - 1) / steps, lo + (hi - lo) * step / steps),
                f"recovery after {label}",
            )
            result.recovery.append({"step": step, **training_details(report, recovery)})
        ctx.reporter.check_cancelled()
    final = dict(targets)
    result.model = model
    result.notes = notes
    for g in groups:
        result.kept_counts[g.id] = np.arange(final[group_key(g)])
    for path, info in graph.sources.items():
        grp = graph.groups[graph.group_id(info.group)]
        n = final.get(group_key(grp), grp.size)
        result.kept[path] = {"before": grp.size, "after": n}
    return result

"""The job side of structured strategies: context checks, training, the outcome.

Used by :mod:`prunekit.strategies.slimming` and :mod:`prunekit.strategies.filter`; keeps
the strategy modules short and TensorFlow-free at import time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import keras
import numpy as np

from prunekit.context import PruningContext, StrategyOutcome, recipe_note
from prunekit.data import Dataset
from prunekit.errors import SpecError
from prunekit.layers import Note
from prunekit.metrics.flops import ModelCost
from prunekit.model import LoadedModel
from prunekit.strategies.structured_common import keras_graph_required
from prunekit.structured.graph import ChannelGroup, DependencyGraph
from prunekit.structured.surgery import apply_pruning
from prunekit.structured.traceable import untraceable_reason
from prunekit.structured.training import TrainReport, keras_trainer, train
from prunekit.training import TrainConfig

MAX_NOTE_EVENTS = 20


def keras_model_or_raise(ctx: PruningContext, strategy: str) -> keras.Model:
    model = ctx.model.keras_model
    if model is None:
        raise SpecError(keras_graph_required(strategy), reason="keras_graph_required")
    why = untraceable_reason(model)
    if why is not None:
        raise SpecError(why, reason="untraceable_graph")
    return model


def data_or_raise(ctx: PruningContext, strategy: str, why: str) -> Dataset:
    if ctx.data is None:
        raise SpecError(
            f"strategy {strategy!r} {why} and needs a dataset: attach one to the job "
            "(an .npz with x_train/y_train)",
            reason="dataset_required",
        )
    return ctx.data


def train_settings(
    ctx: PruningContext,
    epochs: int | None = None,
    learning_rate: float | None = None,
    schedule: str | None = None,
) -> TrainConfig:
    """``spec.fine_tune`` as every strategy reads it (:meth:`PruningContext.train_config`:
    optimizer, schedule, batch size, learning rate, epochs; defaults when absent), with
    overrides."""
    config = ctx.train_config(epochs)
    if learning_rate is not None:
        config = replace(config, learning_rate=learning_rate)
    if schedule is not None:
        config = replace(config, schedule=schedule)
    return config


def run_training(
    ctx: PruningContext,
    model: keras.Model,
    data: Dataset,
    settings: TrainConfig,
    span: tuple[float, float],
    label: str,
    *,
    l1_lambda: float = 0.0,
    gammas: Sequence[Any] = (),
) -> TrainReport:
    """Train ``model`` on the job's training split, reporting progress within ``span`` of
    the whole job (0..1)."""
    if settings.epochs <= 0:
        return TrainReport([], 0, 0.0)
    ctx.reporter.phase(label, span[0], epochs=settings.epochs)
    distill = ctx.distillation()
    trainer = keras_trainer(
        model,
        ctx.loss_spec,
        settings,
        l1_lambda=l1_lambda,
        gammas=gammas,
        seed=ctx.seed,
        progress=ctx.reporter.progress,  # span is a range of the whole job's progress
        check_cancelled=ctx.reporter.check_cancelled,
        distill=distill,
    )
    report = train(trainer, data.train.x, data.train.y, span=span, label=label)
    if report.epoch_losses:
        ctx.reporter.event(
            f"{label}: {settings.epochs} epoch(s), {settings.optimizer}, lr "
            f"{settings.learning_rate} ({settings.schedule}), batch {settings.batch_size}; "
            "last epoch loss "
            f"{report.epoch_losses[-1]:.4f}" + recipe_note(settings, distill)
        )
    return report


def training_details(report: TrainReport, settings: TrainConfig) -> dict[str, Any]:
    return {
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        "learning_rate": settings.learning_rate,
        "optimizer": settings.optimizer,
        "schedule": settings.schedule,
        "final_learning_rate": (
            None if report.final_learning_rate is None else round(report.final_learning_rate, 10)
        ),
        "epoch_losses": [round(v, 6) for v in report.epoch_losses],
        "seconds": round(report.seconds, 3),
    }


def report_notes(ctx: PruningContext, notes: Sequence[Note]) -> list[str]:
    """Send the notes to the job's event log (capped) and return them as strings."""
    texts = list(dict.fromkeys(str(n) for n in notes))
    for text in texts[:MAX_NOTE_EVENTS]:
        ctx.reporter.event(text, level="info")
    if len(texts) > MAX_NOTE_EVENTS:
        ctx.reporter.event(
            f"{len(texts) - MAX_NOTE_EVENTS} more notes; all are in the job's metrics "
            "(details.blocked)",
            level="warning",
        )
    return texts


def cost_details(before: ModelCost, after: ModelCost) -> dict[str, Any]:
    def pair(b: int, a: int) -> dict[str, Any]:
        return {"before": b, "after": a, "reduction": round(b / a, 4) if a else None}

    return {
        # all ops (BatchNorm, pooling, merges too): not metrics.flops, which counts matmul/conv
        "flops_all_ops": pair(before.flops, after.flops),
        "params": pair(before.params, after.params),
    }


def surgery(
    ctx: PruningContext,
    graph: DependencyGraph,
    kept_by_group: Mapping[int, np.ndarray],
    extra_notes: Sequence[Note] = (),
) -> tuple[keras.Model, dict[str, Any], list[str]]:
    """Rebuild the model with only the kept channels.

    Returns ``(new model, per-layer kept channels, notes)``.
    """
    new_model, surgery_notes = apply_pruning(graph, kept_by_group)
    kept: dict[str, dict[str, int]] = {}
    for path, info in graph.sources.items():
        grp = graph.groups[graph.group_id(info.group)]
        n_kept = len(kept_by_group.get(grp.id, range(grp.size)))
        kept[path] = {"before": grp.size, "after": n_kept}
    notes = report_notes(ctx, [*graph.notes, *extra_notes, *surgery_notes])
    return new_model, kept, notes


def channel_totals(
    graph: DependencyGraph,
    kept_by_group: Mapping[int, np.ndarray],
    groups: Sequence[ChannelGroup] | None = None,
) -> dict[str, Any]:
    """Channels of the candidate groups (default: every prunable one) before/after: what
    ``ratio`` is a fraction of."""
    groups = graph.prunable_groups if groups is None else list(groups)
    before = sum(g.size for g in groups)
    after = sum(len(kept_by_group.get(g.id, range(g.size))) for g in groups)
    return {
        "prunable_before": before,
        "prunable_after": after,
        "removed_fraction": round(1 - after / before, 6) if before else 0.0,
        "groups": len(graph.groups),
        "prunable_groups": len(groups),
    }


def outcome(
    ctx: PruningContext, new_model: keras.Model, details: dict[str, Any]
) -> StrategyOutcome:
    """Wrap the smaller model so the pipeline saves it in the input's format.

    ``clone_model`` compiles the clone like the original and builds its optimizer: the
    saved file would carry zero-filled optimizer slots (twice the weights for Adam). It is
    compiled again with the same loss/metrics and an unbuilt optimizer instead."""
    if getattr(new_model, "compiled", False):
        config = keras.saving.deserialize_keras_object(new_model.get_compile_config())
        new_model.compile(**config)
    names = ctx.model.signature_names or (
        list(ctx.model.saved_object.signatures) if ctx.model.saved_object is not None else None
    )
    pruned = LoadedModel(
        format=ctx.model.format,
        keras_model=new_model,
        signature_names=names or ["serving_default", "serve"],
        output_name=ctx.model.output_name,
    )
    return StrategyOutcome(model=pruned, details=details)

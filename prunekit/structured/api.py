"""Public entry point: :func:`prune_channels`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import keras
import numpy as np

from prunekit.layers import Note
from prunekit.metrics.flops import ModelCost, model_cost
from prunekit.structured.graph import DependencyGraph, build_dependency_graph
from prunekit.structured.importance import Gradients, group_importance
from prunekit.structured.selection import Scope, select_channels
from prunekit.structured.surgery import apply_pruning


@dataclass(frozen=True)
class GroupSummary:
    id: int
    sources: list[str]
    layers: list[str]
    size: int
    kept: int
    blocked: list[str]


@dataclass
class StructuredResult:
    """Outcome of :func:`prune_channels`.

    ``kept`` maps every source layer path (``outer/inner`` for nested models) to the
    indices of its original output channels that survive (all of them when not pruned).
    """

    model: keras.Model
    kept: dict[str, list[int]]
    notes: list[Note]
    groups: list[GroupSummary]
    cost_before: ModelCost
    cost_after: ModelCost
    graph: DependencyGraph = field(repr=False)


def prune_channels(
    model: keras.Model,
    ratio: float,
    criterion: str = "l1",
    scope: Scope = "uniform",
    min_channels: int = 1,
    exclude: Sequence[str] | None = None,
    gradients: Gradients | None = None,
    round_to: int = 1,
) -> StructuredResult:
    """Physically remove the least important channels of ``model``.

    Args:
        model: built Functional or Sequential Keras 3 model (channels-last). Not modified.
        ratio: fraction of channels to remove in ``[0, 1)`` (see ``scope``).
        criterion: ``"l1"``, ``"l2"``, ``"bn_gamma"`` or ``"taylor"``.
        scope: ``"uniform"`` (same fraction in each group) or ``"global"`` (one threshold
            over group-normalised scores).
        min_channels: minimum channels kept per group.
        exclude: regexes; groups touching a matching layer are not pruned.
        gradients: for ``"taylor"``: ``{"<layer path>/<weight name>": array}`` or a
            callable ``model -> dict`` (see ``importance.compute_gradients``).
        round_to: round kept channel counts up to a multiple of this.

    Returns:
        A :class:`StructuredResult` with a new model (same input/output/layer names).
    """
    graph = build_dependency_graph(model, exclude=exclude)
    scores, importance_notes = group_importance(graph, criterion, gradients)
    kept_by_group = select_channels(scores, ratio, scope, min_channels, round_to)
    new_model, surgery_notes = apply_pruning(graph, kept_by_group)

    kept: dict[str, list[int]] = {}
    for path, info in graph.sources.items():
        grp = graph.groups[graph.group_id(info.group)]
        idx = kept_by_group.get(grp.id, np.arange(grp.size))
        kept[path] = [int(i) for i in idx]
    summaries = [
        GroupSummary(
            id=g.id,
            sources=list(g.sources),
            layers=g.layers,
            size=g.size,
            kept=len(kept_by_group.get(g.id, range(g.size))),
            blocked=list(g.blocked),
        )
        for g in graph.groups
    ]
    return StructuredResult(
        model=new_model,
        kept=kept,
        notes=[*graph.notes, *importance_notes, *surgery_notes],
        groups=summaries,
        cost_before=model_cost(model),
        cost_after=model_cost(new_model),
        graph=graph,
    )

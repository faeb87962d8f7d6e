"""Structured (channel) pruning that physically removes channels from Keras 3 models."""

from prunekit.layers import Note
from prunekit.metrics.flops import ModelCost, model_cost
from prunekit.structured.api import GroupSummary, StructuredResult, prune_channels
from prunekit.structured.graph import (
    ChannelGroup,
    DependencyGraph,
    Layout,
    Member,
    Segment,
    build_dependency_graph,
)
from prunekit.structured.importance import compute_gradients, group_importance
from prunekit.structured.selection import select_channels
from prunekit.structured.surgery import SurgeryError, apply_pruning

__all__ = [
    "ChannelGroup",
    "DependencyGraph",
    "GroupSummary",
    "Layout",
    "Member",
    "ModelCost",
    "Note",
    "Segment",
    "StructuredResult",
    "SurgeryError",
    "apply_pruning",
    "build_dependency_graph",
    "compute_gradients",
    "group_importance",
    "model_cost",
    "prune_channels",
    "select_channels",
]

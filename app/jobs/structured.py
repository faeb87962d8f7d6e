"""Submission checks specific to structured (channel-removing) strategies.

The API never loads models: whether a model has a Keras layer graph comes from the
worker's inspection (``inspection.details.has_keras_graph``). When the inspection is still
running, submission waits for it briefly; if it is still pending after that, the job is
accepted and the worker fails it with the same explanation.
"""

from __future__ import annotations

from typing import Any

from app.models.service import wait_inspected
from app.problems import validation_problem
from prunekit.strategies import StrategyKind, StrategyParams, get
from prunekit.strategies.structured_common import keras_graph_required


def check_submission(params: StrategyParams, model: dict[str, Any], dataset_id: str | None) -> None:
    """422 for a structured strategy the model or the job cannot support."""
    if get(params.name).kind is not StrategyKind.STRUCTURED:
        return
    requires_data = getattr(params, "requires_data", None)
    if callable(requires_data) and requires_data() and dataset_id is None:
        criterion = getattr(params, "criterion", None)
        why = f"criterion {criterion!r}" if params.name == "filter" else "it trains the model"
        field = "body.strategy.criterion" if params.name == "filter" else "body.dataset_id"
        message = f"strategy {params.name!r} needs a dataset ({why}): pass `dataset_id`" + (
            ", or use criterion 'l1'/'l2', which are data-free" if criterion else ""
        )
        raise validation_problem(
            [{"field": field, "message": message, "type": "dataset_required"}], message
        )
    inspection = wait_inspected(model).get("inspection") or {}
    details = inspection.get("details") or {}
    if inspection.get("status") == "succeeded" and not details.get("has_keras_graph", False):
        message = keras_graph_required(params.name)
        raise validation_problem(
            [{"field": "body.strategy.name", "message": message, "type": "keras_graph_required"}],
            message,
        )
    untraceable = details.get("structured_untraceable")
    if inspection.get("status") == "succeeded" and untraceable:
        raise validation_problem(
            [{"field": "body.strategy.name", "message": untraceable, "type": "untraceable_graph"}],
            untraceable,
        )

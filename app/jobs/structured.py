"""Submission checks specific to structured (channel-removing) strategies.

The API never loads models: whether a model has a Keras layer graph comes from the
worker's inspection (``inspection.details.has_keras_graph``). When the inspection is still
running, submission waits for it briefly; if it is still pending after that, the job is
accepted and the worker fails it with the same explanation.
"""

from __future__ import annotations

from app.models.service import wait_inspected
from app.problems import validation_problem
from core.records import ModelRecord
from prunekit.strategies import StrategyKind, StrategyParams, get
from prunekit.strategies.structured_common import keras_graph_required


def check_submission(params: StrategyParams, model: ModelRecord, dataset_id: str | None) -> None:
    """422 for a structured strategy the model cannot support (whether the job needs a
    dataset is checked for every strategy, from its parameters' ``requires_data``)."""
    if get(params.name).kind is not StrategyKind.STRUCTURED:
        return
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

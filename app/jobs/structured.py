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
    data_requirement = getattr(params, "data_requirement", None)
    needed = data_requirement() if callable(data_requirement) else None
    if needed is not None and dataset_id is None:
        field, why = needed
        how = {
            "strategy.criterion": ", or use criterion 'l1'/'l2', which are data-free",
            "strategy.recalibrate": ", or leave recalibrate null (on only when there is data)",
        }
        message = f"strategy {params.name!r} needs a dataset ({why}): pass `dataset_id`" + how.get(
            field, ""
        )
        raise validation_problem(
            [{"field": f"body.{field}", "message": message, "type": "dataset_required"}], message
        )
    inspection = wait_inspected(model).get("inspection") or {}
    details = inspection.get("details") or {}
    if inspection.get("status") == "succeeded" and not details.get("has_keras_graph", False):
        message = keras_graph_required(params.name)
        raise validation_problem(
            [{"field": "body.strategy.name", "message": message, "type": "keras_graph_required"}],
            message,
        )

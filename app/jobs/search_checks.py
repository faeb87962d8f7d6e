"""Submission checks of strategy ``auto`` and of the ``sensitivity`` layer budget.

From the model's inspection (the API never loads models): an objective the model cannot be
measured on (FLOPs that could not be counted, for a reason a dataset's sample shape does not
fix), or a structured family on a model without a Keras layer graph, is a 422 naming the
field. Missing datasets are caught earlier (``needs_data``) except for
``allocation: "sensitivity"`` on a data-free strategy, caught here.
"""

from __future__ import annotations

from app.models.service import wait_inspected
from app.problems import validation_problem
from core.records import ModelRecord
from prunekit.strategies import StrategyParams
from prunekit.strategies.structured_common import keras_graph_required

OPEN_DIMENSIONS = "unknown dimensions"  # prunekit.metrics.flops: a dataset's shape fixes it


def _refuse(field: str, message: str, kind: str) -> None:
    raise validation_problem([{"field": field, "message": message, "type": kind}], message)


def check_submission(params: StrategyParams, model: ModelRecord, dataset_id: str | None) -> None:
    """422 for a budget search or a layer budget the model or the job cannot support."""
    if getattr(params, "allocation", None) == "sensitivity" and dataset_id is None:
        _refuse(
            "body.dataset_id",
            "allocation 'sensitivity' evaluates every layer pruned alone on validation data: "
            "pass `dataset_id`, or choose allocation uniform, global, lamp or erk",
            "dataset_required",
        )
    if params.name not in ("auto", "sensitivity"):
        return
    inspection = wait_inspected(model).get("inspection") or {}
    if inspection.get("status") != "succeeded":
        return  # the worker checks again and fails the job with the same words
    details = inspection.get("details") or {}
    family = getattr(params, "family", "unstructured")
    if family == "structured" and not details.get("has_keras_graph", False):
        _refuse("body.strategy.family", keras_graph_required(params.name), "keras_graph_required")
    objective = getattr(params, "objective", None)
    if objective not in ("flops", "latency"):
        return
    before = details.get("before") or {}
    error = str(before.get("flops_error") or "")
    if before.get("flops") is None and error and OPEN_DIMENSIONS not in error:
        _refuse(
            "body.strategy.objective",
            f"objective {objective}: this model cannot be measured that way ({error[:300]}); "
            "use objective size",
            "objective_not_measurable",
        )

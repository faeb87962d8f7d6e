"""``POST /v1/jobs?validate_only=true`` (AIP-163): every check of a real submission, and
what can be known before running, with nothing written and nothing queued.

The answer holds the normalised spec (strategy defaults filled in), the layers that would
be pruned (the model's inspected ``prunable_weights`` less those the spec's ``exclude``
matches, with the engine's own matcher), for strategies that zero a fraction of weights the
weights expected to be zeroed and left, the model's FLOPs before pruning and its
``speedup_paths``, and an estimated duration from recent jobs' throughput.
"""

from __future__ import annotations

from typing import Any

from app import quotas
from app.jobs import service
from app.jobs.schemas import JobCreate
from app.models import service as models
from core.jobs import throughput
from core.settings import get_settings
from prunekit.masks import Scope, count_to_prune
from prunekit.patterns import compile_patterns, excludes
from prunekit.strategies import get


def check_quota(tenant: str) -> None:
    """The 429 a submission would get for too many unfinished jobs (no slot is taken)."""
    limit = get_settings().tenant_max_active_jobs
    if limit:
        problem = quotas.too_many_jobs(quotas.active_jobs(tenant), limit)
        if problem is not None:
            raise problem


def pruned_layers(
    prunable: list[dict[str, Any]], exclude: list[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The inspected prunable weights the spec keeps, and the names ``exclude`` removes."""
    patterns = compile_patterns(exclude)
    kept, excluded = [], []
    for w in prunable:
        if excludes(patterns, w["name"], w["layer"]):
            excluded.append(w["name"])
        else:
            kept.append({**w, "size": _size(w["shape"])})
    return kept, excluded


def _size(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def expected_parameters(
    strategy: dict[str, Any], kind: str, weights: list[dict[str, Any]], total: int | None
) -> dict[str, Any] | None:
    """Weights zeroed and parameters left for a strategy that zeroes a ``sparsity`` fraction
    of single weights: ``round(s * n)`` over all prunable weights (``scope`` global,
    ``allocation`` global or lamp) or per weight (``scope`` layer, ``allocation`` uniform).
    None for other strategies (blocks, N:M, channels) and the erk and sensitivity layer
    budgets, whose count depends on the weights' layout, values or data."""
    sparsity = strategy.get("sparsity")
    if kind != "unstructured" or sparsity is None or strategy.get("block") is not None:
        return None
    allocation = strategy.get("allocation")
    if allocation in ("erk", "sensitivity"):  # per-tensor shares of the weights or the data
        return None
    sizes = [w["size"] for w in weights]
    per_layer = allocation is None and strategy.get("scope") == Scope.LAYER.value
    if per_layer or allocation == "uniform":
        zeroed = sum(count_to_prune(n, sparsity) for n in sizes)
    else:
        zeroed = count_to_prune(sum(sizes), sparsity)
    out: dict[str, Any] = {"prunable": sum(sizes), "zeroed": zeroed, "sparsity": sparsity}
    if total is not None:
        out["total"] = total
        out["left"] = total - zeroed
    return out


def preview(body: JobCreate, tenant: str) -> dict[str, Any]:
    spec, model = service.validate_submission(body, tenant)
    check_quota(tenant)
    model = models.wait_inspected(model)
    inspection = model.get("inspection") or {}
    details = inspection.get("details") or {}
    strategy = spec["strategy"]
    kind = get(strategy["name"]).kind.value
    weights, excluded = pruned_layers(details.get("prunable_weights") or [], spec["exclude"])
    total = (details.get("parameters") or {}).get("total")
    before = details.get("before") or {}
    return {
        "valid": True,
        "model_id": body.model_id,
        "dataset_id": body.dataset_id,
        "metadata": body.metadata,
        "spec": spec,
        "strategy_kind": kind,
        "inspection": inspection.get("status"),
        "layers": [
            {"weight": w["name"], "layer": w["layer"], "shape": w["shape"]} for w in weights
        ],
        "excluded": excluded,
        "parameters": expected_parameters(strategy, kind, weights, total),
        "flops_before": before.get("flops"),
        "speedup_paths": details.get("speedup_paths"),
        "routing": service.route_for(body, spec).as_dict(),
        "estimated_duration": throughput.estimate(strategy["name"], total or 0)
        if total
        else {"seconds": None, "basis": "model not inspected yet", "jobs": 0},
    }

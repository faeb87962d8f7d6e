"""Jobs: validate the spec against the strategy registry, record, then enqueue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app import storage
from app.jobs import store, structured
from app.jobs.schemas import JobCreate, JobStatus
from app.models import service as models
from app.problems import Problem, field_errors, not_found, validation_problem
from app.records import new_id, now_iso
from prunekit.strategies import StrategyParams, UnknownStrategyError, parse_params
from worker.celery_app import RUN_JOB, enqueue


def validate_strategy(raw: dict[str, Any]) -> StrategyParams:
    if "name" not in raw:
        errors = [{"field": "body.strategy.name", "message": "Field required", "type": "missing"}]
        raise validation_problem(errors, "the strategy needs a `name`; see GET /v1/strategies")
    try:
        return parse_params(raw)
    except UnknownStrategyError as exc:
        errors = [{"field": "body.strategy.name", "message": str(exc), "type": "unknown"}]
        raise validation_problem(errors, f"{exc}; see GET /v1/strategies") from exc
    except ValidationError as exc:
        raise validation_problem(field_errors(exc.errors(), ("body", "strategy"))) from exc


def create(body: JobCreate) -> dict[str, Any]:
    params = validate_strategy(body.strategy)
    model = models.get_or_404(body.model_id)
    models.ensure_usable(model)
    structured.check_submission(params, model, body.dataset_id)
    spec = body.model_dump(mode="json", exclude={"model_id", "dataset_id"})
    spec["strategy"] = params.model_dump(mode="json")
    job_id = new_id()
    record = {
        "id": job_id,
        "model_id": body.model_id,
        "dataset_id": body.dataset_id,
        "status": JobStatus.QUEUED.value,
        "progress": {"phase": "queued", "fraction": 0.0},
        "spec": spec,
        "metrics": None,
        "error": None,
        "attempts": 0,
        "created_at": now_iso(),
        "started_at": None,
        "finished_at": None,
        "updated_at": now_iso(),
    }
    store.create(record)  # written before the message is sent: a worker always finds it
    try:
        enqueue(RUN_JOB, job_id)
    except Exception as exc:
        store.transition(
            job_id,
            JobStatus.FAILED.value,
            {JobStatus.QUEUED.value},
            error={"reason": "enqueue_failed", "message": f"could not reach the queue: {exc}"},
            finished_at=now_iso(),
        )
        raise Problem(
            503,
            "queue-unavailable",
            "Queue unavailable",
            "the job was recorded but could not be queued; try again shortly",
            job_id=job_id,
        ) from exc
    return record


def get_or_404(job_id: str) -> dict[str, Any]:
    record = store.get(job_id)
    if record is None:
        raise not_found("job", job_id)
    return record


def list_jobs(limit: int, after: str | None) -> tuple[list[dict[str, Any]], str | None]:
    ids = store.list_ids(limit, after)
    items = [r for r in (store.get(i) for i in ids) if r is not None]
    return items, (ids[-1] if len(ids) == limit else None)


def events(job_id: str, start: int) -> list[dict[str, Any]]:
    get_or_404(job_id)
    return store.events(job_id, start)


def artifact(job_id: str, fmt: str | None = None) -> tuple[Path, dict[str, Any]]:
    """The pruned model's file and its description; 409 until the job succeeded (or when
    it has no model in the requested ``fmt``)."""
    record = get_or_404(job_id)
    if record["status"] != JobStatus.SUCCEEDED.value or not record.get("artifact"):
        raise Problem(
            409,
            "job-not-finished",
            "Pruned model not available",
            f"job {job_id} is {record['status']}; the model can be downloaded once it has "
            "succeeded (poll GET /v1/jobs/{id})",
            job_status=record["status"],
        )
    art = structured.pick_format(record, fmt)
    return storage.resolve(art["path"]), art

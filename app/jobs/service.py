"""Jobs: validate the spec against the strategy registry, record, then enqueue."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from app import labels, quotas
from app.auth.tenancy import owned_or_404
from app.datasets import service as datasets
from app.jobs import search_checks, structured
from app.jobs.filters import JobFilter
from app.jobs.schemas import HANDLING_FIELDS, JobCreate, JobStatus
from app.models import service as models
from app.observability.requests import current_request_id
from app.problems import Problem, field_errors, validation_problem
from app.webhooks import service as webhooks
from core import storage
from core.jobs import deadlines, store
from core.queue import RUN_JOB, enqueue, served_queues
from core.records import (
    ArtifactRecord,
    JobHandling,
    JobRecord,
    ModelRecord,
    load_page,
    new_id,
    now_iso,
)
from core.redis import get_redis, tenant_index
from core.routing import Route, choose, trains
from core.settings import get_settings
from prunekit.spec import LiteRTFormat
from prunekit.strategies import StrategyParams, UnknownStrategyError, parse_params

log = logging.getLogger("prunekit.api")


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


def check_dataset(body: JobCreate, params: StrategyParams, model: ModelRecord, tenant: str) -> None:
    """404 for an unknown dataset; 422 on ``body.dataset_id`` when the strategy needs data and
    there is none, or when the samples do not fit the model's input. A model still being
    inspected after ``models.INSPECTION_WAIT_S`` is accepted: the worker checks again and fails the
    job with the same message."""
    if body.dataset_id is None:
        if params.requires_data():
            field, why = params.missing_data()
            errors = [
                {
                    "field": f"body.{field}",
                    "message": f"strategy {params.name!r} needs data ({why}); upload a dataset "
                    "with POST /v1/datasets and pass its id as `dataset_id`",
                    "type": "missing",
                }
            ]
            raise validation_problem(errors, errors[0]["message"])
        return
    dataset = datasets.get_or_404(body.dataset_id, tenant)
    model = models.wait_inspected(model)
    inspection = model.get("inspection") or {}
    if inspection.get("status") == "succeeded":
        problem = datasets.fit_problem(dataset, inspection.get("details") or {})
        if problem is not None:
            raise problem


def validate_submission(body: JobCreate, tenant: str) -> tuple[dict[str, Any], ModelRecord]:
    """Every check a submission passes before it is recorded (a dry run runs them too):
    the normalised spec the engine will read, and the model record."""
    params = validate_strategy(body.strategy)
    model = models.get_or_404(body.model_id, tenant)
    models.ensure_usable(model)
    check_dataset(body, params, model, tenant)
    structured.check_submission(params, model, body.dataset_id)
    search_checks.check_submission(params, model, body.dataset_id)
    # labels, webhook and deadline live on the record, not in the engine's spec
    exclude = {"model_id", "dataset_id", "metadata", *HANDLING_FIELDS}
    spec = body.model_dump(mode="json", exclude=exclude)
    spec["strategy"] = params.model_dump(mode="json")
    return spec, model


def route_for(body: JobCreate, spec: dict[str, Any]) -> Route:
    """The job's queue (:mod:`core.routing`): by whether it trains, what it asks for and
    which queues live workers consume (a cached broker broadcast)."""
    try:
        served = served_queues()
    except Exception as exc:  # the broker did not answer the broadcast: route blind
        log.warning("could not ask the workers which queues they consume: %s", exc)
        served = {}
    wants_gpu = trains(spec, body.dataset_id is not None)
    return choose(get_settings().queue, wants_gpu, body.resources, served)


IDEMPOTENCY_TTL_S = 24 * 3600


def _replay(tenant: str, job_id: str, body_hash: str, earlier: dict[str, str]) -> JobRecord:
    """The job an Idempotency-Key already names; 409 if it was used with another body."""
    if earlier["body"] != body_hash:
        raise Problem(
            409,
            "idempotency-key-reused",
            "Idempotency-Key reused",
            "this Idempotency-Key was already used with a different request body; "
            "use a new key for a new job",
            job_id=earlier["job_id"],
        )
    deadline = time.monotonic() + 5  # a concurrent twin may be writing the record now
    while (record := store.get(earlier["job_id"])) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return owned_or_404(record, tenant, "job", earlier["job_id"])


def create(
    body: JobCreate, tenant: str, idempotency_key: str | None = None
) -> tuple[JobRecord, bool]:
    """Record and queue a job; returns (record, replayed). With an ``Idempotency-Key`` the
    same key and body give back the same job (``replayed``), another body answers 409."""
    spec, _ = validate_submission(body, tenant)
    handling: JobHandling = {
        **webhooks.job_fields(body.webhook, "webhook" in body.model_fields_set, tenant),
        **deadlines.job_fields(body.deadline_seconds),
    }
    job_id = new_id()
    if idempotency_key is not None:
        canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True)
        body_hash = hashlib.sha256(canonical.encode()).hexdigest()
        earlier = store.claim_idempotency_key(
            tenant, idempotency_key, job_id, body_hash, IDEMPOTENCY_TTL_S
        )
        if earlier is not None:
            return _replay(tenant, job_id, body_hash, earlier), True
    record: JobRecord = {
        "id": job_id,
        "tenant": tenant,
        "model_id": body.model_id,
        "dataset_id": body.dataset_id,
        "metadata": body.metadata,
        "request_id": current_request_id(),  # the submitting request, for the worker's logs
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
        **handling,
    }
    route = route_for(body, spec)
    record["queue"], record["routing"] = route.queue, route.as_dict()
    try:
        with quotas.job_slot(tenant):  # 429 beyond the tenant's unfinished jobs
            store.create(record)  # written before the message is sent: a worker always finds it
    except Exception:
        if idempotency_key is not None:
            store.release_idempotency_key(tenant, idempotency_key)
        raise
    try:
        enqueue(RUN_JOB, job_id, queue=route.queue)
        if route.waiting_reason():  # said where the job's events are read, not only here
            store.add_event(job_id, "message", f"queued: {route.waiting_reason()}",
                            level="warning")  # fmt: skip
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
    return record, False


def get_or_404(job_id: str, tenant: str) -> JobRecord:
    return owned_or_404(store.get(job_id), tenant, "job", job_id)


def list_jobs(
    tenant: str, limit: int, after: str | None, filters: JobFilter | None = None
) -> tuple[list[JobRecord], str | None]:
    if filters is not None and filters.active():
        index = tenant_index(tenant, "jobs")
        keep, floor = filters.keep, filters.floor_ms()
        return labels.filtered_page(get_redis(), index, store.get, limit, after, keep, floor)
    return load_page(store.list_ids(tenant, limit, after), store.get, limit)


def events(job_id: str, tenant: str, start: int) -> list[dict[str, Any]]:
    get_or_404(job_id, tenant)
    return store.events(job_id, start)


def report(job_id: str, tenant: str) -> dict[str, Any]:
    """The before/after document of a finished job; 409 until the job succeeded."""
    record = get_or_404(job_id, tenant)
    metrics = record.get("metrics") or {}
    if record["status"] != JobStatus.SUCCEEDED.value or "before" not in metrics:
        raise Problem(
            409,
            "job-not-finished",
            "Report not available",
            f"job {job_id} is {record['status']}; its report is ready once it has succeeded "
            "(poll GET /v1/jobs/{id})",
            job_status=record["status"],
        )
    return {
        "job_id": job_id,
        "model_id": record["model_id"],
        "dataset_id": record.get("dataset_id"),
        "strategy": record["spec"]["strategy"],
        "evaluation": metrics.get("evaluation"),
        "before": metrics["before"],
        "after": metrics["after"],
        "delta": metrics["delta"],
        "layers": metrics.get("layers", []),
        "allocation": metrics.get("allocation"),
        "sensitivity": metrics.get("sensitivity"),
        "search": metrics.get("search"),
        "speedup": metrics.get("speedup"),
        "exports": metrics.get("exports"),
        "eligibility": metrics.get("eligibility"),
        "warnings": metrics.get("warnings", []),
        "wall_seconds": metrics.get("wall_seconds"),
    }


def artifact(job_id: str, tenant: str, fmt: str | None = None) -> tuple[Path, ArtifactRecord]:
    """The pruned model's file and its description; 409 until the job succeeded (or when
    it has no model in the requested ``fmt``)."""
    record = get_or_404(job_id, tenant)
    if record["status"] != JobStatus.SUCCEEDED.value or not record.get("artifact"):
        raise Problem(
            409,
            "job-not-finished",
            "Pruned model not available",
            f"job {job_id} is {record['status']}; the model can be downloaded once it has "
            "succeeded (poll GET /v1/jobs/{id})",
            job_status=record["status"],
        )
    art = pick_format(record, fmt)
    return storage.resolve(art["path"]), art


def pick_format(record: JobRecord, fmt: str | None) -> ArtifactRecord:
    """The artifact to download: the job's own (the input's format) or another one it made.

    Structured strategies write both Keras formats; LiteRT files exist when the job spec's
    ``exports`` asked for them and their conversion succeeded.
    """
    art = record["artifact"]
    if fmt is None or fmt == art["format"]:
        return art
    alternates = art.get("alternates") or {}
    if fmt in alternates:
        return alternates[fmt]
    available = [art["format"], *alternates]
    exports = (record.get("metrics") or {}).get("exports") or {}
    if fmt in exports:  # asked for, but its conversion failed
        why = f"its {fmt} export failed: {exports[fmt].get('error') or exports[fmt].get('note')}"
    elif fmt == "sensitivity_png":
        why = (
            "the job ran no sensitivity analysis: use strategy sensitivity or auto, or "
            'allocation "sensitivity"'
        )
    elif fmt in get_args(LiteRTFormat):  # exportable, but the spec did not ask
        why = f'the job did not ask for it: submit a job with "exports": ["{fmt}"]'
    else:
        why = "only structured strategies (filter, slimming) write both .keras and SavedModel"
    raise Problem(
        409,
        "format-not-available",
        "Model not available in this format",
        f"job {record['id']} produced its model as {', '.join(available)} only; {why}",
        available_formats=available,
    )


def cancel(job_id: str, tenant: str) -> JobRecord:
    """Queued -> cancelled at once; running -> cancelling (the worker stops at its next
    check between batches and phases, then marks it cancelled); finished -> 409."""
    get_or_404(job_id, tenant)
    for _ in range(5):  # the status may move under us (queued -> running); retry
        if store.transition(
            job_id, JobStatus.CANCELLED.value, {JobStatus.QUEUED.value},
            message="cancelled before it started", finished_at=now_iso(),
        ):  # fmt: skip
            break
        if store.transition(
            job_id, JobStatus.CANCELLING.value, {JobStatus.RUNNING.value},
            message="cancel requested",
        ):  # fmt: skip
            break
        status = store.status(job_id)
        if status in (JobStatus.CANCELLING.value, JobStatus.CANCELLED.value):
            break
        if status in (JobStatus.SUCCEEDED.value, JobStatus.FAILED.value):
            raise Problem(
                409,
                "job-finished",
                "Job already finished",
                f"job {job_id} already {status}; only queued or running jobs can be cancelled",
                job_status=status,
            )
    return get_or_404(job_id, tenant)


def delete(job_id: str, tenant: str) -> None:
    """Delete a finished job's record, events and pruned model; 409 while it is unfinished."""
    from core.lifecycle.deletion import remove_artifacts

    record = get_or_404(job_id, tenant)
    if record["status"] not in store.FINISHED:
        raise Problem(
            409,
            "job-not-finished",
            "Job not finished",
            f"job {job_id} is {record['status']}; cancel it (POST /v1/jobs/{job_id}/cancel) "
            "and delete it once it is cancelled",
            job_status=record["status"],
        )
    store.delete(record)
    remove_artifacts(storage.job_dir(job_id))

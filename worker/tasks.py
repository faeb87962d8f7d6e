"""Celery tasks. Thin: read the record, call the engine, write the outcome.

Both tasks are idempotent by id: a redelivered message for a finished job does nothing,
one for a job that was running when its worker died runs it again from the start.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from core import artifacts, storage
from core.datasets import store as datasets
from core.holders import new_owner
from core.jobs import deadlines
from core.jobs import store as jobs
from core.jobs.status import JobStatus
from core.models import store as models
from core.object_store import ObjectMissing, StoreError
from core.observability import counters, logs
from core.queue import INSPECT_MODEL, RUN_JOB
from core.records import ArtifactRecord, ErrorRecord, JobRecord, ModelRecord, now_iso
from core.settings import get_settings
from prunekit.errors import CancelledError, PrunekitError
from prunekit.formats import ArtifactFormat
from prunekit.inspection import inspect_model
from prunekit.pipeline import PruneResult, prune
from prunekit.spec import PruneSpec
from prunekit.speedup import SpeedupConfig
from worker import job_outcomes
from worker.celery_app import celery_app
from worker.guard import JobGuard, Warden, take_lease
from worker.reporter import JobReporter

log = logging.getLogger("prunekit.worker")


@celery_app.task(
    name=INSPECT_MODEL,
    soft_time_limit=get_settings().inspection_time_limit,
    time_limit=get_settings().inspection_time_limit + 30,
)
def inspect_model_task(model_id: str) -> None:
    record = models.get(model_id)
    if record is None or (record.get("inspection") or {}).get("status") != "pending":
        return
    settings = get_settings()
    attempts = models.start_inspection(model_id, new_owner())
    if not attempts:
        return  # deleted or finished meanwhile
    if attempts > settings.max_attempts:
        message = (
            f"inspecting the model was started {attempts - 1} times and its worker was lost "
            "each time (killed, out of memory, or past the hard time limit); giving up after "
            f"PRUNEKIT_MAX_ATTEMPTS={settings.max_attempts}"
        )
        error: ErrorRecord = {"reason": "too_many_attempts", "message": message}
        models.set_inspection(model_id, {"status": "failed", "error": error})
        return
    scratch = storage.scratch_dir(f"inspect-{model_id}-")
    try:  # past the memory limit, the warden fails the inspection and ends this child
        with Warden(settings.worker_max_memory_mb, model_id=model_id):
            path = _stage(record["path"], scratch, f"model {model_id}")
            details = inspect_model(path, record["format"])
    except Exception as exc:
        if _caused_by(exc, SoftTimeLimitExceeded):
            reason, message = (
                "timeout",
                (
                    f"inspecting the model ran past its time limit of "
                    f"{settings.inspection_time_limit} s (PRUNEKIT_INSPECTION_TIME_LIMIT)"
                ),
            )
        elif isinstance(exc, PrunekitError):
            reason, message = exc.reason, str(exc)
        else:
            log.exception("inspection of model %s failed", model_id)
            reason, message = "inspection_failed", str(exc)
        error = {"reason": reason, "message": message}
        models.set_inspection(model_id, {"status": "failed", "error": error})
        return
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    models.set_inspection(model_id, {"status": "succeeded", "details": details})


def _stage(relative: str, scratch: Path, what: str) -> Path:
    """A local path to read the stored artifact ``relative`` from (a private copy in
    ``scratch`` when artifacts live in an object store); a missing object or a store
    that cannot be read is the job's clear failure, not an internal error."""
    try:
        return artifacts.stage(relative, scratch)
    except ObjectMissing as exc:
        raise PrunekitError(
            f"the stored files of {what} are missing from {artifacts.describe()} ({exc}); "
            "upload it again",
            reason="artifact_missing",
        ) from exc
    except StoreError as exc:
        raise PrunekitError(
            f"the artifact store could not be read for {what}: {exc}", reason="store_unavailable"
        ) from exc


def _download_name(model: ModelRecord, fmt: ArtifactFormat) -> str:
    stem = model["filename"]
    for suffix in (".tar.gz", ".tgz", ".zip", ".keras", ".h5"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return f"{stem or 'model'}-pruned{fmt.suffix}"


@celery_app.task(name=RUN_JOB)
def run_job(job_id: str) -> None:
    job = jobs.get(job_id)
    if job is None:
        log.warning("job %s has no record; dropping its message", job_id)
        return
    if job["status"] == JobStatus.CANCELLING.value:  # its worker died while cancelling
        _cancelled(job_id)
        return
    if job["status"] not in (JobStatus.QUEUED.value, JobStatus.RUNNING.value):
        return  # finished or cancelled: a redelivered message does nothing
    settings = get_settings()
    fence = take_lease(job_id, new_owner(), settings.lease_ttl, wait_s=settings.lease_ttl + 2)
    if fence is None:
        log.info("job %s is finished or held by a live worker; dropping this delivery", job_id)
        return
    attempts = jobs.incr_attempts(job_id)
    if attempts > 1:  # redelivered: the worker that had it died or lost its lease
        counters.record_job_retried()
    if attempts > settings.max_attempts:
        _fail(
            job_id,
            "too_many_attempts",
            f"the job was started {attempts - 1} times and its worker was lost each time "
            "(killed, out of memory or the machine went away); giving up after "
            f"PRUNEKIT_MAX_ATTEMPTS={settings.max_attempts}",
            fence,
        )
        jobs.release_lease(job_id, fence.owner)
        return
    if deadlines.expired(job):  # it waited in the queue past its deadline
        deadlines.cancel_expired(job)
        jobs.release_lease(job_id, fence.owner)
        return
    if not attempts or not jobs.transition(
        job_id,
        JobStatus.RUNNING.value,
        {JobStatus.QUEUED.value, JobStatus.RUNNING.value},
        message="running" if attempts == 1 else f"running (attempt {attempts})",
        fence=fence,
        started_at=now_iso(),
    ):
        jobs.release_lease(job_id, fence.owner)
        return  # cancelled or deleted meanwhile
    logs.emit("job_phase", job_id=job_id, phase="running", attempt=attempts,
              **job_outcomes.log_fields(job))  # fmt: skip
    with JobGuard(fence, settings.lease_ttl, settings.worker_max_memory_mb):
        _run(fence, job)


def _run(fence: jobs.Fence, job: JobRecord) -> None:
    job_id = fence.job_id
    reporter = JobReporter(job_id, fence, job_outcomes.log_fields(job))
    scratch = storage.scratch_dir(f"job-{job_id}-")
    try:
        model = models.get(job["model_id"])
        if model is None:
            raise PrunekitError(f"model {job['model_id']} no longer exists", reason="model_gone")
        spec = PruneSpec.model_validate(job["spec"])
        data = None
        if dataset_id := job.get("dataset_id"):
            dataset = datasets.get(dataset_id)
            if dataset is None:
                raise PrunekitError(
                    f"dataset {job['dataset_id']} no longer exists", reason="dataset_gone"
                )
            data = _stage(dataset["path"], scratch, f"dataset {job['dataset_id']}")
        out = scratch / "out"
        result = prune(
            _stage(model["path"], scratch, f"model {job['model_id']}"),
            model["format"],
            spec,
            out,
            reporter=reporter,
            data=data,
            # the original's size and FLOPs, measured once when the model was inspected
            before=((model.get("inspection") or {}).get("details") or {}).get("before"),
            timing=_speedup_config(get_settings().latency_budget_s),
        )
        kept = bool(result.metrics.get("kept_after_cancel"))
        if not kept:  # strategy auto, cancelled between candidates, keeps its best one
            reporter.check_cancelled()
        _publish(fence, model, result, out, after_cancel=kept)
    except Exception as exc:
        if _caused_by(exc, jobs.LeaseLostError):
            log.warning("job %s: lease lost; this attempt stops and writes nothing", job_id)
        elif _caused_by(exc, CancelledError):
            _cancelled(job_id, fence, deadline=_caused_by(exc, deadlines.DeadlineExceededError))
        elif _caused_by(exc, SoftTimeLimitExceeded):  # also when the engine wrapped it
            limit = get_settings().task_soft_time_limit
            _fail(
                job_id,
                "timeout",
                f"the job ran past its time limit of {limit} s (PRUNEKIT_TASK_SOFT_TIME_LIMIT)",
                fence,
            )
        elif isinstance(exc, PrunekitError):
            _fail(job_id, exc.reason, str(exc), fence)
        else:
            log.exception("job %s failed", job_id)
            _fail(job_id, "internal_error", f"{type(exc).__name__}: {exc}", fence)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _speedup_config(budget_s: float | None) -> SpeedupConfig:
    """The engine's latency rules with the service's budget (PRUNEKIT_LATENCY_BUDGET_S)."""
    if budget_s is None:
        return SpeedupConfig(budget_origin="PRUNEKIT_LATENCY_BUDGET_S unset: the default")
    return SpeedupConfig(budget_s=budget_s, budget_origin="PRUNEKIT_LATENCY_BUDGET_S")


def _publish(
    fence: jobs.Fence,
    model: ModelRecord,
    result: PruneResult,
    out: Path,
    after_cancel: bool = False,
) -> None:
    """Describe the outputs (sha256 of the very bytes), rename them into this attempt's own
    directory, then record success: all fenced, so a late attempt changes nothing.
    ``after_cancel``: the engine kept a result after a cancel request (a search's best
    candidate within budget), which succeeds from ``cancelling`` too."""
    job_id = fence.job_id
    final = storage.attempt_dir(job_id, fence.token)
    artifact = _describe(out, final, result.download, ArtifactFormat(result.format), model)
    # ?format=: structured jobs' other Keras format, the LiteRT exports asked for, and the
    # sensitivity plot of a job that analysed sensitivity
    others = {
        **{str(fmt): path for fmt, path in result.alternates.items()},
        **result.exports,
        **result.artifacts,
    }
    artifact["alternates"] = {
        str(fmt): _describe(out, final, path, ArtifactFormat(fmt), model)
        for fmt, path in others.items()
    }
    if not jobs.fence_holds(fence):
        raise jobs.LeaseLostError(f"job {job_id}: lease lost before publishing")
    artifacts.publish_attempt(out, job_id, fence.token)
    allowed = {JobStatus.RUNNING.value}
    if after_cancel:
        allowed.add(JobStatus.CANCELLING.value)
    if jobs.transition(
        job_id,
        JobStatus.SUCCEEDED.value,
        allowed,
        message="succeeded: cancelled between candidates, the best one within budget kept"
        if after_cancel
        else None,
        fence=fence,
        progress={"phase": "done", "fraction": 1.0},
        metrics=result.metrics,
        artifact=artifact,
        finished_at=now_iso(),
    ):
        artifacts.remove_other_attempts(job_id, fence.token)
        job_outcomes.record_success(job_id, result.metrics)
        return
    artifacts.unpublish_attempt(job_id, fence.token)
    if jobs.status(job_id) == JobStatus.CANCELLING.value:  # cancelled during the last step
        _cancelled(job_id, fence)
    else:
        raise jobs.LeaseLostError(f"job {job_id}: lease lost while publishing")


def _caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    """``exc`` is a ``kind``, or was raised while handling one (the engine wraps some)."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, kind):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _cancelled(job_id: str, fence: jobs.Fence | None = None, deadline: bool = False) -> None:
    """Mark the job cancelled; ``deadline``: because it ran past its deadline (the event
    and the job's ``error`` say so)."""
    record: Mapping[str, Any] = jobs.get(job_id) or {}
    deadline = deadline or deadlines.expired(record)  # or the reconciler asked for the stop
    why: dict[str, Any] = {"message": "cancelled"}
    if deadline:
        why = {"message": f"cancelled: {deadlines.explanation(record)}"}
        why["error"] = deadlines.error(record)
    job_outcomes.log_status(job_id, "cancelled")
    jobs.transition(
        job_id,
        JobStatus.CANCELLED.value,
        {JobStatus.CANCELLING.value, JobStatus.RUNNING.value, JobStatus.QUEUED.value},
        fence=fence,
        finished_at=now_iso(),
        **why,
    )


def _describe(
    out: Path, final: Path, path: Path, fmt: ArtifactFormat, model: ModelRecord
) -> ArtifactRecord:
    """What the job record says of one downloadable artifact, ``path`` under ``out``, once
    ``out`` is renamed to ``final`` (the bytes hashed are the ones published)."""
    return {
        "path": storage.relative(final / path.relative_to(out)),
        "format": fmt.value,
        "filename": _download_name(model, fmt),
        "media_type": fmt.media_type,
        "size_bytes": path.stat().st_size,
        "sha256": storage.sha256_file(path),
    }


def _fail(job_id: str, reason: str, message: str, fence: jobs.Fence | None = None) -> None:
    job_outcomes.log_status(job_id, "failed", reason=reason)
    jobs.transition(
        job_id,
        JobStatus.FAILED.value,
        {JobStatus.RUNNING.value, JobStatus.QUEUED.value, JobStatus.CANCELLING.value},
        message=f"failed: {message}",
        fence=fence,
        error={"reason": reason, "message": message},
        finished_at=now_iso(),
    )

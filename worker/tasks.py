"""Celery tasks. Thin: read the record, call the engine, write the outcome.

Both tasks are idempotent by id: a redelivered message for a finished job does nothing,
one for a job that was running when its worker died runs it again from the start.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from app import storage
from app.datasets import store as datasets
from app.jobs import store as jobs
from app.jobs.schemas import JobStatus
from app.models import store as models
from app.records import now_iso
from app.settings import get_settings
from prunekit.errors import CancelledError, PrunekitError
from prunekit.formats import ArtifactFormat
from prunekit.inspection import inspect_model
from prunekit.pipeline import prune
from prunekit.spec import PruneSpec
from prunekit.speedup import SpeedupConfig
from worker.celery_app import INSPECT_MODEL, RUN_JOB, celery_app
from worker.guard import JobGuard, MemoryGuard, new_owner, take_lease
from worker.reporter import JobReporter

log = logging.getLogger("prunekit.worker")


@celery_app.task(name=INSPECT_MODEL)
def inspect_model_task(model_id: str) -> None:
    record = models.get(model_id)
    if record is None or (record.get("inspection") or {}).get("status") != "pending":
        return
    limit = get_settings().worker_max_memory_mb

    def _too_big(rss_mb: int) -> None:
        message = (
            f"loading the model took {rss_mb} MiB, more than PRUNEKIT_WORKER_MAX_MEMORY_MB="
            f"{limit}; a worker with more memory is needed"
        )
        models.set_inspection(
            model_id, {"status": "failed", "error": {"reason": "memory_limit", "message": message}}
        )
        os._exit(137)

    try:
        with MemoryGuard(limit, _too_big):
            details = inspect_model(storage.resolve(record["path"]), record["format"])
    except PrunekitError as exc:
        models.set_inspection(
            model_id, {"status": "failed", "error": {"reason": exc.reason, "message": str(exc)}}
        )
        return
    except Exception as exc:
        log.exception("inspection of model %s failed", model_id)
        models.set_inspection(
            model_id,
            {"status": "failed", "error": {"reason": "inspection_failed", "message": str(exc)}},
        )
        return
    models.set_inspection(model_id, {"status": "succeeded", "details": details})


def _download_name(model: dict[str, Any], fmt: ArtifactFormat) -> str:
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
    owner = new_owner()
    if not take_lease(job_id, owner, settings.lease_ttl, wait_s=settings.lease_ttl + 2):
        log.info("job %s is finished or held by a live worker; dropping this delivery", job_id)
        return
    attempts = jobs.incr_attempts(job_id)
    if attempts > settings.max_attempts:
        jobs.release_lease(job_id, owner)
        _fail(
            job_id,
            "too_many_attempts",
            f"the job was started {attempts - 1} times and its worker was lost each time "
            "(killed, out of memory or the machine went away); giving up after "
            f"PRUNEKIT_MAX_ATTEMPTS={settings.max_attempts}",
        )
        return
    if not jobs.transition(
        job_id,
        JobStatus.RUNNING.value,
        {JobStatus.QUEUED.value, JobStatus.RUNNING.value},
        message="running" if attempts == 1 else f"running (attempt {attempts})",
        started_at=now_iso(),
    ):
        jobs.release_lease(job_id, owner)
        return  # cancelled meanwhile
    with JobGuard(
        job_id, owner, settings.lease_ttl, settings.worker_max_memory_mb, _memory_exceeded(job_id)
    ):
        _run(job_id, job)


def _memory_exceeded(job_id: str) -> Callable[[int], None]:
    def _exceeded(rss_mb: int) -> None:
        limit = get_settings().worker_max_memory_mb
        _fail(
            job_id,
            "memory_limit",
            f"the worker used {rss_mb} MiB, more than PRUNEKIT_WORKER_MAX_MEMORY_MB={limit}; "
            "the job was stopped (a smaller model, or a worker with more memory, is needed)",
        )
        log.error("job %s: %d MiB resident > %d MiB; ending this child", job_id, rss_mb, limit)
        os._exit(137)  # the child is recycled; the job is already marked failed

    return _exceeded


def _run(job_id: str, job: dict[str, Any]) -> None:
    reporter = JobReporter(job_id)
    scratch = storage.scratch_dir(f"job-{job_id}-")
    try:
        model = models.get(job["model_id"])
        if model is None:
            raise PrunekitError(f"model {job['model_id']} no longer exists", reason="model_gone")
        spec = PruneSpec.model_validate(job["spec"])
        data = None
        if job.get("dataset_id"):
            dataset = datasets.get(job["dataset_id"])
            if dataset is None:
                raise PrunekitError(
                    f"dataset {job['dataset_id']} no longer exists", reason="dataset_gone"
                )
            data = storage.resolve(dataset["path"])
        result = prune(
            storage.resolve(model["path"]),
            model["format"],
            spec,
            scratch / "out",
            reporter=reporter,
            data=data,
            # the original's size and FLOPs, measured once when the model was inspected
            before=((model.get("inspection") or {}).get("details") or {}).get("before"),
            timing=_speedup_config(get_settings().latency_budget_s),
        )
        reporter.check_cancelled()
        final = storage.publish(scratch / "out", storage.job_dir(job_id))
        download = final / result.download.relative_to(scratch / "out")
        artifact = _describe(download, ArtifactFormat(result.format), model)
        # ?format=: structured jobs' other Keras format, and the LiteRT exports asked for
        others = {**result.alternates, **result.exports}
        artifact["alternates"] = {
            str(fmt): _describe(
                final / path.relative_to(scratch / "out"), ArtifactFormat(fmt), model
            )
            for fmt, path in others.items()
        }
        if (
            not jobs.transition(
                job_id,
                JobStatus.SUCCEEDED.value,
                {JobStatus.RUNNING.value},
                progress={"phase": "done", "fraction": 1.0},
                metrics=result.metrics,
                artifact=artifact,
                finished_at=now_iso(),
            )
            and jobs.status(job_id) == JobStatus.CANCELLING.value
        ):
            shutil.rmtree(final, ignore_errors=True)  # cancelled during the last step
            _cancelled(job_id)
    except CancelledError:
        _cancelled(job_id)
    except Exception as exc:
        if _timed_out(exc):  # also when the engine wrapped it (e.g. into ModelLoadError)
            limit = get_settings().task_soft_time_limit
            _fail(
                job_id,
                "timeout",
                f"the job ran past its time limit of {limit} s (PRUNEKIT_TASK_SOFT_TIME_LIMIT)",
            )
        elif isinstance(exc, PrunekitError):
            _fail(job_id, exc.reason, str(exc))
        else:
            log.exception("job %s failed", job_id)
            _fail(job_id, "internal_error", f"{type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _speedup_config(budget_s: float | None) -> SpeedupConfig:
    """The engine's latency rules with the service's budget (PRUNEKIT_LATENCY_BUDGET_S)."""
    if budget_s is None:
        return SpeedupConfig(budget_origin="PRUNEKIT_LATENCY_BUDGET_S unset: the default")
    return SpeedupConfig(budget_s=budget_s, budget_origin="PRUNEKIT_LATENCY_BUDGET_S")


def _timed_out(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, SoftTimeLimitExceeded):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _cancelled(job_id: str) -> None:
    jobs.transition(
        job_id,
        JobStatus.CANCELLED.value,
        {JobStatus.CANCELLING.value, JobStatus.RUNNING.value, JobStatus.QUEUED.value},
        message="cancelled",
        finished_at=now_iso(),
    )


def _describe(path: Path, fmt: ArtifactFormat, model: dict[str, Any]) -> dict[str, Any]:
    """What the job record says of one downloadable artifact."""
    return {
        "path": storage.relative(path),
        "format": fmt.value,
        "filename": _download_name(model, fmt),
        "media_type": fmt.media_type,
        "size_bytes": path.stat().st_size,
        "sha256": storage.sha256_file(path),
    }


def _fail(job_id: str, reason: str, message: str) -> None:
    jobs.transition(
        job_id,
        JobStatus.FAILED.value,
        {JobStatus.RUNNING.value, JobStatus.QUEUED.value, JobStatus.CANCELLING.value},
        message=f"failed: {message}",
        error={"reason": reason, "message": message},
        finished_at=now_iso(),
    )

"""Celery tasks. Thin: read the record, call the engine, write the outcome.

Both tasks are idempotent by id: a redelivered message for a finished job does nothing,
one for a job that was running when its worker died runs it again from the start.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from app import storage
from app.jobs import store as jobs
from app.jobs.schemas import JobStatus
from app.models import store as models
from app.records import now_iso
from prunekit.errors import PrunekitError
from prunekit.formats import ModelFormat
from prunekit.inspection import inspect_model
from prunekit.pipeline import prune
from prunekit.spec import PruneSpec
from worker.celery_app import INSPECT_MODEL, RUN_JOB, celery_app
from worker.reporter import JobReporter

log = logging.getLogger("prunekit.worker")

MEDIA_TYPES = {
    ModelFormat.KERAS: "application/octet-stream",
    ModelFormat.SAVED_MODEL: "application/zip",
}


@celery_app.task(name=INSPECT_MODEL)
def inspect_model_task(model_id: str) -> None:
    record = models.get(model_id)
    if record is None or (record.get("inspection") or {}).get("status") != "pending":
        return
    try:
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


def _download_name(model: dict[str, Any], fmt: ModelFormat) -> str:
    stem = model["filename"]
    for suffix in (".tar.gz", ".tgz", ".zip", ".keras"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return f"{stem or 'model'}-pruned.{'keras' if fmt is ModelFormat.KERAS else 'zip'}"


@celery_app.task(name=RUN_JOB)
def run_job(job_id: str) -> None:
    job = jobs.get(job_id)
    if job is None:
        log.warning("job %s has no record; dropping its message", job_id)
        return
    if job["status"] not in (JobStatus.QUEUED.value, JobStatus.RUNNING.value):
        return  # finished or cancelled: a redelivered message does nothing
    attempts = jobs.incr_attempts(job_id)
    jobs.transition(
        job_id,
        JobStatus.RUNNING.value,
        {JobStatus.QUEUED.value, JobStatus.RUNNING.value},
        message="running" if attempts == 1 else f"running (attempt {attempts})",
        started_at=now_iso(),
    )
    reporter = JobReporter(job_id)
    scratch = storage.scratch_dir(f"job-{job_id}-")
    try:
        model = models.get(job["model_id"])
        if model is None:
            raise PrunekitError(f"model {job['model_id']} no longer exists", reason="model_gone")
        spec = PruneSpec.model_validate(job["spec"])
        result = prune(
            storage.resolve(model["path"]),
            model["format"],
            spec,
            scratch / "out",
            reporter=reporter,
        )
        final = storage.publish(scratch / "out", storage.job_dir(job_id))
        download = final / result.download.relative_to(scratch / "out")
        artifact = {
            "path": storage.relative(download),
            "format": result.format.value,
            "filename": _download_name(model, result.format),
            "media_type": MEDIA_TYPES[result.format],
            "size_bytes": download.stat().st_size,
            "sha256": storage.sha256_file(download),
        }
        artifact["alternates"] = {  # structured jobs: the other format too (?format=)
            fmt.value: _alternate(final / path.relative_to(scratch / "out"), fmt, model)
            for fmt, path in result.alternates.items()
        }
        jobs.transition(
            job_id,
            JobStatus.SUCCEEDED.value,
            {JobStatus.RUNNING.value},
            progress={"phase": "done", "fraction": 1.0},
            metrics=result.metrics,
            artifact=artifact,
            finished_at=now_iso(),
        )
    except SoftTimeLimitExceeded:
        _fail(job_id, "timeout", "the job ran past its time limit (PRUNEKIT_TASK_SOFT_TIME_LIMIT)")
    except PrunekitError as exc:
        _fail(job_id, exc.reason, str(exc))
    except Exception as exc:
        log.exception("job %s failed", job_id)
        _fail(job_id, "internal_error", f"{type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _alternate(path: Path, fmt: ModelFormat, model: dict[str, Any]) -> dict[str, Any]:
    return {
        "path": storage.relative(path),
        "format": fmt.value,
        "filename": _download_name(model, fmt),
        "media_type": MEDIA_TYPES[fmt],
        "size_bytes": path.stat().st_size,
        "sha256": storage.sha256_file(path),
    }


def _fail(job_id: str, reason: str, message: str) -> None:
    jobs.transition(
        job_id,
        JobStatus.FAILED.value,
        {JobStatus.RUNNING.value, JobStatus.QUEUED.value},
        message=f"failed: {message}",
        error={"reason": reason, "message": message},
        finished_at=now_iso(),
    )

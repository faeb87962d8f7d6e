"""What a job leaves behind for later jobs and for operators: its throughput (the dry run's
duration estimate, :mod:`core.jobs.throughput`), its duration in the ``/metrics`` histogram,
the worker's memory, and JSON log lines for its status changes."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import redis

from core.jobs import store as jobs
from core.jobs import throughput
from core.observability import counters, logs

log = logging.getLogger("prunekit.worker")


def log_fields(job: Mapping[str, Any] | None) -> dict[str, Any]:
    """The tenant and submitting request id a job's log lines carry."""
    job = job or {}
    return {"tenant": job.get("tenant"), "request_id": job.get("request_id")}


def log_status(job_id: str, status: str, **extra: Any) -> None:
    """One JSON line for a job's status change (running, succeeded, failed, cancelled)."""
    try:
        fields = log_fields(jobs.get(job_id))
    except redis.RedisError:
        fields = {}
    logs.emit("job_phase", job_id=job_id, phase=status, **fields, **extra)


def record_success(job_id: str, metrics: dict[str, Any]) -> None:
    """Record a succeeded job's figures; never fails the job (a lost write is only logged)."""
    try:
        strategy = str(metrics.get("strategy"))
        seconds = float(metrics.get("wall_seconds") or 0)
        parameters = int((metrics.get("parameters") or {}).get("total_before") or 0)
        throughput.record(strategy, seconds, parameters)
        counters.record_job_duration(strategy, seconds)
        counters.record_worker_memory()
    except (redis.RedisError, TypeError, ValueError) as exc:
        log.warning("could not record the job's throughput: %s", exc)
    log_status(job_id, "succeeded")

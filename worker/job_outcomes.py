"""What a finished job leaves behind for later jobs and for operators: its throughput
(the dry run's duration estimate, :mod:`app.jobs.throughput`)."""

from __future__ import annotations

import logging
from typing import Any

import redis

from app.jobs import throughput

log = logging.getLogger("prunekit.worker")


def record_success(metrics: dict[str, Any]) -> None:
    """Record a succeeded job's figures; never fails the job (a lost write is only logged)."""
    try:
        strategy = str(metrics.get("strategy"))
        seconds = float(metrics.get("wall_seconds") or 0)
        parameters = int((metrics.get("parameters") or {}).get("total_before") or 0)
        throughput.record(strategy, seconds, parameters)
    except (redis.RedisError, TypeError, ValueError) as exc:
        log.warning("could not record the job's throughput: %s", exc)

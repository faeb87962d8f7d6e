"""Figures the workers record in Redis for the API's ``/metrics`` to expose.

Workers are several processes (Celery's prefork children) on several machines, so they do
not keep Prometheus metrics in memory: each records into Redis (``<prefix>:metrics:*``) and
the API reads those at scrape time (:mod:`app.observability.metrics`). Counters are hash
fields incremented atomically; the job-duration histogram is one hash per strategy holding
cumulative bucket counts, the sum and the count; worker memory is one hash field per worker
process with the time it was measured. Writes here never raise: a lost figure only logs.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import redis

from core.redis import get_redis, key

log = logging.getLogger("prunekit.metrics")

DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
COUNTERS = "counters"
WEBHOOK_DELIVERIES = "webhook_deliveries"
WORKER_RSS = "worker_rss"


def metrics_key(*parts: str) -> str:
    return key("metrics", *parts)


def _quietly(write: Callable[[], Any]) -> None:
    try:
        write()
    except redis.RedisError as exc:
        log.warning("metrics: could not record a figure: %s", exc)


def incr(name: str, field: str = "", amount: int = 1) -> None:
    """Add ``amount`` to the counter ``name`` (``field``: one label value, or "")."""
    _quietly(lambda: get_redis().hincrby(metrics_key(name), field, amount))


def record_job_retried() -> None:
    """A job was delivered again after its worker died (an attempt beyond the first)."""
    incr(COUNTERS, "jobs_retried")


def record_webhook_delivery(outcome: str) -> None:
    """One webhook delivery attempt ended with ``outcome`` (e.g. delivered, failed, refused)."""
    incr(WEBHOOK_DELIVERIES, outcome)


def record_job_duration(strategy: str, seconds: float) -> None:
    def write() -> None:
        k = metrics_key("job_duration", strategy)
        with get_redis().pipeline() as p:
            for le in DURATION_BUCKETS:
                if seconds <= le:
                    p.hincrby(k, str(le), 1)
            p.hincrby(k, "+Inf", 1)
            p.hincrbyfloat(k, "sum", seconds)
            p.sadd(metrics_key("job_duration_strategies"), strategy)
            p.execute()

    _quietly(write)


def record_worker_memory() -> None:
    """This process's resident memory, under ``<host>:<pid>``."""
    import psutil

    rss = psutil.Process().memory_info().rss
    value = json.dumps({"rss": rss, "at": time.time()})
    name = f"{socket.gethostname()}:{os.getpid()}"
    _quietly(lambda: get_redis().hset(metrics_key(WORKER_RSS), name, value))

"""Prometheus ``/metrics`` for the API, with ``prometheus-client``.

Two sources, one registry:

* in this process: HTTP requests by method, route template and status (a counter and a
  latency histogram, recorded by :mod:`app.observability.requests`);
* from Redis at scrape time (:class:`RedisCollector`): jobs by status and queue depth,
  read from the records themselves, and what the workers recorded
  (:mod:`core.observability.counters`): job durations per strategy, jobs retried after a
  worker died, worker resident memory, webhook deliveries by outcome. Workers are many
  processes, so they write to Redis rather than keep metrics in memory; any API process
  then answers the same figures.

``PRUNEKIT_METRICS=off`` turns the endpoint off (404); ``PRUNEKIT_METRICS_PORT`` serves it
on that port instead of the API's own (no key on either).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import redis
from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from app.jobs.schemas import JobStatus
from core.observability import counters
from core.records import text, texts
from core.redis import get_redis, key, zset_members
from core.settings import get_settings

STALE_WORKER_S = 3600  # a worker process not heard of for this long is not reported

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "prunekit_http_requests",
    "HTTP requests answered, by method, route template and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "prunekit_http_request_duration_seconds",
    "HTTP request latency, by method, route template and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)


def enabled() -> bool:
    return os.environ.get("PRUNEKIT_METRICS", "on").lower() not in ("off", "0", "false", "no")


def separate_port() -> int | None:
    raw = os.environ.get("PRUNEKIT_METRICS_PORT")
    return int(raw) if raw else None


def _jobs_family() -> GaugeMetricFamily:
    return GaugeMetricFamily("prunekit_jobs", "jobs by status", labels=["status"])


def _depth_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "prunekit_queue_depth", "jobs and inspections waiting in the queue", labels=["queue"]
    )


def _retried_family() -> CounterMetricFamily:
    return CounterMetricFamily(
        "prunekit_jobs_retried", "jobs started again after their worker died"
    )


def _webhooks_family() -> CounterMetricFamily:
    return CounterMetricFamily(
        "prunekit_webhook_deliveries", "webhook delivery attempts by outcome", labels=["outcome"]
    )


def _durations_family() -> HistogramMetricFamily:
    return HistogramMetricFamily(
        "prunekit_job_duration_seconds",
        "wall time of succeeded jobs, per strategy",
        labels=["strategy"],
    )


def _memory_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "prunekit_worker_resident_memory_bytes",
        "resident memory of each worker process, as it last reported",
        labels=["worker"],
    )


FAMILIES = (
    _jobs_family, _depth_family, _retried_family, _webhooks_family, _durations_family,
    _memory_family,
)  # fmt: skip


class RedisCollector(Collector):
    """Job, queue and worker figures read from Redis when Prometheus scrapes."""

    def describe(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        """The families without values: registering the collector (when this module is
        imported) reads these instead of calling :meth:`collect`, so it needs no Redis."""
        for family in FAMILIES:
            yield family()

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        r = get_redis()
        yield self._jobs_by_status(r)
        depth = _depth_family()
        queue = get_settings().queue
        depth.add_metric([queue], r.llen(key("celery", queue)))
        yield depth
        raw = r.hgetall(counters.metrics_key(counters.COUNTERS))
        retried = _retried_family()
        retried.add_metric([], float(raw.get("jobs_retried", 0)))
        yield retried
        yield self._webhooks(r)
        yield self._durations(r)
        yield self._worker_memory(r)

    def _jobs_by_status(self, r: redis.Redis) -> GaugeMetricFamily:
        ids = zset_members(key("jobs"))
        with r.pipeline(transaction=False) as p:
            for job_id in ids:
                p.hget(key("job", job_id), "status")
            statuses = [json.loads(s) for s in p.execute() if s is not None]
        family = _jobs_family()
        for status in JobStatus:
            family.add_metric([status.value], statuses.count(status.value))
        return family

    def _webhooks(self, r: redis.Redis) -> CounterMetricFamily:
        raw = r.hgetall(counters.metrics_key(counters.WEBHOOK_DELIVERIES))
        family = _webhooks_family()
        for outcome, count in sorted(raw.items()):
            family.add_metric([text(outcome)], float(count))
        return family

    def _durations(self, r: redis.Redis) -> HistogramMetricFamily:
        family = _durations_family()
        for strategy in sorted(texts(r.smembers(counters.metrics_key("job_duration_strategies")))):
            raw = r.hgetall(counters.metrics_key("job_duration", strategy))
            buckets = [(str(le), float(raw.get(str(le), 0))) for le in counters.DURATION_BUCKETS]
            buckets.append(("+Inf", float(raw.get("+Inf", 0))))
            family.add_metric([strategy], buckets, float(raw.get("sum", 0)))
        return family

    def _worker_memory(self, r: redis.Redis) -> GaugeMetricFamily:
        family = _memory_family()
        now = time.time()
        for name, raw in sorted(r.hgetall(counters.metrics_key(counters.WORKER_RSS)).items()):
            figure = json.loads(raw)
            if now - figure["at"] < STALE_WORKER_S:
                family.add_metric([text(name)], figure["rss"])
        return family


REGISTRY.register(RedisCollector())

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response, include_in_schema=True)
def metrics() -> Response:
    """Prometheus text format; no API key (turn off with ``PRUNEKIT_METRICS=off``)."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@asynccontextmanager
async def lifespan(app: object) -> AsyncIterator[None]:
    """With ``PRUNEKIT_METRICS_PORT`` (and metrics on), serve the registry on that port
    (all interfaces) for the API process's lifetime."""
    port = separate_port()
    server = None
    if enabled() and port is not None:
        server, _ = start_http_server(port, registry=REGISTRY)
    try:
        yield
    finally:
        if server is not None:
            server.shutdown()

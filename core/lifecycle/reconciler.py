"""The reconciler: no accepted job is lost, whatever happens to Redis or the workers.

Redis holds every job record (the source of truth, AOF on in production); Celery messages
only carry job ids. A message can be lost while its record survives: Redis restarted from
an older AOF/RDB or failed over, a worker died after taking the message, a hard time limit
killed a child. Every ``PRUNEKIT_RECONCILE_INTERVAL`` seconds one pass (one reconciler at a
time, through a Redis lock) looks at the unfinished jobs:

* ``queued`` for longer than the interval with no message naming it in the queue, and none
  that a worker reserved recently (a worker starts what it reserves at once; one that died
  before starting it leaves the message in the unacked set, which Redis would hand out
  again only after the visibility timeout) -> sent again;
* a model still waiting for inspection with no such message (or one held only by a dead
  inspector on this host) -> its inspection is sent again;
* ``running``/``cancelling`` with no lease (its worker is gone: see ``worker.guard``) ->
  failed as ``timeout`` if it started longer ago than the hard time limit, cancelled if it
  was cancelling, else sent again (the next delivery counts one more attempt; past
  ``PRUNEKIT_MAX_ATTEMPTS`` it fails), unless a message naming it already waits in the queue.

Sending a job twice is harmless: tasks are idempotent by job id and the lease lets one
delivery run at a time. The worker starts this as a small TensorFlow-free process
(``python -m core.lifecycle.reconciler``) next to its pool; it also runs the sweeper.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime

from core.holders import holder_is_dead
from core.jobs import deadlines
from core.jobs import store as jobs
from core.jobs.status import JobStatus
from core.lifecycle.sweeper import sweep
from core.models import store as models
from core.queue import (
    INSPECT_MODEL,
    RUN_JOB,
    enqueue,
    is_amqp,
    queue_depths,
    unacked_messages,
    waiting_messages,
)
from core.records import now_iso
from core.redis import get_redis, key
from core.settings import get_settings

log = logging.getLogger("prunekit.reconciler")

MIN_RESERVATION_GRACE_S = 5.0  # a worker starts what it reserved within this (and more)


@dataclass
class ReconcileReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    inspections: list[str] = field(default_factory=list)


def _age_s(iso: str | None, now: float) -> float:
    if not iso:
        return float("inf")
    try:
        return now - datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return float("inf")


@dataclass
class BrokerView:
    """One look at the broker: what waits in the queue and what workers reserved when.

    With RabbitMQ the queues cannot be read without consuming them, only counted
    (``depths``): a message is taken to be ``live`` while its queue holds any message, and
    ``lost`` once the queue is empty and the job still waits (or runs with no lease).
    RabbitMQ itself hands a dead worker's unacknowledged message to another one."""

    waiting: str
    reserved: list[tuple[float, str]]
    depths: dict[str, int] | None = None  # RabbitMQ: queue -> messages waiting

    @classmethod
    def now(cls, queues: list[str] | None = None) -> BrokerView:
        if is_amqp(get_settings().broker):
            return cls("", [], queue_depths(queues or [get_settings().queue]))
        return cls(waiting_messages(), unacked_messages())

    def delivery(self, ident: str, now: float, grace_s: float, queue: str | None = None) -> str:
        """``live``: a message naming ``ident`` waits, or a worker took it within
        ``grace_s`` (it starts such work at once); ``stale``: only workers that took it
        longer ago hold it (died before starting it: Redis would hand it out again only
        after the visibility timeout); ``lost``: no message names it."""
        if self.depths is not None:
            return "live" if self.depths.get(queue or get_settings().queue, 0) else "lost"
        if ident in self.waiting:
            return "live"
        taken = [at for at, msg in self.reserved if ident in msg]
        if not taken:
            return "lost"
        return "live" if now - max(taken) < grace_s else "stale"


LOST_MESSAGE = {
    "lost": "its queue message was lost; queued again",
    "stale": "the worker that took it was lost before starting it; queued again",
}


def reconcile_once(now: float | None = None) -> ReconcileReport:
    s = get_settings()
    now = time.time() if now is None else now
    report = ReconcileReport()
    active = jobs.active_jobs()
    broker = BrokerView.now(sorted({s.queue, *(j.get("queue", s.queue) for j in active)}))
    grace = max(MIN_RESERVATION_GRACE_S, s.lease_ttl, 2 * s.reconcile_interval)
    for job in active:
        job_id, status = job["id"], job["status"]
        if status != JobStatus.CANCELLING.value and deadlines.expired(job, now):
            if deadlines.cancel_expired(job):  # queued: cancelled; running: asked to stop
                report.cancelled.append(job_id)
            continue
        if status == JobStatus.QUEUED.value:
            delivery = broker.delivery(job_id, now, grace, job.get("queue", s.queue))
            if _age_s(job.get("updated_at"), now) > s.reconcile_interval and delivery != "live":
                jobs.add_event(job_id, "message", LOST_MESSAGE[delivery])
                enqueue(RUN_JOB, job_id, queue=job.get("queue", s.queue))
                report.requeued.append(job_id)
            continue
        if jobs.lease_holder(job_id) is not None:
            continue  # a live worker runs it
        if status == JobStatus.CANCELLING.value:
            if jobs.transition(
                job_id, JobStatus.CANCELLED.value, {JobStatus.CANCELLING.value},
                message="cancelled (its worker was gone)", finished_at=now_iso(),
            ):  # fmt: skip
                report.cancelled.append(job_id)
            continue
        if _age_s(job.get("started_at"), now) > s.task_time_limit:
            if jobs.transition(
                job_id, JobStatus.FAILED.value, {JobStatus.RUNNING.value},
                message="failed: hard time limit",
                error={"reason": "timeout", "message": "the job ran past its hard time limit "
                       f"of {s.task_time_limit} s (PRUNEKIT_TASK_TIME_LIMIT) and was killed"},
                finished_at=now_iso(),
            ):  # fmt: skip
                report.failed.append(job_id)
            continue
        if broker.delivery(job_id, now, grace, job.get("queue", s.queue)) == "live":
            continue  # a delivery waits, or a worker took one just now: it takes the job over
        # a lease renewed every lease_ttl/3 is gone: its worker died (SIGKILL, OOM, host lost)
        jobs.add_event(job_id, "message", "its worker was lost; queued again", level="warning")
        enqueue(RUN_JOB, job_id, queue=job.get("queue", s.queue))
        report.requeued.append(job_id)
    for model_id in models.pending_ids():
        record = models.get(model_id)
        if record is None:
            continue
        if _age_s(record.get("created_at"), now) <= s.reconcile_interval:
            continue
        inspector = (record.get("inspection") or {}).get("inspector")
        delivery = broker.delivery(model_id, now, grace)
        if delivery == "lost" or (
            delivery == "stale" and (inspector is None or holder_is_dead(inspector))
        ):  # an inspection under way (a live inspector) is left alone however long it takes
            enqueue(INSPECT_MODEL, model_id)
            report.inspections.append(model_id)
    if report.requeued or report.failed or report.cancelled or report.inspections:
        log.warning("reconciled: %s", report)
    return report


def run_forever(parent_pid: int | None = None) -> None:
    """Reconcile (and sweep) periodically until the parent worker process goes away."""
    s = get_settings()
    lock = key("reconciler", "lock")
    last_sweep = 0.0
    while parent_pid is None or os.getppid() == parent_pid:
        try:
            r = get_redis()
            if r.set(lock, str(os.getpid()), nx=True, px=int(s.reconcile_interval * 900)):
                reconcile_once()
                if time.monotonic() - last_sweep > max(60.0, s.reconcile_interval):
                    sweep()
                    last_sweep = time.monotonic()
        except Exception:
            log.exception("reconcile pass failed; retrying in %s s", s.reconcile_interval)
        time.sleep(s.reconcile_interval)


def main() -> None:
    parser = argparse.ArgumentParser(description="prunekit's job reconciler and sweeper")
    parser.add_argument("--parent", type=int, help="exit when this process is no longer our parent")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run_forever(args.parent)


if __name__ == "__main__":
    main()

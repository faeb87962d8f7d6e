"""Turning job events into webhook deliveries: record the delivery, enqueue its task.

Called after a job's status changed (``core.jobs.store.transition``, in whichever process
made the change) and on progress (``worker.reporter``). It never raises: a webhook problem
must not break a job. The delivery itself runs in its own Celery task
(``worker.webhooks``), never in the job's task or an API request.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from typing import Any

from core.jobs import store as jobs
from core.queue import DELIVER_WEBHOOK, enqueue
from core.records import DeliveryRecord, JobRecord, new_id, now_iso
from core.settings import get_settings
from core.webhooks import store

log = logging.getLogger("prunekit.webhooks")

SNAPSHOT_FIELDS = (
    "id", "model_id", "dataset_id", "status", "progress", "error", "attempts",
    "created_at", "started_at", "finished_at", "deadline_at",
)  # fmt: skip
_seq = itertools.count()


def wants(record: Mapping[str, Any] | None, event: str) -> bool:
    hook = record.get("webhook") if record is not None else None
    return hook is not None and event in hook.get("events", ())


def payload(record: JobRecord, event: str) -> dict[str, Any]:
    """The JSON body: ``type``, ``timestamp`` and the job as it is at the event."""
    data: dict[str, Any] = {name: record.get(name) for name in SNAPSHOT_FIELDS}
    links = {"self": f"/v1/jobs/{record['id']}"}
    if record.get("status") == "succeeded":
        links["report"] = f"/v1/jobs/{record['id']}/report"
        links["model"] = f"/v1/jobs/{record['id']}/model"
    data["links"] = links
    return {"type": f"job.{event}", "timestamp": now_iso(), "data": data}


def send(record: JobRecord, event: str) -> str:
    """Record a delivery of ``event`` for the job and enqueue it; its id."""
    hook = record.get("webhook")
    if hook is None:
        raise ValueError(f"job {record['id']} has no webhook")
    delivery: DeliveryRecord = {
        "id": f"msg_{new_id()}",
        "seq": next(_seq),
        "tenant": record["tenant"],
        "event": event,
        "url": hook["url"],
        "status": "pending",
        "created_at": now_iso(),
        "attempts": [],
        "payload": payload(record, event),
    }
    store.put_delivery(record["id"], delivery)
    enqueue(DELIVER_WEBHOOK, record["id"], delivery["id"])
    return str(delivery["id"])


def status_changed(job_id: str, status: str) -> None:
    try:
        record = jobs.get(job_id)
        if record is not None and wants(record, status):
            send(record, status)
    except Exception:
        log.exception("job %s: could not queue its %s webhook", job_id, status)


def progress(job_id: str) -> None:
    """A progress delivery, unless one went out less than the throttle interval ago."""
    try:
        if not store.progress_gate(job_id, get_settings().webhook_progress_interval):
            return
        record = jobs.get(job_id)
        if record is not None and record["status"] == "running" and wants(record, "progress"):
            send(record, "progress")
    except Exception:
        log.exception("job %s: could not queue its progress webhook", job_id)

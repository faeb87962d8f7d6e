"""The webhook delivery task: one signed POST per attempt, retried with backoff and jitter.

Each attempt re-checks the URL's address (SSRF rule) and connects to the address it checked,
signs the stored payload with the tenant's secret(s) per Standard Webhooks (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``), and logs itself on the delivery: status code,
latency, error, next retry. Short connect/read timeouts bound an attempt; a failed one
schedules the next as a new task (``countdown``), so no worker slot waits out a backoff.
"""

from __future__ import annotations

import json
import logging
import random
import time
from datetime import UTC, datetime, timedelta

import httpx
from celery.exceptions import SoftTimeLimitExceeded
from standardwebhooks import Webhook

from core.jobs import store as jobs
from core.jobs.status import TERMINAL
from core.queue import DELIVER_WEBHOOK
from core.records import DeliveryAttempt, DeliveryRecord, now_iso
from core.settings import get_settings
from core.webhooks import store
from core.webhooks.addresses import AddressRefusedError, HostUnresolvedError, resolve_checked
from worker.celery_app import celery_app

log = logging.getLogger("prunekit.webhooks")

USER_AGENT = "prunekit-webhooks/1"
FINAL_EVENTS = frozenset(str(s) for s in TERMINAL)  # a job's last events: nothing follows
IN_FLIGHT_RECHECK_S = 0.5  # how soon a final event waiting on a progress POST looks again
# one attempt's wall-clock bound (Celery soft limit), past the per-read timeouts
ATTEMPT_LIMIT_S = int(4 * get_settings().webhook_timeout) + 10


def retry_delay(attempt: int, base_s: float, max_s: float) -> float:
    """Exponential backoff with jitter: ``base * 2**(attempt-1)``, capped, times U(0.5, 1)."""
    return min(max_s, base_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


def signed_headers(msg_id: str, body: str, secrets: list[str]) -> dict[str, str]:
    """Standard Webhooks headers; one ``v1,`` signature per secret, space-separated."""
    at = datetime.now(UTC)
    signature = " ".join(Webhook(s).sign(msg_id, at, body) for s in secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def post_pinned(url: str, address: str, headers: dict[str, str], body: str) -> int:
    """POST ``body`` to ``url`` through the already-checked ``address`` (Host and TLS name
    stay the URL's); the status code. Redirects are not followed, and the answer's body is
    never read (the connection is closed once its status line and headers are in)."""
    timeout = get_settings().webhook_timeout
    target = httpx.URL(url)
    pinned = target.copy_with(host=address)
    host_header = target.netloc.decode("ascii")  # the URL's host[:port], IPv6 in brackets
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    with (
        httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False) as client,
        client.stream(
            "POST", pinned, content=body.encode(), headers={**headers, "host": host_header},
            extensions=extensions,
        ) as response,
    ):  # fmt: skip
        return response.status_code


def _attempt(delivery: DeliveryRecord) -> tuple[int | None, str | None, bool]:
    """One attempt: (status code, error, whether retrying can help)."""
    settings = get_settings()
    secrets = store.signing_secrets(delivery["tenant"])
    if not secrets:
        return None, "the tenant has no webhook signing secret (POST /v1/webhook-secret)", True
    try:
        address = resolve_checked(delivery["url"], settings.webhook_allow_private)
    except HostUnresolvedError as exc:  # DNS may answer at the next attempt
        return None, str(exc), True
    except AddressRefusedError as exc:  # the SSRF rule: retrying cannot help
        return None, f"refused: {exc}", False
    body = json.dumps(delivery["payload"], separators=(",", ":"))
    try:
        status = post_pinned(
            delivery["url"], address, signed_headers(delivery["id"], body, secrets), body
        )
    except SoftTimeLimitExceeded:  # a receiver trickling its headers past every timeout
        return None, f"cut off after the attempt's time limit of {ATTEMPT_LIMIT_S} s", True
    except httpx.TimeoutException as exc:
        return None, f"timed out after {settings.webhook_timeout} s ({type(exc).__name__})", True
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}", True
    if 200 <= status < 300:
        return status, None, False
    return status, f"the receiver answered {status}", True


@celery_app.task(
    name=DELIVER_WEBHOOK, soft_time_limit=ATTEMPT_LIMIT_S, time_limit=ATTEMPT_LIMIT_S + 10
)
def deliver_webhook_task(job_id: str, delivery_id: str) -> None:
    delivery = store.get_delivery(job_id, delivery_id)
    if delivery is None or delivery["status"] in ("delivered", "failed", "superseded"):
        return  # the job was deleted, or a redelivered message for a finished delivery
    if delivery["event"] == "progress":
        _deliver_progress(job_id, delivery)
    elif delivery["event"] in FINAL_EVENTS and store.progress_in_flight(job_id):
        # a progress POST of this job is under way: send the final event after it, so
        # that the last delivery a receiver gets for a job is its final state
        deliver_webhook_task.apply_async(
            args=[job_id, delivery_id], countdown=IN_FLIGHT_RECHECK_S,
            queue=get_settings().queue,
        )  # fmt: skip
    else:
        _deliver(job_id, delivery)


def _deliver_progress(job_id: str, delivery: DeliveryRecord) -> None:
    """Send a progress delivery unless the job has ended since (then it is ``superseded``:
    a job's progress never reaches a receiver after its final event)."""
    store.begin_progress_post(job_id, delivery["id"], ttl_s=ATTEMPT_LIMIT_S + 10)
    try:
        record = jobs.get(job_id)
        if record is None or record["status"] in FINAL_EVENTS:
            delivery["status"] = "superseded"
            store.update_delivery(job_id, delivery)
            return
        _deliver(job_id, delivery)
    finally:
        store.end_progress_post(job_id, delivery["id"])


def _deliver(job_id: str, delivery: DeliveryRecord) -> None:
    """One attempt at the delivery, logged on it; a retry scheduled when it may help."""
    delivery_id = delivery["id"]
    settings = get_settings()
    number = len(delivery["attempts"]) + 1
    started = time.monotonic()
    status, error, retryable = _attempt(delivery)
    entry: DeliveryAttempt = {
        "attempt": number,
        "at": now_iso(),
        "status_code": status,
        "latency_ms": round((time.monotonic() - started) * 1000, 1),
        "error": error,
        "next_retry_at": None,
    }
    delay = None
    if error is None:
        delivery["status"] = "delivered"
    elif retryable and number < settings.webhook_max_attempts:
        delay = retry_delay(number, settings.webhook_retry_base, settings.webhook_retry_max)
        due = datetime.now(UTC) + timedelta(seconds=delay)
        entry["next_retry_at"] = due.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        delivery["status"] = "retrying"
    else:
        delivery["status"] = "failed"
    delivery["attempts"].append(entry)
    if not store.update_delivery(job_id, delivery):
        return  # the job was deleted meanwhile
    if error is not None:
        log.warning("job %s: webhook %s attempt %d: %s", job_id, delivery_id, number, error)
    if delay is not None:
        deliver_webhook_task.apply_async(
            args=[job_id, delivery_id], countdown=delay, queue=settings.queue
        )

"""Webhook state in Redis: each tenant's signing secret and each job's delivery log.

``<prefix>:tenant:<t>:webhook_secret`` holds the current secret (and, for a day after a
rotation, the previous one). ``<prefix>:job:<id>:webhooks`` is a hash, delivery id -> the
delivery (event, payload, status, every attempt); it goes when the job is deleted.
``<prefix>:job:<id>:webhooks:progress_gate`` throttles progress deliveries.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from core.jobs.store import webhooks_key
from core.records import DeliveryRecord, now_iso
from core.redis import get_redis, key

SECRET_PREFIX = "whsec_"
PREVIOUS_SECRET_GRACE = timedelta(hours=24)


def _secret_key(tenant: str) -> str:
    return key("tenant", tenant, "webhook_secret")


def rotate_secret(tenant: str) -> dict[str, Any]:
    """A new secret for ``tenant``; the previous one keeps signing for a grace period."""
    r = get_redis()
    raw = r.get(_secret_key(tenant))
    now = datetime.now(UTC)
    record: dict[str, Any] = {
        "secret": SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode(),
        "created_at": now_iso(),
        "previous": None,
        "previous_valid_until": None,
    }
    if raw:
        record["previous"] = json.loads(raw)["secret"]
        until = now + PREVIOUS_SECRET_GRACE
        record["previous_valid_until"] = until.isoformat(timespec="seconds").replace("+00:00", "Z")
    r.set(_secret_key(tenant), json.dumps(record))
    return record


def signing_secrets(tenant: str) -> list[str]:
    """The secrets a delivery is signed with now: the current one, then a previous one
    still in its grace period; empty when the tenant never created one."""
    raw = get_redis().get(_secret_key(tenant))
    if not raw:
        return []
    record = json.loads(raw)
    out = [record["secret"]]
    until = record.get("previous_valid_until")
    if record.get("previous") and until and datetime.fromisoformat(until) > datetime.now(UTC):
        out.append(record["previous"])
    return out


def _default_key(tenant: str) -> str:
    return key("tenant", tenant, "webhook_default")


def set_default(tenant: str, webhook: dict[str, Any] | None) -> None:
    """The tenant's default webhook (for jobs that name none); None removes it."""
    if webhook is None:
        get_redis().delete(_default_key(tenant))
    else:
        get_redis().set(_default_key(tenant), json.dumps(webhook))


def get_default(tenant: str) -> dict[str, Any] | None:
    raw = get_redis().get(_default_key(tenant))
    return json.loads(raw) if raw else None


def has_secret(tenant: str) -> bool:
    return bool(get_redis().exists(_secret_key(tenant)))


def put_delivery(job_id: str, delivery: DeliveryRecord) -> None:
    get_redis().hset(webhooks_key(job_id), delivery["id"], json.dumps(delivery))


def get_delivery(job_id: str, delivery_id: str) -> DeliveryRecord | None:
    raw = get_redis().hget(webhooks_key(job_id), delivery_id)
    return json.loads(raw) if raw else None


def update_delivery(job_id: str, delivery: DeliveryRecord) -> bool:
    """Write back a delivery that still exists (never recreates a deleted job's log)."""
    r = get_redis()
    done = False

    def _tx(pipe: Any) -> None:
        nonlocal done
        done = bool(pipe.hexists(webhooks_key(job_id), delivery["id"]))
        pipe.multi()
        if done:
            pipe.hset(webhooks_key(job_id), delivery["id"], json.dumps(delivery))

    r.transaction(_tx, webhooks_key(job_id))
    return done


def deliveries(job_id: str) -> list[DeliveryRecord]:
    raw = get_redis().hvals(webhooks_key(job_id))
    return sorted((json.loads(v) for v in raw), key=lambda d: (d["created_at"], d["seq"]))


def progress_gate(job_id: str, interval_s: float) -> bool:
    """True at most once per ``interval_s`` per job (across every worker process)."""
    gate = key("job", job_id, "webhooks", "progress_gate")
    return bool(get_redis().set(gate, "1", nx=True, px=max(1, int(interval_s * 1000))))


def _in_flight_key(job_id: str) -> str:
    return key("job", job_id, "webhooks", "progress_in_flight")


def begin_progress_post(job_id: str, delivery_id: str, ttl_s: int) -> None:
    """Mark a progress POST for the job as under way (until ``end_progress_post``, or
    ``ttl_s`` if its worker dies mid-POST), so that the job's final event waits for it."""
    r = get_redis()
    with r.pipeline() as pipe:
        pipe.sadd(_in_flight_key(job_id), delivery_id)
        pipe.expire(_in_flight_key(job_id), ttl_s)
        pipe.execute()


def end_progress_post(job_id: str, delivery_id: str) -> None:
    get_redis().srem(_in_flight_key(job_id), delivery_id)


def progress_in_flight(job_id: str) -> bool:
    return bool(get_redis().scard(_in_flight_key(job_id)))

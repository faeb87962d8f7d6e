"""Job records in Redis, the source of truth for every job.

``<prefix>:job:<id>`` is a hash (JSON-encoded fields), ``<prefix>:jobs`` a sorted set by
creation time (newest-first listing with an ``after`` cursor), ``<prefix>:job:<id>:events``
an append-only list of events. Status changes are compare-and-set (WATCH/MULTI), so a
redelivered or late task can never move a finished job backwards. ``<prefix>:tenant:<t>:jobs``
indexes one tenant's jobs; ``<prefix>:jobs:active`` holds the ids of unfinished jobs (what the
reconciler and deletion checks look at); ``<prefix>:job:<id>:lease`` is held (with a TTL,
renewed) by the worker running the job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import redis

from app.auth.tenancy import tenant_index
from app.records import decode, encode, is_record_id, now_iso, now_ms, page_ids
from app.redis_client import get_redis, key

FINISHED = frozenset({"succeeded", "failed", "cancelled"})


def _active_key() -> str:
    return key("jobs", "active")


def _lease_key(job_id: str) -> str:
    return key("job", job_id, "lease")


def _key(job_id: str) -> str:
    return key("job", job_id)


def _events_key(job_id: str) -> str:
    return key("job", job_id, "events")


def _event(kind: str, message: str | None, data: dict[str, Any]) -> str:
    return json.dumps({"at": now_iso(), "type": kind, "message": message, "data": data})


def create(record: dict[str, Any]) -> None:
    r = get_redis()
    with r.pipeline() as p:  # MULTI/EXEC: record, index and first event together
        p.hset(_key(record["id"]), mapping=encode(record))
        score = now_ms()
        p.zadd(key("jobs"), {record["id"]: score})
        p.zadd(tenant_index(record["tenant"], "jobs"), {record["id"]: score})
        p.sadd(_active_key(), record["id"])
        p.rpush(_events_key(record["id"]), _event("status", "queued", {"status": "queued"}))
        p.execute()


def get(job_id: str) -> dict[str, Any] | None:
    if not is_record_id(job_id):
        return None
    raw = get_redis().hgetall(_key(job_id))
    return decode(raw) if raw else None


def status(job_id: str) -> str | None:
    if not is_record_id(job_id):
        return None
    raw = get_redis().hget(_key(job_id), "status")
    return json.loads(raw) if raw else None


def update(job_id: str, **fields: Any) -> None:
    """Set fields of an existing job (never creates one)."""
    r = get_redis()
    if not r.exists(_key(job_id)):
        return
    r.hset(_key(job_id), mapping=encode({**fields, "updated_at": now_iso()}))


def transition(
    job_id: str, to: str, allowed_from: Iterable[str], message: str | None = None, **fields: Any
) -> bool:
    """Move the job to status ``to`` if its status is one of ``allowed_from``."""
    allowed = set(allowed_from)
    k = _key(job_id)
    done = False

    def _tx(pipe: redis.client.Pipeline) -> None:
        nonlocal done
        raw = pipe.hget(k, "status")
        if raw is None or json.loads(raw) not in allowed:
            done = False
            pipe.multi()
            return
        pipe.multi()
        pipe.hset(k, mapping=encode({**fields, "status": to, "updated_at": now_iso()}))
        pipe.rpush(_events_key(job_id), _event("status", message or to, {"status": to}))
        if to in FINISHED:
            pipe.srem(_active_key(), job_id)
        done = True

    get_redis().transaction(_tx, k)
    return done


def incr_attempts(job_id: str) -> int:
    """Count one more delivery of the job to a worker."""
    k = _key(job_id)
    attempts = 0

    def _tx(pipe: redis.client.Pipeline) -> None:
        nonlocal attempts
        raw = pipe.hget(k, "attempts")
        attempts = (json.loads(raw) if raw else 0) + 1
        pipe.multi()
        pipe.hset(k, "attempts", json.dumps(attempts))

    get_redis().transaction(_tx, k)
    return attempts


def add_event(job_id: str, kind: str, message: str | None = None, **data: Any) -> None:
    get_redis().rpush(_events_key(job_id), _event(kind, message, data))


def events(job_id: str, start: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
    raw = get_redis().lrange(_events_key(job_id), start, start + limit - 1)
    return [{"seq": start + i, **json.loads(e)} for i, e in enumerate(raw)]


def list_ids(tenant: str, limit: int, after: str | None) -> list[str]:
    return page_ids(get_redis(), tenant_index(tenant, "jobs"), limit, after)


def active_jobs() -> list[dict[str, Any]]:
    """Every unfinished job (queued, running, cancelling) of every tenant."""
    r = get_redis()
    out = []
    for job_id in r.smembers(_active_key()):
        record = get(job_id)
        if record is None or record.get("status") in FINISHED:
            r.srem(_active_key(), job_id)  # self-healing: a deleted or finished job
            continue
        out.append(record)
    return out


def all_ids() -> list[str]:
    return list(get_redis().zrange(key("jobs"), 0, -1))


def delete(record: dict[str, Any]) -> None:
    r = get_redis()
    job_id = record["id"]
    with r.pipeline() as p:
        p.delete(_key(job_id), _events_key(job_id), _lease_key(job_id))
        p.zrem(key("jobs"), job_id)
        p.zrem(tenant_index(record["tenant"], "jobs"), job_id)
        p.srem(_active_key(), job_id)
        p.execute()


# ------------------------------------------------------------------ the running lease
def acquire_lease(job_id: str, owner: str, ttl_s: float) -> bool:
    """Take the job's lease (only one worker runs a job at a time); True if we hold it."""
    return bool(get_redis().set(_lease_key(job_id), owner, nx=True, px=int(ttl_s * 1000)))


def renew_lease(job_id: str, owner: str, ttl_s: float) -> bool:
    """Extend our lease; False if it is no longer ours (expired and taken)."""
    r = get_redis()
    k = _lease_key(job_id)
    renewed = False

    def _tx(pipe: redis.client.Pipeline) -> None:
        nonlocal renewed
        current = pipe.get(k)
        pipe.multi()
        if current == owner:
            pipe.pexpire(k, int(ttl_s * 1000))
            renewed = True

    r.transaction(_tx, k)
    return renewed


def release_lease(job_id: str, owner: str) -> None:
    r = get_redis()
    k = _lease_key(job_id)

    def _tx(pipe: redis.client.Pipeline) -> None:
        current = pipe.get(k)
        pipe.multi()
        if current == owner:
            pipe.delete(k)

    r.transaction(_tx, k)


def lease_holder(job_id: str) -> str | None:
    return get_redis().get(_lease_key(job_id))


# ------------------------------------------------------------------ idempotency keys
def _idem_key(tenant: str, idem_key: str) -> str:
    return key("tenant", tenant, "idem", hashlib.sha256(idem_key.encode()).hexdigest())


def claim_idempotency_key(
    tenant: str, idem_key: str, job_id: str, body_hash: str, ttl_s: int
) -> dict[str, str] | None:
    """Bind ``idem_key`` to a new job; None if bound now, else the earlier binding."""
    r = get_redis()
    k = _idem_key(tenant, idem_key)
    value = json.dumps({"job_id": job_id, "body": body_hash})
    if r.set(k, value, nx=True, ex=ttl_s):
        return None
    raw = r.get(k)
    return json.loads(raw) if raw else None


def release_idempotency_key(tenant: str, idem_key: str) -> None:
    get_redis().delete(_idem_key(tenant, idem_key))

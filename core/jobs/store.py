"""Job records in Redis, the source of truth for every job.

``<prefix>:job:<id>`` is a hash (JSON-encoded fields), ``<prefix>:jobs`` a sorted set by
creation time (newest-first listing with an ``after`` cursor), ``<prefix>:job:<id>:events``
an append-only list of events. Status changes are compare-and-set (WATCH/MULTI), so a
redelivered or late task can never move a finished job backwards. ``<prefix>:tenant:<t>:jobs``
indexes one tenant's jobs; ``<prefix>:jobs:active`` holds the ids of unfinished jobs (what the
reconciler and deletion checks look at); ``<prefix>:job:<id>:lease`` is held (with a TTL,
renewed) by the worker running the job.

**Fencing.** Each acquisition of the lease increments the record's ``lease_token``; the
worker's writes (status, progress, events) carry a :class:`Fence` (its lease owner and that
token) and are applied, in one WATCH/MULTI transaction, only while the lease is still its own
and the token still the latest. A worker that lost its lease (expired and taken over, job
deleted) writes nothing. No write of a worker ever recreates a deleted job's record or events.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import redis

from core.records import (
    JobRecord,
    decode,
    encode,
    is_record_id,
    now_iso,
    page_ids,
    text,
    texts,
)
from core.redis import add_indexed, get_redis, key, remove_indexed, tenant_index, zset_members

FINISHED = frozenset({"succeeded", "failed", "cancelled"})


def _active_key() -> str:
    return key("jobs", "active")


def _lease_key(job_id: str) -> str:
    return key("job", job_id, "lease")


def _key(job_id: str) -> str:
    return key("job", job_id)


def _events_key(job_id: str) -> str:
    return key("job", job_id, "events")


def webhooks_key(job_id: str) -> str:
    return key("job", job_id, "webhooks")  # its webhook deliveries (core.webhooks.store)


def _event(kind: str, message: str | None, data: dict[str, Any]) -> str:
    return json.dumps({"at": now_iso(), "type": kind, "message": message, "data": data})


@dataclass(frozen=True)
class Fence:
    """The right to write for a running job: the lease's owner and its acquisition's token."""

    job_id: str
    owner: str
    token: int


class LeaseLostError(RuntimeError):
    """The lease behind a :class:`Fence` is gone (expired and taken over, or job deleted)."""


def _fence_holds(pipe: redis.client.Pipeline, fence: Fence | None) -> bool:
    """Inside a WATCH of the job and lease keys: is ``fence`` still the current writer?"""
    if fence is None:
        return True
    raw = pipe.hget(_key(fence.job_id), "lease_token")
    token = json.loads(raw) if raw else None
    return token == fence.token and pipe.get(_lease_key(fence.job_id)) == fence.owner


def _watched(job_id: str, fence: Fence | None) -> tuple[str, ...]:
    return (_key(job_id), _lease_key(job_id)) if fence is not None else (_key(job_id),)


def create(record: JobRecord) -> None:
    with get_redis().pipeline() as p:  # MULTI/EXEC: record, indexes and first event together
        add_indexed(p, "job", "jobs", record)
        p.sadd(_active_key(), record["id"])
        p.rpush(_events_key(record["id"]), _event("status", "queued", {"status": "queued"}))
        p.execute()


def get(job_id: str) -> JobRecord | None:
    if not is_record_id(job_id):
        return None
    raw = get_redis().hgetall(_key(job_id))
    return cast(JobRecord, decode(raw)) if raw else None


def status(job_id: str) -> str | None:
    if not is_record_id(job_id):
        return None
    raw = get_redis().hget(_key(job_id), "status")
    return json.loads(raw) if raw else None


def _write_existing(
    job_id: str, fence: Fence | None, write: Callable[[redis.client.Pipeline], object]
) -> bool:
    """Run ``write`` (queued commands) in one transaction, only if the job exists and
    ``fence`` (when given) still holds; whether it ran."""
    done = False

    def _tx(pipe: redis.client.Pipeline) -> None:
        nonlocal done
        done = bool(pipe.exists(_key(job_id))) and _fence_holds(pipe, fence)
        pipe.multi()
        if done:
            write(pipe)

    get_redis().transaction(_tx, *_watched(job_id, fence))
    return done


def update(job_id: str, fence: Fence | None = None, **fields: Any) -> bool:
    """Set fields of an existing job (never creates one); False when the job is gone or
    ``fence`` no longer holds."""
    mapping = encode({**fields, "updated_at": now_iso()})
    return _write_existing(job_id, fence, lambda pipe: pipe.hset(_key(job_id), mapping=mapping))


def transition(
    job_id: str,
    to: str,
    allowed_from: Iterable[str],
    message: str | None = None,
    fence: Fence | None = None,
    **fields: Any,
) -> bool:
    """Move the job to status ``to`` if its status is one of ``allowed_from`` (and, with a
    ``fence``, only while that lease is still the writer)."""
    allowed = set(allowed_from)
    k = _key(job_id)
    done = False

    def _tx(pipe: redis.client.Pipeline) -> None:
        nonlocal done
        raw = pipe.hget(k, "status")
        if raw is None or json.loads(raw) not in allowed or not _fence_holds(pipe, fence):
            done = False
            pipe.multi()
            return
        pipe.multi()
        pipe.hset(k, mapping=encode({**fields, "status": to, "updated_at": now_iso()}))
        pipe.rpush(_events_key(job_id), _event("status", message or to, {"status": to}))
        if to in FINISHED:
            pipe.srem(_active_key(), job_id)
        done = True

    get_redis().transaction(_tx, *_watched(job_id, fence))
    if done:
        from core.webhooks import dispatch  # the job's webhook, when it wants this status

        dispatch.status_changed(job_id, to)
    return done


def incr_attempts(job_id: str) -> int:
    """Count one more delivery of the job to a worker (0: the job no longer exists)."""
    k = _key(job_id)
    attempts = 0

    def _tx(pipe: redis.client.Pipeline) -> None:
        nonlocal attempts
        if not pipe.exists(k):  # deleted meanwhile: never recreate the record
            attempts = 0
            pipe.multi()
            return
        raw = pipe.hget(k, "attempts")
        attempts = (json.loads(raw) if raw else 0) + 1
        pipe.multi()
        pipe.hset(k, "attempts", json.dumps(attempts))

    get_redis().transaction(_tx, k)
    return attempts


def add_event(
    job_id: str, kind: str, message: str | None = None, fence: Fence | None = None, **data: Any
) -> bool:
    """Append an event to an existing job's log; False when the job is gone or ``fence``
    no longer holds (a deleted job's events never come back)."""
    event = _event(kind, message, data)
    return _write_existing(job_id, fence, lambda pipe: pipe.rpush(_events_key(job_id), event))


def events(job_id: str, start: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
    raw = get_redis().lrange(_events_key(job_id), start, start + limit - 1)
    return [{"seq": start + i, **json.loads(e)} for i, e in enumerate(raw)]


def list_ids(tenant: str, limit: int, after: str | None) -> list[str]:
    return page_ids(get_redis(), tenant_index(tenant, "jobs"), limit, after)


def active_jobs() -> list[JobRecord]:
    """Every unfinished job (queued, running, cancelling) of every tenant."""
    r = get_redis()
    out = []
    for job_id in texts(r.smembers(_active_key())):
        record = get(job_id)
        if record is None or record.get("status") in FINISHED:
            r.srem(_active_key(), job_id)  # self-healing: a deleted or finished job
            continue
        out.append(record)
    return out


def all_ids() -> list[str]:
    return zset_members(key("jobs"))


def delete(record: JobRecord) -> None:
    job_id = record["id"]
    with get_redis().pipeline() as p:
        remove_indexed(p, "job", "jobs", record)
        p.delete(_events_key(job_id), _lease_key(job_id), webhooks_key(job_id))
        p.srem(_active_key(), job_id)
        p.execute()


# ------------------------------------------------------------------ the running lease
def acquire_lease(job_id: str, owner: str, ttl_s: float) -> Fence | None:
    """Take the job's lease (only one worker runs a job at a time) and a new fencing token;
    None if another holds it, or the job finished or no longer exists (a duplicate delivery
    that waited for the lease must not count an attempt of a finished job)."""
    k, lease = _key(job_id), _lease_key(job_id)
    fence: Fence | None = None

    def _tx(pipe: redis.client.Pipeline) -> None:
        nonlocal fence
        fence = None
        status = pipe.hget(k, "status")
        if status is None or json.loads(status) in FINISHED or pipe.exists(lease):
            pipe.multi()
            return
        raw = pipe.hget(k, "lease_token")
        token = (json.loads(raw) if raw else 0) + 1
        pipe.multi()
        pipe.set(lease, owner, px=int(ttl_s * 1000))
        pipe.hset(k, "lease_token", json.dumps(token))
        fence = Fence(job_id, owner, token)

    get_redis().transaction(_tx, k, lease)
    return fence


def renew_lease(job_id: str, owner: str, ttl_s: float, token: int | None = None) -> bool:
    """Extend our lease; False if it is no longer ours. With our ``token``, a lease that
    merely expired (nobody acquired it since: the token did not move) is taken back."""
    r = get_redis()
    k = _lease_key(job_id)
    renewed = False

    def _tx(pipe: redis.client.Pipeline) -> None:
        nonlocal renewed
        current = pipe.get(k)
        raw = pipe.hget(_key(job_id), "lease_token") if token is not None else None
        pipe.multi()
        renewed = current == owner or (
            current is None and raw is not None and json.loads(raw) == token
        )
        if renewed:
            pipe.set(k, owner, px=int(ttl_s * 1000))

    r.transaction(_tx, k, _key(job_id))
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


def fence_holds(fence: Fence) -> bool:
    """Whether ``fence`` is still the job's writer (its lease, its token, the job exists)."""
    holds = False

    def _tx(pipe: redis.client.Pipeline) -> None:
        nonlocal holds
        holds = _fence_holds(pipe, fence) and bool(pipe.exists(_key(fence.job_id)))
        pipe.multi()

    get_redis().transaction(_tx, *_watched(fence.job_id, fence))
    return holds


def lease_holder(job_id: str) -> str | None:
    holder = get_redis().get(_lease_key(job_id))
    return None if holder is None else text(holder)


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

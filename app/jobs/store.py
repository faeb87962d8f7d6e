"""Job records in Redis, the source of truth for every job.

``<prefix>:job:<id>`` is a hash (JSON-encoded fields), ``<prefix>:jobs`` a sorted set by
creation time (newest-first listing with an ``after`` cursor), ``<prefix>:job:<id>:events``
an append-only list of events. Status changes are compare-and-set (WATCH/MULTI), so a
redelivered or late task can never move a finished job backwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import redis

from app.records import decode, encode, now_iso, now_ms, page_ids
from app.redis_client import get_redis, key


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
        p.zadd(key("jobs"), {record["id"]: now_ms()})
        p.rpush(_events_key(record["id"]), _event("status", "queued", {"status": "queued"}))
        p.execute()


def get(job_id: str) -> dict[str, Any] | None:
    raw = get_redis().hgetall(_key(job_id))
    return decode(raw) if raw else None


def status(job_id: str) -> str | None:
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


def list_ids(limit: int, after: str | None) -> list[str]:
    return page_ids(get_redis(), key("jobs"), limit, after)

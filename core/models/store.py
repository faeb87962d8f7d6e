"""Model records in Redis: ``<prefix>:model:<id>`` hashes, a ``<prefix>:models`` index of all
models (for maintenance) and a ``<prefix>:tenant:<t>:models`` index per tenant (for listing)."""

from __future__ import annotations

import json
from typing import cast

import redis

from core.records import (
    Inspection,
    ModelRecord,
    decode,
    encode,
    is_record_id,
    now_iso,
    page_ids,
    texts,
)
from core.redis import add_indexed, get_redis, key, remove_indexed, tenant_index, zset_members


def _key(model_id: str) -> str:
    return key("model", model_id)


def create(record: ModelRecord) -> None:
    with get_redis().pipeline() as p:
        add_indexed(p, "model", "models", record)
        p.sadd(key("models", "pending"), record["id"])  # awaiting inspection (reconciler)
        p.execute()


def get(model_id: str) -> ModelRecord | None:
    if not is_record_id(model_id):
        return None
    raw = get_redis().hgetall(_key(model_id))
    return cast(ModelRecord, decode(raw)) if raw else None


def _pending_inspection(pipe: redis.client.Pipeline, model_id: str) -> Inspection | None:
    raw = pipe.hget(_key(model_id), "inspection")
    inspection: Inspection | None = json.loads(raw) if raw else None
    return inspection if inspection and inspection.get("status") == "pending" else None


def start_inspection(model_id: str, inspector: str) -> int:
    """Count one more delivery of the model's inspection (by ``inspector``, host:pid);
    0 when the model is gone or its inspection already finished."""
    attempts = 0

    def _tx(pipe: redis.client.Pipeline) -> None:
        nonlocal attempts
        pending = _pending_inspection(pipe, model_id)
        pipe.multi()
        if pending is None:
            attempts = 0
            return
        attempts = int(pending.get("attempts", 0)) + 1
        inspection: Inspection = {**pending, "attempts": attempts, "inspector": inspector}
        pipe.hset(_key(model_id), mapping=encode({"inspection": inspection}))

    get_redis().transaction(_tx, _key(model_id))
    return attempts


def set_inspection(model_id: str, inspection: Inspection) -> bool:
    """Record the inspection's outcome, once: only while it is pending and the model exists
    (a late or repeated inspector never recreates a record nor overwrites an outcome)."""
    done = False

    def _tx(pipe: redis.client.Pipeline) -> None:
        nonlocal done
        pending = _pending_inspection(pipe, model_id)
        pipe.multi()
        done = pending is not None
        if pending is not None:
            outcome: Inspection = {**inspection, "attempts": pending.get("attempts", 0),
                       "finished_at": now_iso()}  # fmt: skip
            pipe.hset(_key(model_id), mapping=encode({"inspection": outcome}))
            pipe.srem(key("models", "pending"), model_id)

    get_redis().transaction(_tx, _key(model_id))
    return done


def pending_ids() -> list[str]:
    """Models still waiting for a worker's inspection."""
    return texts(get_redis().smembers(key("models", "pending")))


def list_ids(tenant: str, limit: int, after: str | None) -> list[str]:
    return page_ids(get_redis(), tenant_index(tenant, "models"), limit, after)


def delete(record: ModelRecord) -> None:
    with get_redis().pipeline() as p:
        remove_indexed(p, "model", "models", record)
        p.srem(key("models", "pending"), record["id"])
        p.execute()


def all_ids() -> list[str]:
    """Every model of every tenant (maintenance: the sweeper)."""
    return zset_members(key("models"))

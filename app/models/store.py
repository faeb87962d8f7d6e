"""Model records in Redis: ``<prefix>:model:<id>`` hashes, a ``<prefix>:models`` index of all
models (for maintenance) and a ``<prefix>:tenant:<t>:models`` index per tenant (for listing)."""

from __future__ import annotations

from typing import Any

from app.records import decode, encode, now_iso, now_ms, page_ids
from app.redis_client import get_redis, key, tenant_index


def _key(model_id: str) -> str:
    return key("model", model_id)


def create(record: dict[str, Any]) -> None:
    r = get_redis()
    score = now_ms()
    with r.pipeline() as p:
        p.hset(_key(record["id"]), mapping=encode(record))
        p.zadd(key("models"), {record["id"]: score})
        p.zadd(tenant_index(record["tenant"], "models"), {record["id"]: score})
        p.sadd(key("models", "pending"), record["id"])  # awaiting inspection (reconciler)
        p.execute()


def get(model_id: str) -> dict[str, Any] | None:
    raw = get_redis().hgetall(_key(model_id))
    return decode(raw) if raw else None


def set_inspection(model_id: str, inspection: dict[str, Any]) -> None:
    if not get_redis().exists(_key(model_id)):
        return
    inspection = {**inspection, "finished_at": now_iso()}
    get_redis().hset(_key(model_id), mapping=encode({"inspection": inspection}))
    get_redis().srem(key("models", "pending"), model_id)


def pending_ids() -> list[str]:
    """Models still waiting for a worker's inspection."""
    return list(get_redis().smembers(key("models", "pending")))


def list_ids(tenant: str, limit: int, after: str | None) -> list[str]:
    return page_ids(get_redis(), tenant_index(tenant, "models"), limit, after)


def delete(record: dict[str, Any]) -> None:
    r = get_redis()
    with r.pipeline() as p:
        p.delete(_key(record["id"]))
        p.zrem(key("models"), record["id"])
        p.zrem(tenant_index(record["tenant"], "models"), record["id"])
        p.srem(key("models", "pending"), record["id"])
        p.execute()


def all_ids() -> list[str]:
    """Every model of every tenant (maintenance: the sweeper)."""
    return list(get_redis().zrange(key("models"), 0, -1))

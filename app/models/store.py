"""Model records in Redis: ``<prefix>:model:<id>`` hashes and a ``<prefix>:models`` index."""

from __future__ import annotations

from typing import Any

from app.records import decode, encode, now_iso, now_ms, page_ids
from app.redis_client import get_redis, key


def _key(model_id: str) -> str:
    return key("model", model_id)


def create(record: dict[str, Any]) -> None:
    r = get_redis()
    with r.pipeline() as p:
        p.hset(_key(record["id"]), mapping=encode(record))
        p.zadd(key("models"), {record["id"]: now_ms()})
        p.execute()


def get(model_id: str) -> dict[str, Any] | None:
    raw = get_redis().hgetall(_key(model_id))
    return decode(raw) if raw else None


def set_inspection(model_id: str, inspection: dict[str, Any]) -> None:
    if not get_redis().exists(_key(model_id)):
        return
    inspection = {**inspection, "finished_at": now_iso()}
    get_redis().hset(_key(model_id), mapping=encode({"inspection": inspection}))


def list_ids(limit: int, after: str | None) -> list[str]:
    return page_ids(get_redis(), key("models"), limit, after)

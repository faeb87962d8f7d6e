"""Dataset records in Redis: ``<prefix>:dataset:<id>`` hashes and a ``<prefix>:datasets`` index."""

from __future__ import annotations

from typing import Any

from app.records import decode, encode, now_ms, page_ids
from app.redis_client import get_redis, key


def _key(dataset_id: str) -> str:
    return key("dataset", dataset_id)


def create(record: dict[str, Any]) -> None:
    r = get_redis()
    with r.pipeline() as p:
        p.hset(_key(record["id"]), mapping=encode(record))
        p.zadd(key("datasets"), {record["id"]: now_ms()})
        p.execute()


def get(dataset_id: str) -> dict[str, Any] | None:
    raw = get_redis().hgetall(_key(dataset_id))
    return decode(raw) if raw else None


def list_ids(limit: int, after: str | None) -> list[str]:
    return page_ids(get_redis(), key("datasets"), limit, after)

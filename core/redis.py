"""The Redis connection that holds every record (the source of truth) and its key names."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, cast

import redis

from core.records import encode, now_ms
from core.settings import get_settings


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    s = get_settings()
    return redis.Redis.from_url(s.redis_url, decode_responses=True, health_check_interval=30)


def key(*parts: str) -> str:
    """A key under this deployment's prefix, e.g. ``prunekit:job:<id>``."""
    return ":".join((get_settings().key_prefix, *parts))


def zset_members(name: str, start: int = 0, end: int = -1) -> list[str]:
    """Members of a sorted set, lowest score first (an index's ids, oldest first)."""
    return cast(list[str], get_redis().zrange(name, start, end))


def zset_scores(name: str) -> dict[str, float]:
    """Every member of a sorted set with its score."""
    pairs = cast(list[tuple[str, float]], get_redis().zrange(name, 0, -1, withscores=True))
    return dict(pairs)


def tenant_index(tenant: str, plural: str) -> str:
    """The per-tenant sorted-set index of a resource, e.g. ``<prefix>:tenant:acme:models``."""
    return key("tenant", tenant, plural)


def add_indexed(pipe: redis.client.Pipeline, kind: str, plural: str, record: Any) -> None:
    """Queue a new record's hash (``<prefix>:<kind>:<id>``, fields JSON-encoded) and its two
    indexes, all of them (``<prefix>:<plural>``) and its tenant's, scored by creation time."""
    score = now_ms()
    pipe.hset(key(kind, record["id"]), mapping=encode(record))
    pipe.zadd(key(plural), {record["id"]: score})
    pipe.zadd(tenant_index(record["tenant"], plural), {record["id"]: score})


def remove_indexed(pipe: redis.client.Pipeline, kind: str, plural: str, record: Any) -> None:
    """Queue the removal of a record's hash and its entries in both indexes."""
    pipe.delete(key(kind, record["id"]))
    pipe.zrem(key(plural), record["id"])
    pipe.zrem(tenant_index(record["tenant"], plural), record["id"])

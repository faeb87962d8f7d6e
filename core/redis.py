"""The Redis connection that holds every record (the source of truth) and its key names."""

from __future__ import annotations

from functools import lru_cache
from typing import cast

import redis

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

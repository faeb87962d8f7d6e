"""The Redis connection that holds every record (the source of truth) and its key names."""

from __future__ import annotations

from functools import lru_cache

import redis

from core.settings import get_settings


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    s = get_settings()
    return redis.Redis.from_url(s.redis_url, decode_responses=True, health_check_interval=30)


def key(*parts: str) -> str:
    """A key under this deployment's prefix, e.g. ``prunekit:job:<id>``."""
    return ":".join((get_settings().key_prefix, *parts))


def tenant_index(tenant: str, plural: str) -> str:
    """The per-tenant sorted-set index of a resource, e.g. ``<prefix>:tenant:acme:models``."""
    return key("tenant", tenant, plural)

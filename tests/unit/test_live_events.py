"""The SSE generator against a scripted event log: order, keep-alive, end, lost Redis."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from app.jobs import live_events
from core.embedded_redis import start_embedded
from core.jobs import store


def _collect(job_id: str, start: int = 0, **kw: Any) -> list[str]:
    async def run() -> list[str]:
        return [m async for m in live_events.stream(job_id, start, poll_s=0.01, **kw)]

    return anyio.run(run)


def _event(seq: int, kind: str, **data: Any) -> dict[str, Any]:
    return {"seq": seq, "at": "t", "type": kind, "message": None, "data": data}


def test_stream_sends_events_keepalive_then_ends_at_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = [_event(0, "status", status="queued")]
    polls = {"n": 0}

    def events(job_id: str, start: int = 0) -> list[dict[str, Any]]:
        polls["n"] += 1
        if polls["n"] == 3:  # the job moves on between polls
            log.append(_event(1, "phase", fraction=0.5))
        if polls["n"] == 5:
            log.append(_event(2, "status", status="succeeded"))
            log.append(_event(3, "message", late=True))  # never sent: after the terminal one
        return log[start:]

    monkeypatch.setattr(store, "events", events)
    monkeypatch.setattr(store, "status", lambda job_id: "running")
    out = _collect("j", keepalive_s=0)
    sent = [m for m in out if m.startswith("id:")]
    assert [json.loads(m.split("data: ", 1)[1])["seq"] for m in sent] == [0, 1, 2]
    assert sent[1].startswith("id: 1\nevent: phase\n")
    assert ": keep-alive\n\n" in out


def test_lost_redis_ends_the_stream_with_an_error_event(monkeypatch: pytest.MonkeyPatch) -> None:
    def events(job_id: str, start: int = 0) -> list[dict[str, Any]]:
        raise redis.ConnectionError("Connection closed by server.")

    monkeypatch.setattr(store, "events", events)
    monkeypatch.setattr(store, "status", lambda job_id: "running")
    out = _collect("j")
    assert out[-1].startswith("event: error\n")
    assert "unreachable" in out[-1]


def test_deleted_job_and_resume_after_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "events", lambda job_id, start=0: [])
    monkeypatch.setattr(store, "status", lambda job_id: None)
    assert _collect("j")[-1].startswith("event: error\n")
    monkeypatch.setattr(store, "status", lambda job_id: "succeeded")
    assert _collect("j", start=7) == ["retry: 1000\n\n"]


def test_resume_from_last_event_id() -> None:
    assert live_events.resume_from("4", 0) == 5
    assert live_events.resume_from(None, 3) == 3
    assert live_events.resume_from("garbage", 2) == 2


def test_a_real_redis_dying_mid_stream_ends_it_with_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = start_embedded(tmp_path, appendonly=False)
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        monkeypatch.setattr(store, "get_redis", lambda: client)
        store.create({"id": "job1", "tenant": "t", "status": "running"})

        async def run() -> list[str]:
            out: list[str] = []
            with anyio.fail_after(20):  # a hang fails the test
                async for message in live_events.stream("job1", 0, poll_s=0.05):
                    out.append(message)
                    if message.startswith("id: 0"):
                        server.process.kill()  # Redis goes away after the first event
            return out

        out = anyio.run(run)
    finally:
        server.stop()
    assert out[1].startswith("id: 0\nevent: status\n")
    assert out[-1].startswith("event: error\n") and "unreachable" in out[-1]


def test_a_store_that_stops_answering_ends_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    def hang(job_id: str) -> str:
        time.sleep(1)  # a store that hangs: the slowness is what is tested
        return "running"

    monkeypatch.setattr(store, "status", hang)
    monkeypatch.setattr(live_events, "STORE_TIMEOUT_S", 0.2)
    out = _collect("j")
    assert out[-1].startswith("event: error\n") and "TimeoutError" in out[-1]

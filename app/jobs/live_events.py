"""A job's events as a Server-Sent Events stream (``Accept: text/event-stream``).

Each event of the job's log (:func:`core.jobs.store.events`) becomes one SSE message: ``id``
is the event's ``seq``, ``event`` its type (``status``, ``phase``, ``message``...), ``data``
the event as JSON (the same object the JSON list holds). The stream polls the log every
``POLL_S`` seconds from a thread (Redis calls never block the event loop), sends a comment
line every ``PRUNEKIT_SSE_KEEPALIVE_S`` seconds without events so proxies keep it open, and
ends after the job's terminal status event. A client resumes with ``Last-Event-ID`` (the
last ``seq`` it saw): the stream starts at the next event. A lost Redis connection, or the
job being deleted meanwhile, ends the stream with one ``error`` event; so does a poll of Redis
that takes longer than ``STORE_TIMEOUT_S`` (a server that stopped answering).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import redis
from starlette.concurrency import run_in_threadpool

from core.jobs import store

POLL_S = 0.25
STORE_TIMEOUT_S = 10.0  # one poll of the event store longer than this ends the stream
DEFAULT_KEEPALIVE_S = 15.0
MEDIA_TYPE = "text/event-stream"


def keepalive_seconds() -> float:
    raw = os.environ.get("PRUNEKIT_SSE_KEEPALIVE_S")
    return float(raw) if raw else DEFAULT_KEEPALIVE_S


def wants_stream(accept: str | None) -> bool:
    return accept is not None and MEDIA_TYPE in accept.lower()


def resume_from(last_event_id: str | None, start: int) -> int:
    """The first seq to send: after ``Last-Event-ID`` when it is a seq, else ``start``."""
    if last_event_id is not None and last_event_id.strip().isdigit():
        return max(start, int(last_event_id.strip()) + 1)
    return start


def format_event(event: dict[str, Any]) -> str:
    return f"id: {event['seq']}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"


def format_error(message: str) -> str:
    return f"event: error\ndata: {json.dumps({'type': 'error', 'message': message})}\n\n"


def is_terminal(event: dict[str, Any]) -> bool:
    return event.get("type") == "status" and (event.get("data") or {}).get("status") in (
        store.FINISHED
    )


async def stream(
    job_id: str, start: int, keepalive_s: float | None = None, poll_s: float = POLL_S
) -> AsyncIterator[str]:
    """SSE messages of ``job_id``'s events from seq ``start`` until its terminal event."""
    keepalive = keepalive_seconds() if keepalive_s is None else keepalive_s
    next_seq = start
    last_sent = time.monotonic()
    yield "retry: 1000\n\n"
    while True:
        try:
            with anyio.fail_after(STORE_TIMEOUT_S):  # a Redis that stops answering
                status = await run_in_threadpool(store.status, job_id)
                # read after the status: a terminal status's event is already in the log
                batch = await run_in_threadpool(store.events, job_id, next_seq)
        except (redis.RedisError, TimeoutError) as exc:
            yield format_error(
                f"the event store is unreachable ({type(exc).__name__}); "
                "reconnect with Last-Event-ID to resume"
            )
            return
        for event in batch:
            yield format_event(event)
            next_seq = event["seq"] + 1
            last_sent = time.monotonic()
            if is_terminal(event):
                return
        if not batch:
            if status is None:  # deleted while we watched
                yield format_error(f"job {job_id} no longer exists")
                return
            if status in store.FINISHED:
                return  # resumed after the terminal event: nothing more will come
            if time.monotonic() - last_sent >= keepalive:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()
            await anyio.sleep(poll_s)

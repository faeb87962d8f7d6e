"""Per request: an ``X-Request-ID`` (the client's when it is a sane token, else a new one),
echoed on the response; one JSON log line (method, route template, status, duration,
tenant, request id); and the request counter and latency histogram of ``/metrics``.

A pure ASGI middleware, so streamed responses (Server-Sent Events) pass through untouched
and are measured until their last byte. The tenant is noted by the authentication
dependency (:func:`note_tenant`) in a per-request holder shared through a context variable.
"""

from __future__ import annotations

import re
import time
import uuid
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability import metrics
from core.observability import logs

HEADER = "x-request-id"
SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

_current: ContextVar[dict[str, Any] | None] = ContextVar("prunekit_request", default=None)


def note_tenant(tenant: str) -> None:
    """Called once the caller is known: the request's log line names its tenant."""
    holder = _current.get()
    if holder is not None:
        holder["tenant"] = tenant


def current_request_id() -> str | None:
    holder = _current.get()
    return holder["request_id"] if holder is not None else None


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == HEADER.encode():
            text = value.decode("latin-1").strip()
            return text if SANE_ID.fullmatch(text) else None
    return None


class RequestTelemetry:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or uuid.uuid4().hex
        holder: dict[str, Any] = {"request_id": request_id, "tenant": None}
        token = _current.set(holder)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _current.reset(token)
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            labels = (scope["method"], route, str(status))
            metrics.REQUESTS.labels(*labels).inc()
            metrics.LATENCY.labels(*labels).observe(seconds)
            logs.emit(
                "request",
                method=scope["method"],
                route=route,
                path=scope.get("path"),
                status=status,
                duration_ms=round(seconds * 1000, 2),
                tenant=holder["tenant"],
                request_id=request_id,
            )

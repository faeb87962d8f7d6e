"""Read deadlines for uvicorn: a client that sends its request slowly is cut off.

uvicorn closes an idle keep-alive connection (``--timeout-keep-alive``), but a connection
that sends part of its headers, or declares a body and sends a little of it, stays open for
ever. These protocol classes (uvicorn's own, plus deadlines) close it:

* headers: the request line and headers must arrive within ``PRUNEKIT_HEADER_TIMEOUT``
  seconds of the first byte (or of the connection); more bytes do not extend the deadline;
* body: while a body is being received, ``PRUNEKIT_BODY_TIMEOUT`` seconds without a byte
  close the connection (not while the application itself has paused reading).

Once the request is read, the application takes the time it needs. :mod:`app.launcher`
selects the class with ``--http app.slow_clients:<class>``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from core.settings import get_settings

log = logging.getLogger("prunekit.api")


class ReadDeadlines:
    """Mixin over a uvicorn HTTP protocol (httptools or h11)."""

    cycle: Any
    flow: Any
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for: str | None = None
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _phase(self) -> str:
        """``headers`` (waiting for a request), ``body`` (receiving one) or ``app``."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return "headers"
        return "body" if cycle.more_body else "app"

    def _watch(self) -> None:
        if self.transport.is_closing():
            self._disarm()
            return
        phase = self._phase()
        settings = get_settings()
        if phase == "headers":
            if self._armed_for != "headers":  # a fixed deadline: slow bytes do not extend it
                self._arm("headers", settings.header_timeout)
        elif phase == "body":
            self._arm("body", settings.body_timeout)  # an idle deadline: reset by each byte
        else:
            self._disarm()

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm()
        self._armed_for = phase
        self._timer = self.loop.call_later(seconds, self._expired, phase)

    def _disarm(self) -> None:
        timer: asyncio.TimerHandle | None = getattr(self, "_timer", None)
        if timer is not None:
            timer.cancel()
        self._timer = None
        self._armed_for = None

    def _expired(self, phase: str) -> None:
        self._timer = None
        self._armed_for = None
        if self.transport.is_closing():
            return
        if self._phase() != phase:  # moved on meanwhile
            self._watch()
            return
        if phase == "body" and self.flow.read_paused:  # the application is not reading
            self._arm("body", get_settings().body_timeout)
            return
        log.warning("closing a connection that was too slow sending its request %s", phase)
        self.transport.close()


class GuardedH11Protocol(ReadDeadlines, H11Protocol):
    pass


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpToolsProtocol(ReadDeadlines, HttpToolsProtocol):
        pass

    DEFAULT_PROTOCOL = "app.slow_clients:GuardedHttpToolsProtocol"
except ImportError:  # pragma: no cover - uvicorn[standard] brings httptools
    DEFAULT_PROTOCOL = "app.slow_clients:GuardedH11Protocol"

"""The engine's progress reporter, written into the job record as the job runs."""

from __future__ import annotations

import time
from typing import Any

from app.jobs import store
from prunekit.errors import CancelledError

MIN_INTERVAL_S = 0.5  # progress writes are throttled; phase changes are always written


class JobReporter:
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.phase_name = "starting"
        self._last_write = 0.0

    def phase(self, name: str, fraction: float = 0.0, **detail: Any) -> None:
        self.check_cancelled()
        self.phase_name = name
        progress = {"phase": name, "fraction": round(min(max(fraction, 0.0), 1.0), 4)}
        if detail:
            progress["detail"] = detail
        store.update(self.job_id, progress=progress)
        store.add_event(self.job_id, "phase", name, fraction=progress["fraction"], **detail)
        self._last_write = time.monotonic()

    def progress(self, fraction: float, **detail: Any) -> None:
        now = time.monotonic()
        if now - self._last_write < MIN_INTERVAL_S:
            return
        self._last_write = now
        self.check_cancelled()
        progress: dict[str, Any] = {
            "phase": self.phase_name,
            "fraction": round(min(max(fraction, 0.0), 1.0), 4),
        }
        if detail:
            progress["detail"] = detail
        store.update(self.job_id, progress=progress)

    def event(self, message: str, level: str = "info", **detail: Any) -> None:
        store.add_event(self.job_id, "message", message, level=level, **detail)

    def check_cancelled(self) -> None:
        """Raise :class:`CancelledError` once ``POST /v1/jobs/{id}/cancel`` asked to stop.

        One Redis read; the engine calls it between phases and batches, and every phase
        change and progress write here checks too."""
        if store.status(self.job_id) in ("cancelling", "cancelled"):
            raise CancelledError("the job was cancelled on request")

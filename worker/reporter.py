"""The engine's progress reporter, written into the job record as the job runs.

Every write carries the job's fence: once the lease is lost (or the job deleted) a write is
refused and the reporter raises :class:`~core.jobs.store.LeaseLostError`, which stops the
engine at its next progress call, so a late worker writes nothing more."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from core.jobs import deadlines, store
from core.observability import counters, logs
from core.webhooks import dispatch
from prunekit.errors import CancelledError

MIN_INTERVAL_S = 0.5  # progress writes are throttled; phase changes are always written


class JobReporter:
    def __init__(
        self,
        job_id: str,
        fence: store.Fence | None = None,
        log_fields: dict[str, Any] | None = None,
    ) -> None:
        self.job_id = job_id
        self.fence = fence
        self.log_fields = log_fields or {}  # tenant and request id for the JSON phase log
        self.phase_name = "starting"
        self._last_write = 0.0
        record: Mapping[str, Any] = store.get(job_id) or {}
        self._deadline = deadlines.deadline_epoch(record)
        self._deadline_reason = deadlines.explanation(record)
        self._progress_hook = dispatch.wants(record, "progress")

    def phase(self, name: str, fraction: float = 0.0, **detail: Any) -> None:
        self.check_cancelled()
        self.phase_name = name
        progress = {"phase": name, "fraction": round(min(max(fraction, 0.0), 1.0), 4)}
        if detail:
            progress["detail"] = detail
        self._check(store.update(self.job_id, fence=self.fence, progress=progress))
        self._check(
            store.add_event(
                self.job_id, "phase", name, fence=self.fence, fraction=progress["fraction"],
                **detail,
            )
        )  # fmt: skip
        self._last_write = time.monotonic()
        logs.emit("job_phase", job_id=self.job_id, phase=name, **self.log_fields)
        counters.record_worker_memory()
        if self._progress_hook:
            dispatch.progress(self.job_id)

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
        self._check(store.update(self.job_id, fence=self.fence, progress=progress))
        if self._progress_hook:
            dispatch.progress(self.job_id)

    def event(self, message: str, level: str = "info", **detail: Any) -> None:
        self._check(
            store.add_event(self.job_id, "message", message, fence=self.fence, level=level,
                            **detail)
        )  # fmt: skip

    def _check(self, written: bool) -> None:
        if not written:
            raise store.LeaseLostError(
                f"job {self.job_id}: its lease is gone (taken over or deleted); stopping"
            )

    def check_cancelled(self) -> None:
        """Raise :class:`CancelledError` once ``POST /v1/jobs/{id}/cancel`` asked to stop.

        One Redis read; the engine calls it between phases and batches, and every phase
        change and progress write here checks too. Past the job's deadline it raises
        :class:`~core.jobs.deadlines.DeadlineExceededError` (a ``CancelledError``)."""
        if self._deadline is not None and time.time() >= self._deadline:
            raise deadlines.DeadlineExceededError(self._deadline_reason)
        if store.status(self.job_id) in ("cancelling", "cancelled"):
            raise CancelledError("the job was cancelled on request")

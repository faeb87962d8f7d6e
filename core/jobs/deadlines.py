"""Job deadlines: ``Cancel-After`` or ``deadline_seconds``, counted from submission.

A job past its deadline is cancelled cleanly, whatever it is doing: the worker's reporter
raises :class:`DeadlineExceededError` at its next check (between batches and phases), a
worker picking up a queued job past it cancels it instead of running it, and the reconciler
cancels queued ones (or asks running ones to stop) on each pass.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from core.jobs import store
from core.jobs.status import JobStatus
from core.records import JobHandling, JobRecord, now_iso
from prunekit.errors import CancelledError


class DeadlineExceededError(CancelledError):
    """The job ran past its deadline."""


def job_fields(deadline_seconds: float | None) -> JobHandling:
    if deadline_seconds is None:
        return {}
    at = datetime.fromtimestamp(time.time() + deadline_seconds, UTC)
    iso = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"deadline_seconds": deadline_seconds, "deadline_at": iso}


def deadline_epoch(record: Mapping[str, Any]) -> float | None:
    at = record.get("deadline_at")
    return datetime.fromisoformat(at).timestamp() if at else None


def expired(record: Mapping[str, Any], now: float | None = None) -> bool:
    epoch = deadline_epoch(record)
    return epoch is not None and (time.time() if now is None else now) >= epoch


def explanation(record: Mapping[str, Any]) -> str:
    return (
        f"the job ran past its deadline of {record.get('deadline_seconds')} s from submission "
        "(Cancel-After / deadline_seconds)"
    )


def error(record: Mapping[str, Any]) -> dict[str, str]:
    return {"reason": "deadline_exceeded", "message": explanation(record)}


def cancel_expired(record: JobRecord) -> bool:
    """Cancel a queued job past its deadline at once, ask a running one to stop; whether
    the job's status changed."""
    why = explanation(record)
    if store.transition(
        record["id"], JobStatus.CANCELLED.value, {JobStatus.QUEUED.value},
        message=f"cancelled: {why}", error=error(record), finished_at=now_iso(),
    ):  # fmt: skip
        return True
    return store.transition(
        record["id"], JobStatus.CANCELLING.value, {JobStatus.RUNNING.value},
        message=f"cancel requested: {why}",
    )  # fmt: skip

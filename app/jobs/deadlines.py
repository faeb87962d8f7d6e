"""Job deadlines: ``Cancel-After`` or ``deadline_seconds``, counted from submission.

A job past its deadline is cancelled cleanly, whatever it is doing: the worker's reporter
raises :class:`DeadlineExceededError` at its next check (between batches and phases), a
worker picking up a queued job past it cancels it instead of running it, and the reconciler
cancels queued ones (or asks running ones to stop) on each pass.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from app.jobs import store
from app.jobs.schemas import MAX_DEADLINE_S, JobStatus
from app.problems import validation_problem
from app.records import now_iso
from prunekit.errors import CancelledError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class DeadlineExceededError(CancelledError):
    """The job ran past its deadline."""


def parse_cancel_after(raw: str) -> float:
    """Seconds from a ``Cancel-After`` value: a number of seconds (``90``, ``1.5``) or a
    duration (``5m``, ``1h30m``, ``500ms``); 422 naming the header otherwise."""
    text = raw.strip()
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            seconds = -1.0
        else:
            seconds = sum(float(n) * _UNIT_S[u] for n, u in parts)
    if not 0 < seconds <= MAX_DEADLINE_S:
        errors = [{
            "field": "header.Cancel-After",
            "message": "must be seconds (e.g. 90) or a duration (e.g. 5m, 1h30m), more than 0 "
            f"and at most {MAX_DEADLINE_S} s",
            "type": "value_error",
        }]  # fmt: skip
        raise validation_problem(errors, errors[0]["message"])
    return seconds


def job_fields(deadline_seconds: float | None) -> dict[str, Any]:
    if deadline_seconds is None:
        return {}
    at = datetime.fromtimestamp(time.time() + deadline_seconds, UTC)
    iso = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"deadline_seconds": deadline_seconds, "deadline_at": iso}


def deadline_epoch(record: dict[str, Any]) -> float | None:
    at = record.get("deadline_at")
    return datetime.fromisoformat(at).timestamp() if at else None


def expired(record: dict[str, Any], now: float | None = None) -> bool:
    epoch = deadline_epoch(record)
    return epoch is not None and (time.time() if now is None else now) >= epoch


def explanation(record: dict[str, Any]) -> str:
    return (
        f"the job ran past its deadline of {record.get('deadline_seconds')} s from submission "
        "(Cancel-After / deadline_seconds)"
    )


def error(record: dict[str, Any]) -> dict[str, str]:
    return {"reason": "deadline_exceeded", "message": explanation(record)}


def cancel_expired(record: dict[str, Any]) -> bool:
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

"""A job's status: the states of the job record (what the API shows and the worker moves)."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"  # cancel asked while running; the worker stops at its next check
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
MAX_DEADLINE_S = 30 * 24 * 3600  # the longest deadline a job may ask for

"""How the engine tells its caller what it is doing.

The engine calls a :class:`Reporter` at phase changes and during long loops; the worker
implements it on top of the job record, a CLI could draw progress bars with it.
"""

from __future__ import annotations

from typing import Any, Protocol


class Reporter(Protocol):
    def phase(self, name: str, fraction: float = 0.0, **detail: Any) -> None:
        """A new phase starts (``fraction`` is the whole job's progress, 0..1)."""

    def progress(self, fraction: float, **detail: Any) -> None:
        """Progress inside the current phase; ``detail`` holds e.g. epoch, step, loss."""

    def event(self, message: str, level: str = "info", **detail: Any) -> None:
        """Something the user should read in the job's event log."""

    def check_cancelled(self) -> None:
        """Raise :class:`prunekit.errors.CancelledError` if the job was cancelled."""


class NullReporter:
    """A reporter that drops everything (library use, tests)."""

    def phase(self, name: str, fraction: float = 0.0, **detail: Any) -> None:
        pass

    def progress(self, fraction: float, **detail: Any) -> None:
        pass

    def event(self, message: str, level: str = "info", **detail: Any) -> None:
        pass

    def check_cancelled(self) -> None:
        pass


class RecordingReporter(NullReporter):
    """Keeps every call in order; useful in tests and for a CLI's final summary."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def phase(self, name: str, fraction: float = 0.0, **detail: Any) -> None:
        self.calls.append(("phase", {"name": name, "fraction": fraction, **detail}))

    def progress(self, fraction: float, **detail: Any) -> None:
        self.calls.append(("progress", {"fraction": fraction, **detail}))

    def event(self, message: str, level: str = "info", **detail: Any) -> None:
        self.calls.append(("event", {"message": message, "level": level, **detail}))

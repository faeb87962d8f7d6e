"""One JSON object per line for requests and job phases, in the API and the workers.

``emit("request", method=..., route=..., status=...)`` writes
``{"ts": ..., "kind": "request", ...}`` straight to the process's standard error (file
descriptor 2, one ``write`` per line so concurrent processes never interleave a line): not
through :mod:`logging`, whose format (and, in Celery workers, the redirection of
``sys.stderr`` into the task logger) would prefix the line and stop it parsing as JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from core.records import now_iso

STDERR_FD = 2


def emit(kind: str, **fields: Any) -> None:
    line = json.dumps({"ts": now_iso(), "kind": kind, **fields}, default=str) + "\n"
    with contextlib.suppress(OSError):  # a closed stderr never fails a request or a job
        os.write(STDERR_FD, line.encode())

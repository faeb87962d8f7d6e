"""The ``Cancel-After`` request header: a job's deadline, parsed (422 naming the header)."""

from __future__ import annotations

import re

from app.problems import validation_problem
from core.jobs.status import MAX_DEADLINE_S

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


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

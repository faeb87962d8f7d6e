"""Measured throughput of finished jobs, per strategy, for a dry run's duration estimate.

When a job succeeds the worker records its wall time per parameter of the model
(``seconds / parameters``) in ``<prefix>:throughput:<strategy>``, a Redis list of the newest
``KEEP`` figures. A dry run multiplies their median by the model's parameter count.
"""

from __future__ import annotations

import statistics
from typing import Any

from core.redis import get_redis, key

KEEP = 20


def _key(strategy: str) -> str:
    return key("throughput", strategy)


def record(strategy: str, seconds: float, parameters: int) -> None:
    if seconds <= 0 or parameters <= 0:
        return
    with get_redis().pipeline() as p:
        p.lpush(_key(strategy), repr(seconds / parameters))
        p.ltrim(_key(strategy), 0, KEEP - 1)
        p.execute()


def estimate(strategy: str, parameters: int) -> dict[str, Any]:
    """Expected wall seconds for a model of ``parameters`` under ``strategy``, from the
    median seconds-per-parameter of its recent jobs; ``no history`` when none finished."""
    figures = [float(v) for v in get_redis().lrange(_key(strategy), 0, KEEP - 1)]
    if not figures:
        return {"seconds": None, "basis": "no history", "jobs": 0}
    per_param = statistics.median(figures)
    return {
        "seconds": round(per_param * parameters, 3),
        "basis": f"median seconds per parameter of the last {len(figures)} {strategy} jobs "
        "times this model's parameters",
        "jobs": len(figures),
        "seconds_per_parameter": per_param,
    }

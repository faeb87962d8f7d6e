"""The dry run's duration estimate from recorded throughput."""

from __future__ import annotations

import uuid

import pytest

from core.jobs import throughput


@pytest.mark.redis
def test_no_history_then_median_of_recorded_jobs() -> None:
    strategy = f"never-run-{uuid.uuid4().hex[:8]}"
    assert throughput.estimate(strategy, 1000) == {
        "seconds": None, "basis": "no history", "jobs": 0,
    }  # fmt: skip
    for seconds in (1.0, 3.0, 100.0):  # per 1000 parameters: median 3 ms per parameter
        throughput.record(strategy, seconds, 1000)
    throughput.record(strategy, 0.0, 1000)  # ignored: no time measured
    est = throughput.estimate(strategy, 2000)
    assert est["jobs"] == 3
    assert est["seconds"] == pytest.approx(6.0)

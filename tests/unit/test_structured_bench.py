"""bench/structured_vgg.py: whether re-runs of the latency measurement agree."""

from __future__ import annotations

from bench.structured_vgg import intervals_overlap


def _run(lo: float, hi: float) -> dict:
    return {"speedups_b32": {"filter_l1": {"litert": {"ci95": [lo, hi]}}}}


def test_intervals_overlap_needs_one_common_point() -> None:
    assert intervals_overlap([_run(3.1, 3.4), _run(3.3, 3.6), _run(3.2, 3.35)]) == {
        "filter_l1": {"litert": True}
    }
    # pairwise overlapping is not enough: 3.1-3.3 and 3.35-3.5 share nothing
    assert intervals_overlap([_run(3.1, 3.3), _run(3.2, 3.5), _run(3.35, 3.5)]) == {
        "filter_l1": {"litert": False}
    }
    assert intervals_overlap([_run(2.0, 2.2)])["filter_l1"]["litert"] is True

"""A fast sample of the coverage suite (bench/coverage.py): the same checks, a small model.

The SavedModel side and the other constructors are the suite's (too slow for the tests)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import keras

from bench.coverage import run_one


def test_small_applications_prune_reload_and_match(tmp_path: Path) -> None:
    rows = run_one(
        "MobileNet",
        ["keras"],
        ["magnitude", "filter"],
        tmp_path,
        builder=lambda: keras.applications.MobileNet(
            input_shape=(32, 32, 3), alpha=0.25, weights=None, classes=10
        ),
    )
    by = {(r.model, r.format, r.strategy): r for r in rows}
    magnitude = by[("MobileNet", "keras", "magnitude")]
    assert magnitude.status == "ok", magnitude.reason
    assert magnitude.sparsity is not None and 0.75 < magnitude.sparsity < 0.85
    assert magnitude.max_rel_diff is not None and magnitude.max_rel_diff <= 1e-5
    structured = by[("MobileNet", "keras", "filter")]
    assert structured.status == "ok", structured.reason
    assert structured.params_after is not None and structured.params is not None
    assert structured.params_after < structured.params

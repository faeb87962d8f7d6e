"""A fast sample of the coverage suite (bench/coverage.py): the same checks, a small model.

The SavedModel side and the other constructors are the suite's (too slow for the tests)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import keras

from bench.coverage import render, run_one


def test_small_applications_prune_reload_and_match(tmp_path: Path) -> None:
    # nm after magnitude: its check compares with the same loaded original, which the
    # magnitude check masked; it passes only if that original's weights were put back
    rows = run_one(
        "MobileNet",
        ["keras"],
        ["magnitude", "nm", "filter"],
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
    nm = by[("MobileNet", "keras", "nm")]
    assert nm.status == "ok", nm.reason
    structured = by[("MobileNet", "keras", "filter")]
    assert structured.status == "ok", structured.reason
    assert structured.params_after is not None and structured.params is not None
    assert structured.params_after < structured.params


def test_table_tells_design_refusals_from_misses() -> None:
    def row(
        model: str, fmt: str, strategy: str, status: str, reason: str = ""
    ) -> dict[str, object]:
        return {"model": model, "format": fmt, "strategy": strategy, "status": status,
                "reason": reason, "params": 10, "params_after": 5}  # fmt: skip

    why = "keras_graph_required: strategy 'filter' removes whole channels"
    raw = {
        "rows": [
            row("A", "keras", "magnitude", "ok"),
            row("A", "keras", "nm", "ok"),
            row("A", "keras", "filter", "ok"),
            row("A", "saved_model", "magnitude", "ok"),
            row("A", "saved_model", "nm", "failed", "ValueError: boom"),
            row("A", "saved_model", "filter", "refused", why + " (short)"),
            row("B", "saved_model", "filter", "refused", why + " (the whole message)"),
        ]
    }
    text = render(raw, ["A", "B", "C"])
    assert "| A | saved_model | ok | failed | refused by design (no layer graph) |" in text
    misses = text.split("## Every miss and its reason")[1].split("## Beyond")[0]
    assert "- A, saved_model, `nm`: **failed**: ValueError: boom" in misses
    assert "A, saved_model, `filter`: **refused**" not in misses  # not a miss
    assert why + " (the whole message)" in misses  # the longest reason, quoted once
    assert "not run as keras (the suite's time budget): B, C" in misses
    assert "`filter` 1/1 ok (33% of all)" in text
    assert "`filter` refused by design on all 2 run" in text

"""Interleaved A/B timing: a model against itself, and against twice the work."""

from __future__ import annotations

import time

import numpy as np

from prunekit.metrics.timing import (
    TimingConfig,
    bootstrap_median_ci,
    interleaved_speedup,
    sequential_speedup,
    time_runs,
)

RNG = np.random.default_rng(0)
A = RNG.normal(size=(160, 160)).astype(np.float32)


def _work(reps: int):
    def run() -> None:
        x = A
        for _ in range(reps):
            x = np.tanh(x @ A)

    return run


CFG = TimingConfig(warmup=2, min_pairs=15, max_pairs=400, budget_s=4.0, target_rel_halfwidth=0.03)


def test_a_model_timed_against_itself_gives_an_interval_containing_one() -> None:
    fn = _work(6)
    s = interleaved_speedup(fn, fn, CFG)
    assert s.method == "interleaved"
    assert s.ci95[0] <= 1.0 <= s.ci95[1]
    assert s.runs >= CFG.min_pairs
    assert s.a.runs == s.b.runs == s.runs


def test_twice_the_work_gives_an_interval_around_two() -> None:
    s = interleaved_speedup(_work(12), _work(6), CFG)
    lo, hi = s.ci95
    assert 1.7 <= lo <= s.median <= hi <= 2.3, s.as_dict()


def test_the_result_carries_its_context_and_serialises() -> None:
    s = interleaved_speedup(_work(1), _work(1), TimingConfig(min_pairs=5, budget_s=0.2))
    d = s.as_dict()
    assert set(d) >= {"median", "ci95", "runs", "method", "context", "converged"}
    ctx = d["context"]
    assert ctx["logical_cpus"] >= 1 and isinstance(ctx["cpu_model"], str)
    assert "load_avg_1m_start" in ctx and "load_avg_1m_end" in ctx
    assert isinstance(ctx["loaded"], bool)


def test_the_budget_stops_a_run_that_cannot_converge() -> None:
    cfg = TimingConfig(min_pairs=5, max_pairs=10_000, budget_s=0.3, target_rel_halfwidth=0.0)
    s = interleaved_speedup(_work(1), _work(1), cfg)
    assert not s.converged
    assert s.runs < 10_000


def test_bootstrap_interval_of_a_constant_is_that_constant() -> None:
    lo, hi = bootstrap_median_ci(np.full(9, 2.5), np.random.default_rng(0))
    assert lo == hi == 2.5


def test_sequential_speedup_is_the_ratio_of_medians_with_a_wider_method_label() -> None:
    s = sequential_speedup([2.0, 2.2, 1.8, 2.0, 2.1], [1.0, 1.1, 0.9, 1.0, 1.0])
    assert s.method == "sequential"
    assert s.median == 2.0
    assert s.ci95[0] <= 2.0 <= s.ci95[1]


def test_time_runs_makes_at_least_the_minimum() -> None:
    runs = time_runs(_work(1), TimingConfig(warmup=1, min_pairs=4, budget_s=0.0))
    assert len(runs) == 4 and all(r > 0 for r in runs)


def _sleep(seconds: float):
    def run() -> None:
        time.sleep(seconds)

    return run


def test_too_slow_for_the_budget_means_fewer_pairs_and_not_converged() -> None:
    cfg = TimingConfig(
        warmup=1, min_pairs=10, budget_s=0.2, floor_pairs=3, target_rel_halfwidth=0.0
    )
    s = interleaved_speedup(_sleep(0.04), _sleep(0.04), cfg)
    assert s.runs == 3 and not s.converged  # 0.2 s holds 2 pairs of 80 ms: the floor, not 10
    assert s.ci95[0] <= s.median <= s.ci95[1]
    runs = time_runs(
        _sleep(0.04), TimingConfig(warmup=1, min_pairs=10, budget_s=0.1, floor_pairs=4)
    )
    assert len(runs) == 4  # 0.1 s holds 2 runs of 40 ms: the floor


def test_without_a_floor_min_pairs_stays_a_hard_minimum() -> None:
    cfg = TimingConfig(warmup=1, min_pairs=6, budget_s=0.0)
    assert interleaved_speedup(_sleep(0.005), _sleep(0.005), cfg).runs >= 6

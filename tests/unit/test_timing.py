"""Interleaved A/B timing: a model against itself, and against twice the work."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from prunekit.metrics.timing import (
    RESOLUTION,
    OverBudget,
    TimingConfig,
    bootstrap_median_ci,
    interleaved_speedup,
    paired_t_interval,
    pairs_interval,
    sequential_speedup,
    time_runs,
    welch_t_interval,
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


@pytest.mark.timing
def test_a_model_timed_against_itself_gives_an_interval_containing_one() -> None:
    fn = _work(6)
    s = interleaved_speedup(fn, fn, CFG)
    assert s.method == "interleaved"
    assert s.ci95[0] <= 1.0 <= s.ci95[1]
    assert s.runs >= CFG.min_pairs
    assert s.a.runs == s.b.runs == s.runs


# twice the work, robust to load: element-wise numpy runs on one thread (a matrix product's
# BLAS threads stall whenever one of them is preempted on a busy machine), runs of several
# milliseconds (a scheduler tick is small next to them) and at least 31 pairs
V = RNG.normal(size=2**20).astype(np.float32)
TWICE_CFG = TimingConfig(
    warmup=3, min_pairs=31, max_pairs=400, budget_s=8.0, target_rel_halfwidth=0.03
)


def _one_thread_work(reps: int):
    def run() -> None:
        x = V
        for _ in range(reps):
            x = np.sin(x)

    return run


@pytest.mark.timing
def test_twice_the_work_gives_an_interval_around_two() -> None:
    s = interleaved_speedup(_one_thread_work(16), _one_thread_work(8), TWICE_CFG)
    lo, hi = s.ci95
    assert s.b.median_ms > 2.0, s.as_dict()  # a run is several milliseconds
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
    """A model call of a known duration: the sleep is the work being timed."""

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


def test_a_limit_the_shortest_measurement_cannot_fit_is_refused_after_the_warm_up() -> None:
    cfg = TimingConfig(warmup=1, min_pairs=10, budget_s=5.0, floor_pairs=3)
    started = time.perf_counter()
    with pytest.raises(OverBudget) as over:  # a round of 0.1 s; 3 pairs need 0.3 s of 0.25
        interleaved_speedup(_sleep(0.05), _sleep(0.05), cfg, limit_s=0.35)
    assert time.perf_counter() - started < 0.3  # the warm-up round only: nothing was timed
    assert over.value.round_s >= 0.1
    assert over.value.needed_s == pytest.approx(3 * over.value.round_s)
    assert over.value.left_s < over.value.needed_s
    with pytest.raises(OverBudget):
        time_runs(_sleep(0.05), cfg, limit_s=0.15)  # 3 runs of 50 ms need 0.15 s of 0.1


def test_a_limit_that_fits_cuts_the_pairs_budget_to_what_is_left() -> None:
    cfg = TimingConfig(
        warmup=1, min_pairs=3, max_pairs=1000, budget_s=5.0, target_rel_halfwidth=0.0
    )
    started = time.perf_counter()
    s = interleaved_speedup(_sleep(0.01), _sleep(0.01), cfg, limit_s=0.5)
    took = time.perf_counter() - started
    assert s.runs >= 3 and not s.converged
    assert took < 0.5 + 0.1  # the limit, not the 5 s budget, plus at most a pair's overrun


def test_without_a_floor_min_pairs_stays_a_hard_minimum() -> None:
    cfg = TimingConfig(warmup=1, min_pairs=6, budget_s=0.0)
    assert interleaved_speedup(_sleep(0.005), _sleep(0.005), cfg).runs >= 6


def test_paired_t_interval_by_hand() -> None:
    # log-ratios ln2 + (0, 0.1, -0.1): mean ln2, sd 0.1, n 3, t(2) = 4.303
    ratios = 2.0 * np.exp(np.array([0.0, 0.1, -0.1]))
    half = 4.303 * 0.1 / math.sqrt(3)
    lo, hi = paired_t_interval(ratios)
    assert lo == pytest.approx(2.0 * math.exp(-half)) and hi == pytest.approx(2.0 * math.exp(half))


def test_welch_t_interval_by_hand() -> None:
    a = np.exp(np.array([1.0, 1.2, 0.8, 1.0]))  # log mean 1.0, variance 0.08/3
    b = np.exp(np.array([0.5, 0.5, 0.6, 0.4]))  # log mean 0.5, variance 0.02/3
    va, vb = 0.08 / 3 / 4, 0.02 / 3 / 4
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 3)  # 4.41: the table's df 4 entry, 2.776
    assert 4 < df < 5
    half = 2.776 * math.sqrt(va + vb)
    lo, hi = welch_t_interval(a, b)
    assert lo == pytest.approx(math.exp(0.5 - half)) and hi == pytest.approx(math.exp(0.5 + half))


def test_few_pairs_get_the_wider_t_interval_not_the_bootstrap_range() -> None:
    few = np.array([1.0, 1.2, 1.4])  # the bootstrap's interval would be their range
    assert pairs_interval(few, np.random.default_rng(0)) == pytest.approx(paired_t_interval(few))
    lo, hi = paired_t_interval(few)
    assert lo < 0.8 and hi > 1.8  # t(2) = 4.303 on 3 log-ratios
    many = np.linspace(0.9, 1.1, 12)  # enough pairs: the bootstrap alone
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    assert pairs_interval(many, rng_a) == bootstrap_median_ci(many, rng_b)


def test_sequential_with_few_runs_is_widened_to_welch() -> None:
    a, b = [2.0, 2.2, 1.8, 2.0, 2.1], [1.0, 1.1, 0.9, 1.0, 1.0]
    s = sequential_speedup(a, b)
    w_lo, w_hi = welch_t_interval(np.array(a), np.array(b))
    assert s.ci95[0] <= w_lo and s.ci95[1] >= w_hi


def test_no_interval_is_narrower_than_the_timing_resolution() -> None:
    same = np.full(20, 2.0)  # twenty identical ratios: the bootstrap alone says [2.0, 2.0]
    assert bootstrap_median_ci(same, np.random.default_rng(0)) == (2.0, 2.0)
    lo, hi = pairs_interval(same, np.random.default_rng(0))
    assert lo == pytest.approx(2.0 * (1 - RESOLUTION)) and hi == pytest.approx(2.0 * 1.01)
    s = sequential_speedup([2.0] * 12, [1.0] * 12)
    assert s.ci95 == pytest.approx((1.98, 2.02))

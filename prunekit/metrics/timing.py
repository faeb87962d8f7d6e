"""Speed-ups you can trust: interleaved A/B timing with a bootstrap interval.

Two callables (the model before and after pruning, say) are warmed up, then timed in
alternating pairs in one process, with the order inside each pair alternating too (AB, BA,
AB, ...) so that neither side always runs on a warmer cache. The speed-up is the median of
the per-pair ratios ``t_a / t_b``; its 95% interval comes from a bootstrap over the pairs.
Pairs are added until the interval's half-width is within ``target_rel_halfwidth`` of the
median, or the time budget or the pair cap is reached. Background load slows both sides of a
pair alike, so a ratio from pairs moves far less than the ratio of two separate medians.

With few pairs the percentile bootstrap of a median is too narrow (with 3 pairs its
interval is their range: about 75% coverage, not 95%), so below :data:`SMALL_SAMPLE` pairs
the interval is widened to hold the Student-t 95% interval of the mean log-ratio too.

No interval is reported narrower than ±:data:`RESOLUTION` of its median: on a shared CPU two
timings of the very same callable differ systematically by a fraction of a percent (cache
and frequency state), so a tighter claim would be overconfident, and a model timed against
itself must not come out "significantly" faster.

When both sides cannot be held at once, :func:`sequential_speedup` times them one after the
other and bootstraps each side independently: the interval is wider, and says so
(``method: "sequential"``).

Every result carries :func:`timing_context`: load average at start and end, CPU model,
logical CPUs, thread settings. A figure taken under load is flagged (``loaded``).

Pure Python and numpy: no TensorFlow import, so any runtime (TF, LiteRT) can be timed.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

BOOTSTRAP_SAMPLES = 2000
RESOLUTION = 0.01  # the narrowest half-width an interval claims, as a fraction of its median
SMALL_SAMPLE = 10  # below this many pairs (or runs per side) the t interval widens the bootstrap
# Student-t 0.975 quantiles by degrees of freedom (no scipy); above the table, 1.96
T_975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
    9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000,
}  # fmt: skip
LOADED_FRACTION = 0.75  # load average above this share of the logical CPUs flags a figure


@dataclass(frozen=True)
class TimingConfig:
    warmup: int = 2  # untimed runs of each side before the first pair
    min_pairs: int = 7
    max_pairs: int = 300
    budget_s: float = 3.0  # wall-clock time for the timed pairs (at least min_pairs are made)
    # when set, a slow callable lowers min_pairs to what the budget holds (as the last
    # warm-up round predicts), never below this: a big model gets fewer pairs and a wider
    # interval instead of blowing the budget; None keeps min_pairs a hard minimum
    floor_pairs: int | None = None
    target_rel_halfwidth: float = 0.05  # stop once the CI half-width / median is below this
    check_every: int = 4  # pairs between two interval checks
    seed: int = 0


@dataclass
class SideStats:
    median_ms: float
    p90_ms: float
    runs: int

    @classmethod
    def of(cls, seconds: list[float]) -> SideStats:
        ms = sorted(s * 1000.0 for s in seconds)
        return cls(
            median_ms=round(statistics.median(ms), 4),
            p90_ms=round(ms[min(len(ms) - 1, int(0.9 * len(ms)))], 4),
            runs=len(ms),
        )


@dataclass
class Speedup:
    """``a`` over ``b``: ``median`` > 1 means ``b`` is faster."""

    median: float
    ci95: tuple[float, float]
    runs: int  # pairs (interleaved) or runs per side (sequential)
    method: str  # "interleaved" or "sequential"
    rel_halfwidth: float  # the CI's half-width over the median, as reached
    converged: bool  # the target width was reached before the budget ran out
    a: SideStats
    b: SideStats
    context: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ci95"] = [round(self.ci95[0], 4), round(self.ci95[1], 4)]
        out["median"] = round(self.median, 4)
        out["rel_halfwidth"] = round(self.rel_halfwidth, 4)
        return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def timing_context(**extra: Any) -> dict[str, Any]:
    """What a latency figure was measured under (load average is sampled now)."""
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "load_avg_1m_start": _loadavg(),
        **extra,
    }


def _finish_context(ctx: dict[str, Any]) -> dict[str, Any]:
    ctx = dict(ctx)
    ctx["load_avg_1m_end"] = _loadavg()
    cpus = ctx.get("logical_cpus") or 1
    loads = [v for v in (ctx.get("load_avg_1m_start"), ctx["load_avg_1m_end"]) if v is not None]
    ctx["loaded"] = bool(loads) and max(loads) > LOADED_FRACTION * cpus
    return ctx


def bootstrap_median_ci(
    values: np.ndarray, rng: np.random.Generator, samples: int = BOOTSTRAP_SAMPLES
) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the median of ``values``."""
    values = np.asarray(values, dtype=np.float64)
    idx = rng.integers(0, values.size, size=(samples, values.size))
    medians = np.median(values[idx], axis=1)
    lo, hi = np.percentile(medians, [2.5, 97.5])
    return float(lo), float(hi)


def t_quantile_975(df: float) -> float:
    """The Student-t 0.975 quantile for ``df`` degrees of freedom, rounded down to the
    table's nearest entry (a wider interval, never a narrower one)."""
    known = [d for d in T_975 if d <= max(1.0, df)]
    return T_975[max(known)] if df < 120 else 1.96


def _hull(*intervals: tuple[float, float]) -> tuple[float, float]:
    return min(i[0] for i in intervals), max(i[1] for i in intervals)


def paired_t_interval(ratios: np.ndarray) -> tuple[float, float]:
    """95% interval of the geometric-mean ratio (Student t on the log-ratios)."""
    logs = np.log(np.asarray(ratios, dtype=np.float64))
    half = t_quantile_975(logs.size - 1) * logs.std(ddof=1) / np.sqrt(logs.size)
    return float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half))


def welch_t_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """95% interval of the geometric-mean ratio of ``a`` over ``b`` from independent samples
    (Welch's t on the log times)."""
    la, lb = np.log(a), np.log(b)
    va, vb = la.var(ddof=1) / la.size, lb.var(ddof=1) / lb.size
    se = float(np.sqrt(va + vb))
    if se == 0.0:
        d = float(np.exp(la.mean() - lb.mean()))
        return d, d
    df = (va + vb) ** 2 / (va**2 / (la.size - 1) + vb**2 / (lb.size - 1))
    half = t_quantile_975(df) * se
    diff = float(la.mean() - lb.mean())
    return float(np.exp(diff - half)), float(np.exp(diff + half))


def _rel_halfwidth(ci: tuple[float, float], median: float) -> float:
    return (ci[1] - ci[0]) / 2.0 / median if median > 0 else float("inf")


def _clock(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _warm_up(fns: tuple[Callable[[], object], ...], cfg: TimingConfig) -> float | None:
    """Run each callable ``cfg.warmup`` times; the seconds its last round took (None
    without warm-up)."""
    last: float | None = None
    for _ in range(cfg.warmup):
        last = sum(_clock(fn) for fn in fns)
    return last


class OverBudget(Exception):
    """The shortest measurement (``floor_pairs`` rounds, or ``min_pairs`` without a floor)
    would overrun the time left; raised right after the warm-up, which measured a round."""

    def __init__(self, round_s: float, needed_s: float, left_s: float) -> None:
        super().__init__(
            f"one round takes {round_s:.3g} s, the shortest measurement {needed_s:.3g} s; "
            f"{max(left_s, 0.0):.3g} s were left"
        )
        self.round_s = round_s  # one run of each callable, as the last warm-up round took
        self.needed_s = needed_s
        self.left_s = left_s


def shortest_repeats(cfg: TimingConfig) -> int:
    """The fewest pairs (or runs) a measurement makes: ``floor_pairs`` when set."""
    return min(cfg.floor_pairs, cfg.min_pairs) if cfg.floor_pairs is not None else cfg.min_pairs


def _within_limit(
    cfg: TimingConfig, round_s: float | None, started: float, limit_s: float | None
) -> TimingConfig:
    """``cfg`` with its budget cut to what is left of ``limit_s`` seconds since ``started``;
    :class:`OverBudget` when even :func:`shortest_repeats` rounds would not fit."""
    if limit_s is None:
        return cfg
    left = limit_s - (time.perf_counter() - started)
    needed = shortest_repeats(cfg) * (round_s or 0.0)
    if needed > left:
        raise OverBudget(round_s or 0.0, needed, left)
    return replace(cfg, budget_s=min(cfg.budget_s, max(left, 0.0)))


def _min_repeats(cfg: TimingConfig, round_s: float | None) -> int:
    """``cfg.min_pairs``, lowered (to ``cfg.floor_pairs`` at the least) when rounds that
    take ``round_s`` would not fit ``cfg.budget_s``."""
    if cfg.floor_pairs is None or round_s is None or round_s <= 0:
        return cfg.min_pairs
    fit = int(cfg.budget_s / round_s)
    return max(min(cfg.floor_pairs, cfg.min_pairs), min(cfg.min_pairs, fit))


def _resolved(ci: tuple[float, float], median: float) -> tuple[float, float]:
    """``ci`` widened to at least ±:data:`RESOLUTION` of ``median``."""
    return _hull(ci, (median * (1 - RESOLUTION), median * (1 + RESOLUTION)))


def pairs_interval(ratios: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """The bootstrap interval of the median ratio, widened by :func:`paired_t_interval` (and to
    the median itself) below :data:`SMALL_SAMPLE` pairs, and to the timing resolution."""
    ci = bootstrap_median_ci(ratios, rng)
    med = float(np.median(ratios))
    if 2 <= ratios.size < SMALL_SAMPLE:
        ci = _hull(ci, paired_t_interval(ratios), (med, med))
    return _resolved(ci, med)


def interleaved_speedup(
    a: Callable[[], object],
    b: Callable[[], object],
    cfg: TimingConfig | None = None,
    context: dict[str, Any] | None = None,
    limit_s: float | None = None,
) -> Speedup:
    """Time ``a`` and ``b`` in alternating pairs; the speed-up of ``b`` over ``a``.

    Each callable must finish its work before returning (copy outputs to the host).
    ``limit_s``: seconds the whole call (warm-up included) may take; the pairs' budget is cut
    to what the warm-up left, and :class:`OverBudget` is raised instead of timing when even
    the shortest measurement would not fit.
    """
    cfg = cfg or TimingConfig()
    ctx = context if context is not None else timing_context()
    rng = np.random.default_rng(cfg.seed)
    started = time.perf_counter()
    round_s = _warm_up((a, b), cfg)
    cfg = _within_limit(cfg, round_s, started, limit_s)
    min_pairs = _min_repeats(cfg, round_s)
    ta: list[float] = []
    tb: list[float] = []
    deadline = time.perf_counter() + cfg.budget_s
    ci: tuple[float, float] = (0.0, float("inf"))
    converged = False
    while len(ta) < cfg.max_pairs:
        if len(ta) % 2 == 0:
            ta.append(_clock(a))
            tb.append(_clock(b))
        else:
            tb.append(_clock(b))
            ta.append(_clock(a))
        n = len(ta)
        if n < min_pairs:
            continue
        if n % cfg.check_every == 0 or time.perf_counter() >= deadline:
            ratios = np.asarray(ta) / np.asarray(tb)
            ci = pairs_interval(ratios, rng)
            if _rel_halfwidth(ci, float(np.median(ratios))) <= cfg.target_rel_halfwidth:
                converged = True
                break
            if time.perf_counter() >= deadline:
                break
    ratios = np.asarray(ta) / np.asarray(tb)
    med = float(np.median(ratios))
    ci = pairs_interval(ratios, rng)
    return Speedup(
        median=med,
        ci95=ci,
        runs=len(ratios),
        method="interleaved",
        rel_halfwidth=_rel_halfwidth(ci, med),
        converged=converged,
        a=SideStats.of(ta),
        b=SideStats.of(tb),
        context=_finish_context(ctx),
    )


def time_runs(
    fn: Callable[[], object], cfg: TimingConfig | None = None, limit_s: float | None = None
) -> list[float]:
    """Warm ``fn`` up, then time it ``min_pairs``..``max_pairs`` times within the budget
    (``min_pairs`` lowered towards ``floor_pairs`` for a callable too slow for the budget).
    ``limit_s``: as for :func:`interleaved_speedup`."""
    cfg = cfg or TimingConfig()
    started = time.perf_counter()
    round_s = _warm_up((fn,), cfg)
    cfg = _within_limit(cfg, round_s, started, limit_s)
    min_runs = _min_repeats(cfg, round_s)
    runs: list[float] = []
    deadline = time.perf_counter() + cfg.budget_s
    while len(runs) < cfg.max_pairs and (len(runs) < min_runs or time.perf_counter() < deadline):
        runs.append(_clock(fn))
    return runs


def sequential_speedup(
    runs_a: list[float],
    runs_b: list[float],
    context: dict[str, Any] | None = None,
    seed: int = 0,
) -> Speedup:
    """The speed-up of ``b`` over ``a`` from runs timed apart (not interleaved).

    The interval resamples each side independently, so it also carries the drift between
    the two measurement windows that pairing would have cancelled: it is wider.
    """
    rng = np.random.default_rng(seed)
    a = np.asarray(runs_a, dtype=np.float64)
    b = np.asarray(runs_b, dtype=np.float64)
    med = float(np.median(a) / np.median(b))
    ia = rng.integers(0, a.size, size=(BOOTSTRAP_SAMPLES, a.size))
    ib = rng.integers(0, b.size, size=(BOOTSTRAP_SAMPLES, b.size))
    ratios = np.median(a[ia], axis=1) / np.median(b[ib], axis=1)
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    ci = (float(lo), float(hi))
    if min(a.size, b.size) < SMALL_SAMPLE and min(a.size, b.size) >= 2:
        ci = _hull(ci, welch_t_interval(a, b), (med, med))
    ci = _resolved(ci, med)
    return Speedup(
        median=med,
        ci95=ci,
        runs=min(a.size, b.size),
        method="sequential",
        rel_halfwidth=_rel_halfwidth(ci, med),
        converged=False,
        a=SideStats.of(list(runs_a)),
        b=SideStats.of(list(runs_b)),
        context=_finish_context(context if context is not None else timing_context()),
    )

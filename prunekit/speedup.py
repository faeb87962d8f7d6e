"""A job's latency speed-up: the original model timed against the pruned one.

Both are timed interleaved in one process (:func:`~prunekit.metrics.latency.interleaved_speedups`)
whenever a second, untouched copy of the original fits in memory: unstructured strategies
change the loaded model in place, so the copy is the distillation teacher when the job has
one, else the model loaded again from its source once pruning is done. Whether it fits is
decided before pruning, from the model's weight bytes against the available memory
(:class:`SpeedupConfig`, whose memory probe a caller can replace). When it does not fit, the
original is timed alone right away, the pruned model alone at the end, and the ratio is
``sequential`` with its wider interval; a note says why.

The result is ``{"batch_1": Speedup.as_dict(), "batch_32": ...}``, the job's
``metrics["speedup"]["tf"]``, plus each side's latency block (median/p90 per batch) for the
report's ``before.latency`` / ``after.latency``.

**Latency budget.** The comparison may take ``SpeedupConfig.budget_s`` seconds of the job
(default :data:`DEFAULT_BUDGET_S`; the service sets it from ``PRUNEKIT_LATENCY_BUDGET_S``, a
job's spec from ``measure.latency_budget_s``): waiting for the original's copy, traces,
warm-ups and timed pairs, all batch sizes together. Batch sizes are timed in order; before a
batch size is warmed up its pass is predicted from the previous one (at least a
1/:data:`BATCHING_GAIN_BOUND` share of the samples' worth of its passes: batching rarely buys
more), and after its warm-up the pass is known. A batch size whose shortest comparison (a
warm-up round and ``floor_pairs`` pairs) would overrun what is left is not timed: its row is
``{"skipped": "<why, and how to ask for it>"}`` instead of a :class:`Speedup`, and a note says
the same. ``force`` (the spec's ``measure.latency_force``) times every batch size to at least
its floor pairs whatever the budget. To overlap the reload with the job's own work, a caller
may :meth:`SpeedupMeasurement.preload` the original's copy in a thread while it prunes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import psutil

from prunekit.metrics.latency import (
    ForwardPass,
    LatencyConfig,
    TimedRuns,
    latency_summary,
    make_inputs,
    runs_summary,
    sequential_speedups,
    tf_timing_context,
)
from prunekit.metrics.timing import (
    OverBudget,
    SideStats,
    Speedup,
    interleaved_speedup,
    shortest_repeats,
    time_runs,
)
from prunekit.model import LoadedModel

SIDES = {"a": "original", "b": "pruned"}  # speed-up = time(a) / time(b)
DEFAULT_BUDGET_S = 2.0
# a batch of N samples is predicted to take at least N / BATCHING_GAIN_BOUND passes of one
# sample: batching buys at most this much per sample (on CPUs far less), so a batch size
# skipped before its warm-up would not have fit had it been measured
BATCHING_GAIN_BOUND = 4.0
HOW_TO_ASK = (
    "ask for it with the job spec's measure.latency_force: true or a larger "
    "measure.latency_budget_s"
)


def available_memory() -> int:
    """Bytes of memory this process could still take without swapping."""
    return int(psutil.virtual_memory().available)


@dataclass(frozen=True)
class SpeedupConfig:
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    # memory a loaded and traced copy takes per byte of its weights (variables, their
    # initial values while loading, traced graphs): an estimate on the safe side
    copy_memory_factor: float = 3.0
    memory_share: float = 0.5  # the copy may take at most this share of the available memory
    available_memory: Callable[[], int] = available_memory
    # wall-clock seconds the whole comparison may take (math.inf: no budget), and where that
    # figure came from, for the note that says a batch size was skipped
    budget_s: float = DEFAULT_BUDGET_S
    budget_origin: str = "the engine's default"
    force: bool = False  # time every batch size (to its floor pairs at least), whatever the budget

    def requested(
        self, batch_sizes: list[int], budget_s: float | None, force: bool
    ) -> SpeedupConfig:
        """This config with what a job's spec asked for (``measure``)."""
        cfg = replace(
            self,
            latency=replace(self.latency, batch_sizes=tuple(batch_sizes)),
            force=force,
        )
        if budget_s is not None:
            cfg = replace(cfg, budget_s=budget_s, budget_origin="measure.latency_budget_s")
        return cfg


class _Budget:
    """What is left of a comparison's latency budget, and why a batch size is skipped."""

    def __init__(self, cfg: SpeedupConfig, rounds_per_pass: int, share: float = 1.0) -> None:
        self.cfg = cfg
        self.total = cfg.budget_s * share
        self.rounds_per_pass = rounds_per_pass  # runs in one round: 2 interleaved, 1 alone
        self.started = time.perf_counter()
        self.last: tuple[int, float] | None = None  # (batch size, seconds of one pass)

    def left(self) -> float | None:
        """Seconds left; None when nothing limits the comparison."""
        if self.cfg.force or math.isinf(self.total):
            return None
        return self.total - (time.perf_counter() - self.started)

    def shortest(self, pass_s: float) -> float:
        timing = self.cfg.latency.timing
        return (timing.warmup + shortest_repeats(timing)) * self.rounds_per_pass * pass_s

    def _rounds(self) -> str:
        return "pairs" if self.rounds_per_pass == 2 else "runs"

    def predicted_skip(self, batch: int) -> str | None:
        """Why ``batch`` is not even warmed up: the smallest pass the previous batch size
        predicts would not fit; None when it may."""
        left = self.left()
        if left is None or self.last is None or batch <= self.last[0]:
            return None
        prev_batch, prev_s = self.last
        predicted = prev_s * batch / prev_batch / BATCHING_GAIN_BOUND
        if self.shortest(predicted) <= left:
            return None
        timing = self.cfg.latency.timing
        return self._why(
            batch,
            f"one batch-{prev_batch} pass takes {prev_s:.3g} s, so a batch-{batch} pass takes "
            f"at least {predicted:.3g} s (1/{BATCHING_GAIN_BOUND:g} of {batch / prev_batch:g} "
            f"batch-{prev_batch} passes) and its shortest comparison ({timing.warmup} warm-up "
            f"and {shortest_repeats(timing)} timed {self._rounds()}) at least "
            f"{self.shortest(predicted):.3g} s",
            left,
        )

    def measured_skip(self, batch: int, over: OverBudget) -> str:
        pass_s = over.round_s / self.rounds_per_pass
        return self._why(
            batch,
            f"one batch-{batch} pass takes {pass_s:.3g} s (measured in its warm-up), so its "
            f"{shortest_repeats(self.cfg.latency.timing)} timed {self._rounds()} would take "
            f"{over.needed_s:.3g} s more",
            over.left_s,
        )

    def _why(self, batch: int, cost: str, left: float) -> str:
        return (
            f"batch {batch} not timed: {cost}; {max(left, 0.0):.3g} s were left of the job's "
            f"latency budget of {self.total:.3g} s ({self.cfg.budget_origin}); {HOW_TO_ASK}"
        )


@dataclass
class SpeedupResult:
    speedup: dict[str, Any]  # "batch_N" -> Speedup.as_dict(), or {"skipped": why}
    before_latency: dict[str, Any]
    after_latency: dict[str, Any]


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


class SpeedupMeasurement:
    """Started before the strategy runs (:meth:`start`), finished after (:meth:`finish`)."""

    def __init__(
        self, sample_shape: list[int], dtype: str, interleaved: bool, cfg: SpeedupConfig
    ) -> None:
        self.sample_shape = sample_shape
        self.dtype = dtype
        self.interleaved = interleaved
        self.cfg = cfg
        self.inputs = make_inputs(sample_shape, dtype, cfg.latency.batch_sizes)
        self.notes: list[str] = []
        self.skipped: dict[int, str] = {}  # batch size -> why it was not timed
        self._before_alone: TimedRuns | None = None
        self._copy: Future[ForwardPass] | None = None

    @classmethod
    def start(
        cls,
        original: LoadedModel,
        sample_shape: list[int],
        dtype: str,
        weight_bytes: int,
        cfg: SpeedupConfig | None = None,
    ) -> SpeedupMeasurement:
        """Decide interleaved or sequential; in the sequential case, time ``original`` now
        (with half the latency budget; the pruned model gets the other half)."""
        cfg = cfg or SpeedupConfig()
        need = weight_bytes * cfg.copy_memory_factor
        available = cfg.available_memory()
        interleaved = need <= cfg.memory_share * available
        measurement = cls(sample_shape, dtype, interleaved, cfg)
        if not interleaved:
            measurement.notes.append(
                f"latency speed-up timed sequentially (original at the start, pruned model at "
                f"the end), not interleaved: a second copy of the original (about {_gib(need)}) "
                f"does not fit in {cfg.memory_share:.0%} of the {_gib(available)} of memory "
                "available; the interval is wider and load changes between the two windows "
                "are not cancelled"
            )
            fwd = ForwardPass(original, sample_shape, dtype)
            measurement._before_alone = measurement._time_alone(fwd, measurement.inputs)
        return measurement

    def preload(self, load: Callable[[], LoadedModel]) -> None:
        """Start loading the untouched original's copy in a thread now (the caller goes on
        pruning and saving meanwhile), and run its first forward pass there: a traced
        function's first run optimises its graph, a one-time cost no timing counts.
        :meth:`finish` waits for it. Interleaved case only."""
        if not self.interleaved or self._copy is not None:
            return

        def copy_and_first_run() -> ForwardPass:
            fwd = ForwardPass(load(), self.sample_shape, self.dtype)
            first = next(iter(self.inputs))
            fwd.runner(self.inputs[first])()
            return fwd

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prunekit-original")
        self._copy = pool.submit(copy_and_first_run)
        pool.shutdown(wait=False)

    def _time_alone(self, fwd: ForwardPass, inputs: dict[int, Any]) -> TimedRuns:
        budget = _Budget(self.cfg, rounds_per_pass=1, share=0.5)
        runs: dict[int, list[float]] = {}
        contexts: dict[int, dict[str, Any]] = {}
        for batch, x in inputs.items():
            why = budget.predicted_skip(batch)
            if why is None:
                run = fwd.runner(x)
                contexts[batch] = tf_timing_context(batch)
                try:
                    runs[batch] = time_runs(run, self.cfg.latency.timing, budget.left())
                except OverBudget as over:
                    why = budget.measured_skip(batch, over)
                    del contexts[batch]
            if why is not None:
                self._skip(batch, why)
                continue
            budget.last = (batch, min(runs[batch]))
        return TimedRuns(runs, contexts)

    def _skip(self, batch: int, why: str) -> None:
        self.skipped[batch] = why
        self.notes.append(f"TF latency speed-up at {why}")

    def _interleaved(
        self, before: ForwardPass, after: ForwardPass, budget: _Budget
    ) -> dict[int, Speedup]:
        out: dict[int, Speedup] = {}
        for batch, x in self.inputs.items():
            why = budget.predicted_skip(batch)
            if why is None:
                a, b = before.runner(x), after.runner(x)  # traced here: counted in the budget
                try:
                    out[batch] = interleaved_speedup(
                        a, b, self.cfg.latency.timing, tf_timing_context(batch), budget.left()
                    )
                except OverBudget as over:
                    why = budget.measured_skip(batch, over)
            if why is not None:
                self._skip(batch, why)
                continue
            s = out[batch]
            budget.last = (batch, min(s.a.median_ms, s.b.median_ms) / 1000.0)
        return out

    def finish(self, pruned: ForwardPass, original: Callable[[], LoadedModel]) -> SpeedupResult:
        """Time ``pruned`` against the untouched original (``original()`` returns it, unless
        :meth:`preload` already did; called only in the interleaved case)."""
        speedups: dict[int, Speedup]
        if self._before_alone is not None:
            timed = {b: self.inputs[b] for b in self._before_alone.runs}
            after_alone = self._time_alone(pruned, timed)
            speedups = sequential_speedups(self._before_alone, after_alone)
            before_latency = latency_summary(
                {b: SideStats.of(r) for b, r in self._before_alone.runs.items() if b in speedups}
            )
            after_latency = runs_summary(after_alone)
        else:
            budget = _Budget(self.cfg, rounds_per_pass=2)  # waiting for the copy counts
            if self._copy is not None:
                before = self._copy.result()
            else:
                before = ForwardPass(original(), self.sample_shape, self.dtype)
            speedups = self._interleaved(before, pruned, budget)
            before_latency = latency_summary({b: s.a for b, s in speedups.items()})
            after_latency = latency_summary({b: s.b for b, s in speedups.items()})
        rows: dict[str, dict[str, Any]] = {}
        for batch in self.inputs:
            if batch in speedups:
                row = speedups[batch].as_dict()
                row["context"]["sides"] = SIDES
                rows[f"batch_{batch}"] = row
            elif batch in self.skipped:
                rows[f"batch_{batch}"] = {"skipped": self.skipped[batch]}
        return SpeedupResult(
            speedup=rows,
            before_latency=before_latency,
            after_latency=after_latency,
        )

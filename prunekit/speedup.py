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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from prunekit.metrics.latency import (
    ForwardPass,
    LatencyConfig,
    TimedRuns,
    interleaved_speedups,
    latency_summary,
    make_inputs,
    runs_summary,
    sequential_speedups,
    time_forward,
)
from prunekit.metrics.timing import Speedup
from prunekit.model import LoadedModel

SIDES = {"a": "original", "b": "pruned"}  # speed-up = time(a) / time(b)


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


@dataclass
class SpeedupResult:
    speedup: dict[str, Any]  # "batch_N" -> Speedup.as_dict()
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
        self._before_alone: TimedRuns | None = None

    @classmethod
    def start(
        cls,
        original: LoadedModel,
        sample_shape: list[int],
        dtype: str,
        weight_bytes: int,
        cfg: SpeedupConfig | None = None,
    ) -> SpeedupMeasurement:
        """Decide interleaved or sequential; in the sequential case, time ``original`` now."""
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
            measurement._before_alone = time_forward(fwd, measurement.inputs, cfg.latency)
        return measurement

    def finish(self, pruned: ForwardPass, original: Callable[[], LoadedModel]) -> SpeedupResult:
        """Time ``pruned`` against the untouched original (``original()`` returns it; called
        only in the interleaved case)."""
        speedups: dict[int, Speedup]
        if self._before_alone is not None:
            after_alone = time_forward(pruned, self.inputs, self.cfg.latency)
            speedups = sequential_speedups(self._before_alone, after_alone)
            before_latency = runs_summary(self._before_alone)
            after_latency = runs_summary(after_alone)
        else:
            before = ForwardPass(original(), self.sample_shape, self.dtype)
            speedups = interleaved_speedups(before, pruned, self.inputs, self.cfg.latency)
            before_latency = latency_summary({b: s.a for b, s in speedups.items()})
            after_latency = latency_summary({b: s.b for b, s in speedups.items()})
        rows = {f"batch_{b}": s.as_dict() for b, s in speedups.items()}
        for row in rows.values():
            row["context"]["sides"] = SIDES
        return SpeedupResult(
            speedup=rows,
            before_latency=before_latency,
            after_latency=after_latency,
        )

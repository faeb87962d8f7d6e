"""Inference latency of models on this worker's device, and the speed-up between two.

A model's forward pass is traced once per batch size (:class:`ForwardPass`, a
``tf.function`` as serving would run it); its batch-1 trace is also what the FLOPs counter
freezes, so latency and FLOPs share one trace. Every run ends when the output is back on
the host.

Two models (before and after pruning) are compared with
:func:`~prunekit.metrics.timing.interleaved_speedup`: both warmed up, then timed in
alternating pairs on the same input tensor, in one process with the same thread settings.
When both cannot be held at once, each side is timed alone (:func:`time_forward`) and
:func:`sequential_speedups` makes the ratio, with the wider interval that costs.

Timing is bounded per batch size (:class:`LatencyConfig`): a big model gets fewer pairs,
never fewer than ``floor_pairs``, and reports the wider interval and ``converged: false``.
Unstructured sparsity does not make dense kernels faster; these numbers show what a pruned
model really costs where it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from prunekit.metrics.timing import (
    SideStats,
    Speedup,
    TimingConfig,
    interleaved_speedup,
    sequential_speedup,
    time_runs,
    timing_context,
)
from prunekit.model import LoadedModel

RUNTIME = "tensorflow"


def _default_timing() -> TimingConfig:
    # per batch size: ~2 s of timed pairs; a model whose pair takes longer gets 3 pairs.
    # Two warm-up rounds: a traced function's first run also optimises its graph, so only
    # the second round says what a pass costs (what a latency budget is judged on)
    return TimingConfig(warmup=2, min_pairs=7, max_pairs=200, budget_s=2.0, floor_pairs=3)


@dataclass(frozen=True)
class LatencyConfig:
    batch_sizes: tuple[int, ...] = (1, 32)
    timing: TimingConfig = field(default_factory=_default_timing)


def device_name() -> str:
    """The device the worker runs models on: the first GPU if there is one, else the CPU."""
    gpus = tf.config.list_logical_devices("GPU")
    return gpus[0].name if gpus else "/device:CPU:0"


def device_description(name: str) -> str:
    """A human name for ``name`` (the GPU model when TensorFlow knows it)."""
    if "GPU" not in name:
        return "CPU"
    try:
        physical = tf.config.list_physical_devices("GPU")[int(name.rsplit(":", 1)[1])]
        return str(tf.config.experimental.get_device_details(physical).get("device_name", name))
    except (IndexError, ValueError, RuntimeError):
        return name


def _random_input(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    np_dtype = tf.as_dtype(dtype).as_numpy_dtype
    if np.issubdtype(np_dtype, np.integer) or np_dtype is np.bool_:
        return rng.integers(0, 2, size=shape).astype(np_dtype)
    return rng.normal(size=shape).astype(np_dtype)


def make_inputs(
    sample_shape: list[int], dtype: str, batch_sizes: tuple[int, ...], seed: int = 0
) -> dict[int, tf.Tensor]:
    """One random input tensor per batch size (values do not change dense kernels' work),
    placed on :func:`device_name`; both sides of a comparison run on the same tensors."""
    rng = np.random.default_rng(seed)
    with tf.device(device_name()):
        return {b: tf.constant(_random_input(rng, (b, *sample_shape), dtype)) for b in batch_sizes}


class ForwardPass:
    """``model``'s inference call, traced once per batch size and reused."""

    def __init__(self, model: LoadedModel, sample_shape: list[int], dtype: str) -> None:
        self.sample_shape = list(sample_shape)
        self.dtype = dtype
        self._fn = tf.function(lambda x: model.call(x, training=False), reduce_retracing=False)
        self._concrete: dict[int, Any] = {}

    def concrete(self, batch: int) -> Any:
        """The traced function for ``batch`` samples (a ``ConcreteFunction``)."""
        if batch not in self._concrete:
            spec = tf.TensorSpec([batch, *self.sample_shape], tf.as_dtype(self.dtype))
            with tf.device(device_name()):
                self._concrete[batch] = self._fn.get_concrete_function(spec)
        return self._concrete[batch]

    def runner(self, x: tf.Tensor) -> Callable[[], object]:
        """A callable running one forward pass on ``x``, finished when it returns."""
        fn = self.concrete(int(x.shape[0]))
        device = device_name()

        def run() -> object:
            with tf.device(device):
                return np.asarray(fn(x))  # copies the output to the host: really finished

        return run


def thread_context() -> dict[str, Any]:
    """TensorFlow's thread settings (0 means its default: one per logical CPU)."""
    return {
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
    }


def tf_timing_context(batch: int) -> dict[str, Any]:
    """:func:`~prunekit.metrics.timing.timing_context` for a TF figure at ``batch``."""
    device = device_name()
    return timing_context(
        runtime=RUNTIME,
        device=device,
        device_name=device_description(device),
        batch_size=batch,
        **thread_context(),
    )


@dataclass
class TimedRuns:
    """Seconds per run of one model, per batch size, with the context each was taken in."""

    runs: dict[int, list[float]]
    contexts: dict[int, dict[str, Any]]


def time_forward(
    fwd: ForwardPass, inputs: dict[int, tf.Tensor], cfg: LatencyConfig | None = None
) -> TimedRuns:
    """Time one model alone at every batch size of ``inputs``."""
    cfg = cfg or LatencyConfig()
    runs: dict[int, list[float]] = {}
    contexts: dict[int, dict[str, Any]] = {}
    for batch, x in inputs.items():
        contexts[batch] = tf_timing_context(batch)
        runs[batch] = time_runs(fwd.runner(x), cfg.timing)
    return TimedRuns(runs, contexts)


def interleaved_speedups(
    before: ForwardPass,
    after: ForwardPass,
    inputs: dict[int, tf.Tensor],
    cfg: LatencyConfig | None = None,
) -> dict[int, Speedup]:
    """Speed-up of ``after`` over ``before`` per batch size, timed in alternating pairs."""
    cfg = cfg or LatencyConfig()
    return {
        batch: interleaved_speedup(
            before.runner(x), after.runner(x), cfg.timing, tf_timing_context(batch)
        )
        for batch, x in inputs.items()
    }


def sequential_speedups(before: TimedRuns, after: TimedRuns) -> dict[int, Speedup]:
    """Speed-up of ``after`` over ``before`` from runs timed apart; the context spans both
    windows (load average from the start of ``before`` to now)."""
    out: dict[int, Speedup] = {}
    for batch, runs in after.runs.items():
        if batch in before.runs:
            out[batch] = sequential_speedup(before.runs[batch], runs, before.contexts[batch])
    return out


def _side_row(stats: SideStats) -> dict[str, Any]:
    return {"median_ms": stats.median_ms, "p90_ms": stats.p90_ms, "runs": stats.runs}


def latency_summary(per_batch: dict[int, SideStats]) -> dict[str, Any]:
    """The report's ``latency`` block: device, then median/p90 ms per ``batch_N``."""
    device = device_name()
    out: dict[str, Any] = {"device": device, "device_name": device_description(device)}
    for batch, stats in per_batch.items():
        out[f"batch_{batch}"] = _side_row(stats)
    return out


def runs_summary(timed: TimedRuns) -> dict[str, Any]:
    """:func:`latency_summary` of runs timed alone."""
    return latency_summary({b: SideStats.of(r) for b, r in timed.runs.items()})


def measure_latency(
    model: LoadedModel,
    sample_shape: list[int],
    dtype: str = "float32",
    cfg: LatencyConfig | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Median (and p90) milliseconds per batch for each batch size, on :func:`device_name`,
    of one model timed alone. Inputs are random arrays of the sample shape."""
    cfg = cfg or LatencyConfig()
    inputs = make_inputs(sample_shape, dtype, cfg.batch_sizes, seed)
    return runs_summary(time_forward(ForwardPass(model, sample_shape, dtype), inputs, cfg))

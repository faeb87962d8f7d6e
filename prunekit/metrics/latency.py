"""Inference latency of a model on this worker's device.

The forward pass is traced once per batch size (a ``tf.function``, as serving would run it),
warmed up, then timed: the median of repeated runs, each ending when the output is back on
the host. Repetitions are bounded by a count and a time budget, so measuring a small model
stays cheap and a big one cannot stall a job. Unstructured sparsity does not make dense
kernels faster; these numbers show what a pruned model really costs where it runs.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from prunekit.model import LoadedModel


@dataclass(frozen=True)
class LatencyConfig:
    batch_sizes: tuple[int, ...] = (1, 32)
    warmup: int = 3
    repeats: int = 30
    budget_s: float = 1.0  # per batch size, after warm-up; at least 3 runs are always made


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


def _time_runs(fn: Any, x: tf.Tensor, cfg: LatencyConfig) -> list[float]:
    for _ in range(cfg.warmup):
        np.asarray(fn(x))
    runs: list[float] = []
    deadline = time.perf_counter() + cfg.budget_s
    while len(runs) < cfg.repeats and (len(runs) < 3 or time.perf_counter() < deadline):
        start = time.perf_counter()
        np.asarray(fn(x))  # copies the output to the host: the run is really finished
        runs.append(time.perf_counter() - start)
    return runs


def _random_input(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    np_dtype = tf.as_dtype(dtype).as_numpy_dtype
    if np.issubdtype(np_dtype, np.integer) or np_dtype is np.bool_:
        return rng.integers(0, 2, size=shape).astype(np_dtype)
    return rng.normal(size=shape).astype(np_dtype)


def measure_latency(
    model: LoadedModel,
    sample_shape: list[int],
    dtype: str = "float32",
    cfg: LatencyConfig | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Median (and p90) milliseconds per batch for each batch size, on :func:`device_name`.

    Inputs are random normal arrays of the sample shape (the values do not change the work
    dense kernels do).
    """
    cfg = cfg or LatencyConfig()
    device = device_name()
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"device": device, "device_name": device_description(device)}
    with tf.device(device):
        fn = tf.function(lambda x: model.call(x, training=False), reduce_retracing=False)
        for batch in cfg.batch_sizes:
            x = tf.constant(_random_input(rng, (batch, *sample_shape), dtype))
            runs = _time_runs(fn, x, cfg)
            ms = sorted(r * 1000.0 for r in runs)
            out[f"batch_{batch}"] = {
                "median_ms": round(statistics.median(ms), 4),
                "p90_ms": round(ms[min(len(ms) - 1, int(0.9 * len(ms)))], 4),
                "runs": len(ms),
            }
    return out

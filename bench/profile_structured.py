"""Where the time goes in the structured VGG, dense and pruned: a per-op profile.

The VGG of ``bench/structured_vgg.py`` is built with random weights (latency does not depend
on their values) at several channel widths:

* ``dense``: 32-32-64-64-128-128;
* ``half``: what ``filter`` keeps at ratio 0.5 (16-16-32-32-64-64);
* ``odd``: the widths ``slimming`` kept at ratio 0.5 in the structured run
  (22-27-16-31-19-109);
* ``odd_round8``: the same rounded up to a multiple of 8 (``round_to: 8``).

Three parts, one process:

1. **Per op** (batch 32): every layer of the model is timed alone, on an input of its own
   shape, in a ``tf.function`` (TF) and as a one-op ``.tflite`` in the LiteRT interpreter
   (XNNPACK). Ops are summed per kind: ``conv``, ``bn``, ``relu``, ``pool`` and ``head``
   (global average pooling + Dense). In a whole-model LiteRT file BatchNorm is folded into
   the convolution and ReLU fused into it; the LiteRT ``conv`` row therefore times
   ``Conv2D + bias + ReLU`` as one op, and ``bn``/``relu`` are not separate there.
2. **In the TF graph**: BatchNorm's and ReLU's cost inside the whole ``tf.function``, by
   ablation (the model timed with and without them, round-robin), since grappler may fuse
   what part 1 times alone.
3. **Whole model**: the speed-up of each width over ``dense`` at batch 32 and 1, on TF
   (``tf.function``), TF with XLA (``jit_compile=True``) and LiteRT (one thread per core,
   and one thread), with the interleaved
   method of ``prunekit.metrics.timing`` (median of per-pair ratios, bootstrap 95% interval).

    python -m bench.profile_structured            # ~2 min on 2 shared cores (load 4)
    python -m bench.profile_structured --quick    # fewer runs

Prints one short table per part and writes ``bench/results/raw/profile_structured.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.common import machine_info  # noqa: E402
from bench.litert_timing import litert_runner  # noqa: E402
from bench.structured_vgg import WIDTHS, runtime_calls, tf_runner, vgg  # noqa: E402
from prunekit.metrics.timing import TimingConfig, interleaved_speedup, timing_context  # noqa: E402

RAW = ROOT / "bench" / "results" / "raw" / "profile_structured.json"
VARIANTS: dict[str, tuple[int, ...]] = {
    "dense": WIDTHS,
    "half": tuple(w // 2 for w in WIDTHS),
    "odd": (22, 27, 16, 31, 19, 109),
    "odd_round8": (24, 32, 16, 32, 24, 112),
}
KINDS = ("conv", "bn", "relu", "pool", "head")
WHOLE_MODEL_RUNTIMES = ("tf", "tf_xla", "litert", "litert_1thread")


def randomized_vgg(widths: tuple[int, ...], bn: bool = True, relu: bool = True) -> keras.Model:
    """The bench VGG at ``widths`` with non-trivial BatchNorm statistics."""
    model = vgg(0, widths, bn=bn, relu=relu)
    rng = np.random.default_rng(0)
    for w in model.weights:
        if w.name in ("moving_variance", "gamma"):
            w.assign(rng.uniform(0.5, 1.5, tuple(w.shape)).astype("float32"))
        elif w.name in ("moving_mean", "beta"):
            w.assign(rng.normal(0.0, 0.1, tuple(w.shape)).astype("float32"))
    return model


def kind_of(layer: keras.layers.Layer) -> str:
    if isinstance(layer, keras.layers.Conv2D):
        return "conv"
    if isinstance(layer, keras.layers.BatchNormalization):
        return "bn"
    if isinstance(layer, keras.layers.ReLU):
        return "relu"
    if isinstance(layer, keras.layers.MaxPooling2D):
        return "pool"
    return "head"


def median_ms(fn: Callable[[Any], object], x: Any, runs: int, warmup: int = 3) -> float:
    """Median milliseconds of ``fn(x)`` over ``runs`` calls after ``warmup``."""
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return 1000.0 * statistics.median(times)


def single_layer_model(layer: keras.layers.Layer, fused: bool) -> keras.Model:
    """``layer`` alone as a model; ``fused``: a Conv2D with bias and ReLU, as LiteRT runs the
    folded Conv+BN+ReLU of the whole model."""
    in_shape = tuple(layer.input.shape[1:])
    inp = keras.Input(in_shape)
    if fused and isinstance(layer, keras.layers.Conv2D):
        conv = keras.layers.Conv2D(
            layer.filters, layer.kernel_size, padding=layer.padding, activation="relu"
        )
        return keras.Model(inp, conv(inp))
    clone = layer.__class__.from_config(layer.get_config())
    out = clone(inp)
    clone.set_weights(layer.get_weights())
    return keras.Model(inp, out)


def per_op_profile(model: keras.Model, batch: int, runs: int) -> dict[str, dict[str, float]]:
    """Per-kind milliseconds at ``batch``, each layer timed alone, TF and LiteRT."""
    rng = np.random.default_rng(0)
    tf_ms = dict.fromkeys(KINDS, 0.0)
    lite_ms = dict.fromkeys(KINDS, 0.0)
    head: list[keras.layers.Layer] = []
    for layer in model.layers[1:]:
        kind = kind_of(layer)
        if kind == "head":
            head.append(layer)
            continue
        x = rng.random((batch, *layer.input.shape[1:]), dtype=np.float32)
        one = single_layer_model(layer, fused=False)
        tf_ms[kind] += median_ms(tf_runner(one), tf.constant(x), runs)
        if kind in ("conv", "pool"):  # bn and relu are folded into the conv in LiteRT
            lite = litert_runner(single_layer_model(layer, fused=True), batch)
            lite_ms[kind] += median_ms(lite, x, runs)
    head_in = keras.Input(tuple(head[0].input.shape[1:]))
    h = head_in
    for layer in head:
        h = layer(h)
    head_model = keras.Model(head_in, h)
    x = rng.random((batch, *head_model.input.shape[1:]), dtype=np.float32)
    tf_ms["head"] = median_ms(tf_runner(head_model), tf.constant(x), runs)
    lite_ms["head"] = median_ms(litert_runner(head_model, batch), x, runs)
    return {"tf": tf_ms, "litert": lite_ms}


def in_graph_shares(widths: tuple[int, ...], batch: int, runs: int) -> dict[str, float]:
    """What BatchNorm and ReLU cost inside the whole TF graph (where grappler may fuse them),
    by ablation: the model, the model without BatchNorm, without BatchNorm and ReLU, timed
    round-robin; ``bn`` and ``relu`` are the differences, ``rest`` (convolutions, pooling,
    head) the last model's time. Milliseconds, medians."""
    x = tf.constant(np.random.default_rng(1).random((batch, 28, 28, 1), dtype=np.float32))
    fns = [
        tf_runner(randomized_vgg(widths, bn=bn, relu=relu))
        for bn, relu in ((True, True), (False, True), (False, False))
    ]
    for _ in range(3):  # warm-up
        for fn in fns:
            fn(x)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, t in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn(x)
            t.append(1000.0 * (time.perf_counter() - start))
    full, no_bn, bare = (statistics.median(t) for t in times)
    return {"bn": full - no_bn, "relu": no_bn - bare, "rest": bare, "total": full}


def whole_model(models: dict[str, keras.Model], cfg: TimingConfig) -> dict[str, Any]:
    """Speed-up of every variant over dense, per runtime and batch (interleaved pairs)."""
    out: dict[str, Any] = {}
    for batch in (32, 1):
        dense_fns = runtime_calls(models["dense"], batch, WHOLE_MODEL_RUNTIMES)
        for name, model in models.items():
            if name == "dense":
                continue
            fns = runtime_calls(model, batch, WHOLE_MODEL_RUNTIMES)
            for runtime, fn in fns.items():
                s = interleaved_speedup(
                    dense_fns[runtime], fn, cfg, timing_context(runtime=runtime, batch=batch)
                )
                out.setdefault(runtime, {}).setdefault(f"b{batch}", {})[name] = s.as_dict()
    return out


def main(quick: bool) -> dict[str, Any]:
    runs = 10 if quick else 30
    cfg = TimingConfig(budget_s=1.0 if quick else 3.0, max_pairs=60 if quick else 200)
    models = {name: randomized_vgg(w) for name, w in VARIANTS.items()}
    started = timing_context()
    profile = {name: per_op_profile(m, 32, runs) for name, m in models.items()}
    print("per op, batch 32, ms (each layer timed alone; LiteRT conv = conv+BN+ReLU fused)")
    print(f"{'variant':<11} {'runtime':<7} " + " ".join(f"{k:>7}" for k in KINDS) + "   total")
    for name, p in profile.items():
        for runtime, ms in p.items():
            cells = " ".join(f"{ms[k]:7.2f}" for k in KINDS)
            print(f"{name:<11} {runtime:<7} {cells} {sum(ms.values()):7.2f}")
    shares = {name: in_graph_shares(w, 32, runs) for name, w in VARIANTS.items()}
    print("\nin the whole TF graph, batch 32, ms (ablation: without BN, without BN and ReLU)")
    print(f"{'variant':<11} {'bn':>7} {'relu':>7} {'rest':>7} {'total':>7}")
    for name, sh in shares.items():
        print(f"{name:<11} " + " ".join(f"{sh[k]:7.2f}" for k in ("bn", "relu", "rest", "total")))
    speed = whole_model(models, cfg)
    print("\nwhole model: speed-up over dense, median [95% interval] (pairs)")
    for runtime, by_batch in speed.items():
        for batch, rows in by_batch.items():
            cells = "  ".join(
                f"{n} {r['median']:.2f}x [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}] ({r['runs']})"
                for n, r in rows.items()
            )
            print(f"{runtime:<7} {batch:<4} {cells}")
    loads = [started["load_avg_1m_start"], os.getloadavg()[0]]
    print(f"\nload average (1 min) at start / end: {loads[0]} / {loads[1]:.2f}")
    result = {
        "benchmark": "profile_structured",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "variants": {k: list(v) for k, v in VARIANTS.items()},
        "per_op_ms_batch32": profile,
        "tf_in_graph_ms_batch32": shares,
        "speedup_over_dense": speed,
        "load_avg_1m": {"start": loads[0], "end": round(loads[1], 2)},
        "machine": machine_info(with_tensorflow=True),
    }
    RAW.parent.mkdir(parents=True, exist_ok=True)
    RAW.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RAW.relative_to(ROOT)}")
    return result


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs, shorter budgets")
    main(ap.parse_args(argv).quick)
    return 0


if __name__ == "__main__":
    sys.exit(cli())

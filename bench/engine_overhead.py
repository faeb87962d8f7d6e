"""What the engine costs on top of TensorFlow itself, measured in one run.

(a) **One-shot prune vs bare load + save.** ``prunekit.pipeline.prune`` with global
magnitude pruning at 90 % on a ResNet50-sized SavedModel (``keras.applications.ResNet50``
with random weights, 25.6 M parameters, exported with ``model.export`` and cached under
``bench/work/``) against ``tf.saved_model.load`` + ``tf.saved_model.save`` of the same
directory. Each measurement runs in a fresh child process (the engine and TF keep memory per
process), which reports the wall time of the operation after its imports, its peak RSS
(``ru_maxrss``) and its RSS right after the imports. The prune child does what the service
does: ``prunekit.inspection.inspect_model`` first (at upload; it measures the original's
size and FLOPs once, timed apart as ``inspect_s``), then the job, ``prune(...,
before=inspection["before"])``, which reports the full metrics: the pruned model's sizes
and FLOPs, and latency at batch 1 and 32 timed interleaved against a reloaded, untouched
original (``metrics["speedup"]["tf"]``, with its interval). The engine's phases are timed
separately, so the table shows what pruning itself costs and what the honest metrics cost;
a separate child times each data-free metric of the original model (compressed size, FLOPs,
latency) to show where the measuring goes. Quick mode prunes a 5.8 M-parameter MLP
(784-2048-2048-10) once and skips that breakdown.

(b) **Masked fine-tune step vs dense step.** A dense ``tf.function`` train step
(forward, loss, gradients, ``apply_gradients``) against the same step followed by
re-applying 90 % magnitude masks (``w.assign(w * mask)``) to every kernel, on LeNet-300-100
and a small CNN, batch 128 of MNIST, interleaved step by step after a warm-up
(``prunekit.metrics.timing.interleaved_speedup``): the median step time of each and the
median of the per-pair ratios, with its bootstrap 95% interval.

Run: ``python -m bench.run_all --only engine_overhead [--quick]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    DATA_DIR,
    REPO_ROOT,
    WORK_DIR,
    bench_command,
    median,
    ratio,
    write_result,
)
from prunekit.metrics.timing import TimingConfig, interleaved_speedup, timing_context

SUITE = "engine_overhead"
SPARSITY = 0.9
RESULT_TAG = "BENCH_RESULT "

# name -> (Keras code building `m` with seed 0, description)
MODELS: dict[str, tuple[str, str]] = {
    "resnet50": (
        "m = keras.applications.ResNet50(weights=None)",
        "ResNet50 (224x224x3, 1000 classes, random weights)",
    ),
    "mlp_6m": (
        "inp = keras.Input((784,), name='pixels'); "
        "x = keras.layers.Dense(2048, activation='relu')(inp); "
        "x = keras.layers.Dense(2048, activation='relu')(x); "
        "m = keras.Model(inp, keras.layers.Dense(10)(x))",
        "MLP 784-2048-2048-10 (random weights)",
    ),
}


# ---------------------------------------------------------------------- (a) child processes
def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _child_bare(model: Path, out: Path) -> dict[str, Any]:
    import tensorflow as tf

    after_import = _rss_mib()
    start = time.perf_counter()
    obj = tf.saved_model.load(str(model))
    tf.saved_model.save(obj, str(out), signatures=dict(obj.signatures))
    return {"seconds": time.perf_counter() - start, "rss_after_import_mib": after_import}


def _child_prune(model: Path, out: Path) -> dict[str, Any]:
    from prunekit.inspection import inspect_model
    from prunekit.pipeline import prune
    from prunekit.progress import NullReporter
    from prunekit.spec import PruneSpec

    class PhaseClock(NullReporter):
        def __init__(self) -> None:
            self.marks: list[tuple[str, float]] = []

        def phase(self, name: str, fraction: float = 0.0, **detail: Any) -> None:
            self.marks.append((name, time.perf_counter()))

    after_import = _rss_mib()
    clock = PhaseClock()
    spec = PruneSpec(strategy={"name": "magnitude", "sparsity": SPARSITY, "scope": "global"})
    inspect_start = time.perf_counter()
    inspection = inspect_model(model, "saved_model")  # at upload, as the service does
    start = time.perf_counter()
    result = prune(model, "saved_model", spec, out, reporter=clock, before=inspection["before"])
    end = time.perf_counter()
    marks = [*clock.marks, ("end", end)]
    phases = {name: marks[i + 1][1] - t for i, (name, t) in enumerate(marks[:-1])}
    return {
        "seconds": end - start,
        "inspect_s": start - inspect_start,
        "rss_after_import_mib": after_import,
        "phases": phases,
        "sparsity": result.metrics["sparsity"],
        "parameters": result.metrics["parameters"]["total"],
        "latency_device": (result.metrics["after"].get("latency") or {}).get("device_name"),
        "speedup_tf": (result.metrics.get("speedup") or {}).get("tf"),
        "size_codec": result.metrics["size_bytes"]["codec"],
        "notes": result.notes,
    }


def _child_metrics(model: Path) -> dict[str, Any]:
    """Seconds of each data-free metric ``prune`` takes of a model (before and after)."""
    from prunekit.metrics.flops import count_flops, sample_shape
    from prunekit.metrics.latency import measure_latency
    from prunekit.metrics.size import artifact_size
    from prunekit.model import load_model

    loaded = load_model(model, "saved_model")
    shape, dtype = sample_shape(loaded, None)
    timings: dict[str, float] = {}
    for name, fn in (
        ("compressed_size", lambda: artifact_size(model)),
        ("flops", lambda: count_flops(loaded, shape)),
        ("latency", lambda: measure_latency(loaded, shape, dtype)),
    ):
        start = time.perf_counter()
        fn()
        timings[name] = time.perf_counter() - start
    return {"seconds": sum(timings.values()), "metrics_s": timings}


CHILD_KINDS = ("bare", "prune", "metrics")


def _child_main(kind: str, model: Path, out: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    shutil.rmtree(out, ignore_errors=True)
    if kind == "metrics":
        doc = _child_metrics(model)
    else:
        doc = _child_bare(model, out) if kind == "bare" else _child_prune(model, out)
    doc["peak_rss_mib"] = _rss_mib()
    shutil.rmtree(out, ignore_errors=True)
    print(RESULT_TAG + json.dumps(doc), flush=True)


def _run_child(kind: str, model: Path, out: Path, timeout: float) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, "-m", "bench.engine_overhead", "--child", kind, str(model), str(out)]
    started = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith(RESULT_TAG))
    doc = json.loads(line[len(RESULT_TAG) :])
    doc["process_seconds"] = wall  # interpreter start + imports + the operation
    return doc


def ensure_model(name: str) -> Path:
    """The cached SavedModel for ``name`` (exported once, in a child process)."""
    path = WORK_DIR / f"{name}_saved_model"
    if (path / "saved_model.pb").exists():
        return path
    build, _ = MODELS[name]
    code = (
        f"import keras; keras.utils.set_random_seed(0); {build}; "
        f"m.export({str(path) + '.tmp'!r}, verbose=False)"
    )
    shutil.rmtree(str(path) + ".tmp", ignore_errors=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    Path(str(path) + ".tmp").rename(path)
    return path


def per_repeat_ratios(bare: list[dict[str, Any]], pruned: list[dict[str, Any]]) -> list[float]:
    """Job / bare seconds of each repeat (its two children ran back to back, under about the
    same load): how far the ratio of medians moves with the load."""
    return [round(ratio(p["seconds"], b["seconds"]), 2) for b, p in zip(bare, pruned, strict=True)]


def prune_vs_bare(
    name: str, repeats: int, breakdown: bool = True, timeout: float = 1200
) -> dict[str, Any]:
    """Alternate bare and prune children ``repeats`` times; medians and their ratios.
    ``breakdown``: also time each data-free metric once, in its own child."""
    model = ensure_model(name)
    scratch = WORK_DIR / "overhead_out"
    bare: list[dict[str, Any]] = []
    pruned: list[dict[str, Any]] = []
    for _ in range(repeats):
        bare.append(_run_child("bare", model, scratch, timeout))
        pruned.append(_run_child("prune", model, scratch, timeout))
    metrics_s = _run_child("metrics", model, scratch, timeout)["metrics_s"] if breakdown else None
    phases = {k: median(p["phases"][k] for p in pruned) for k in pruned[0]["phases"]}
    engine_core = sum(phases.get(k, 0.0) for k in ("loading", "pruning", "saving"))
    bare_s = median(b["seconds"] for b in bare)
    prune_s = median(p["seconds"] for p in pruned)
    bare_rss = median(b["peak_rss_mib"] for b in bare)
    prune_rss = median(p["peak_rss_mib"] for p in pruned)
    inspect_s = median(p["inspect_s"] for p in pruned)
    return {
        "model": name,
        "parameters": pruned[0]["parameters"],
        "repeats": repeats,
        "bare_s": round(bare_s, 2),
        "prune_s": round(prune_s, 2),
        "time_ratio": round(ratio(prune_s, bare_s), 2),
        "time_ratio_per_repeat": per_repeat_ratios(bare, pruned),
        "inspect_s": round(inspect_s, 2),
        "inspect_plus_prune_ratio": round(ratio(inspect_s + prune_s, bare_s), 2),
        "prune_core_s": round(engine_core, 2),
        "core_ratio": round(ratio(engine_core, bare_s), 2),
        "measure_s": round(phases.get("measuring", 0.0) + phases.get("evaluating", 0.0), 2),
        "bare_peak_rss_mib": round(bare_rss),
        "prune_peak_rss_mib": round(prune_rss),
        "rss_ratio": round(ratio(prune_rss, bare_rss), 2),
        "bare_rss_after_import_mib": round(median(b["rss_after_import_mib"] for b in bare)),
        "prune_rss_after_import_mib": round(median(p["rss_after_import_mib"] for p in pruned)),
        "sparsity": round(pruned[0]["sparsity"], 4),
        "latency_device": pruned[0].get("latency_device"),
        "speedup_tf": pruned[-1].get("speedup_tf"),  # the job's own figure, last repeat
        "size_codec": pruned[0].get("size_codec"),
        "metric_seconds_original": metrics_s,
        "_samples": {"bare": bare, "prune": pruned, "phases_median_s": phases},
    }


# ---------------------------------------------------------------------- (b) train steps
StepFn = Callable[[Any, Any], Any]
StepFactory = Callable[..., StepFn]


def dense_train_step(model: Any, optimizer: Any, loss_fn: Any) -> StepFn:
    """A plain ``tf.function`` train step: forward, loss, gradients, ``apply_gradients``."""
    import tensorflow as tf

    @tf.function
    def step(x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    return step


def masked_train_step(
    model: Any, optimizer: Any, loss_fn: Any, masks: Sequence[tuple[Any, Any]]
) -> StepFn:
    """The engine's own masked step: ``prunekit.training.Trainer.compiled_step`` (gradients of
    pruned weights zeroed, weights re-masked after every update), with Adam 1e-3 as the dense
    step uses. ``optimizer``/``loss_fn`` are the dense step's; the Trainer builds its own equal
    ones from the same settings."""
    from prunekit.formats import ModelFormat
    from prunekit.losses import LossName, LossSpec
    from prunekit.model import LoadedModel
    from prunekit.training import TrainConfig, Trainer

    loaded = LoadedModel(ModelFormat.KERAS, keras_model=model)
    by_var = {id(v): m for v, m in masks}
    prunable = [w for w in loaded.prunable_weights() if id(w.variable) in by_var]
    trainer = Trainer(
        loaded,
        prunable,
        LossSpec(LossName.SPARSE_CATEGORICAL, from_logits=True),
        TrainConfig(learning_rate=1e-3, optimizer="adam"),
        masks={w.name: by_var[id(w.variable)] for w in prunable},
    )
    return trainer.compiled_step()


def lenet_300_100(seed: int) -> Any:
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((28, 28), name="image")
    x = keras.layers.Flatten()(inp)
    x = keras.layers.Dense(300, activation="relu")(x)
    x = keras.layers.Dense(100, activation="relu")(x)
    return keras.Model(inp, keras.layers.Dense(10)(x), name="lenet_300_100")


def small_cnn(seed: int) -> Any:
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((28, 28), name="image")
    x = keras.layers.Reshape((28, 28, 1))(inp)
    x = keras.layers.Conv2D(32, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    return keras.Model(inp, keras.layers.Dense(10)(x), name="small_cnn")


def _mnist_batches(batch: int, count: int) -> list[tuple[Any, Any]]:
    import numpy as np
    import tensorflow as tf

    with np.load(DATA_DIR / "mnist.npz", allow_pickle=False) as d:
        x = d["x_train"][: batch * count].astype("float32") / 255.0
        y = d["y_train"][: batch * count].astype("int32")
    return [
        (tf.constant(x[i * batch : (i + 1) * batch]), tf.constant(y[i * batch : (i + 1) * batch]))
        for i in range(count)
    ]


def step_overhead(
    build: Callable[[int], Any],
    steps: int,
    batch: int = 128,
    warmup: int = 10,
    make_masked_step: StepFactory = masked_train_step,
) -> dict[str, Any]:
    """Median step time of a dense and a masked train step on two copies of one model.

    The two steps are timed in alternating pairs (``interleaved_speedup``: ``steps`` pairs,
    the order inside a pair alternating) so that load from other processes hits both alike;
    pair ``i`` runs both steps on the same batch. Masks are the engine's global magnitude
    masks at 90 %. ``step_ratio`` is masked / dense, the median of the per-pair ratios.
    """
    import keras

    from prunekit.masks import magnitude_masks

    dense_model, masked_model = build(0), build(0)
    kernels = [v for v in masked_model.trainable_variables if len(v.shape) >= 2]
    masks = magnitude_masks({v.path: v.numpy() for v in kernels}, SPARSITY, "global")
    for v in kernels:
        v.assign(v.numpy() * masks[v.path])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    dense = dense_train_step(dense_model, keras.optimizers.Adam(1e-3), loss_fn)
    masked = make_masked_step(
        masked_model, keras.optimizers.Adam(1e-3), loss_fn, [(v, masks[v.path]) for v in kernels]
    )
    batches = _mnist_batches(batch, 8)

    def cycling(step: StepFn) -> Callable[[], object]:
        seen = itertools.count()

        def run() -> object:
            x, y = batches[next(seen) % len(batches)]
            return float(step(x, y))  # fetching the loss waits for the step to finish

        return run

    cfg = TimingConfig(warmup=warmup, min_pairs=steps, max_pairs=steps, budget_s=0.0)
    timed = interleaved_speedup(cycling(masked), cycling(dense), cfg, timing_context(batch=batch))
    zeros = sum(int((v.numpy() == 0).sum()) for v in kernels)
    total = sum(int(v.numpy().size) for v in kernels)
    return {
        "model": dense_model.name,
        "parameters": int(dense_model.count_params()),
        "batch": batch,
        "steps": steps,
        "dense_step_ms": round(timed.b.median_ms, 3),
        "masked_step_ms": round(timed.a.median_ms, 3),
        "step_ratio": round(timed.median, 3),
        "step_ratio_ci95": [round(v, 3) for v in timed.ci95],
        "timing": timed.as_dict(),
        "kernel_sparsity_after": round(zeros / total, 4),
    }


# ---------------------------------------------------------------------- suite
def _speedup_row_text(batch: str, row: dict[str, Any]) -> str:
    """One ``speedup.tf`` row in words: the ratio with its interval, or why it was skipped."""
    if "skipped" in row:
        return f"{batch.replace('_', ' ')} skipped ({row['skipped']})"
    ctx = row["context"]
    return (
        f"{batch.replace('_', ' ')} {row['median']}x, 95% CI {row['ci95']}, {row['runs']} pairs, "
        f"converged {row['converged']}, load average "
        f"{ctx['load_avg_1m_start']}-{ctx['load_avg_1m_end']}"
    )


def _notes(prune_row: dict[str, Any]) -> list[str]:
    """What a reader must know of one run (from its stored ``prune_vs_bare`` row)."""
    core = prune_row["prune_core_s"]
    return [
        "Ratios are prunekit / baseline, measured in the same run; times are medians. Load "
        f"average (1 min) at the start and end of the prune-vs-load+save runs: "
        f"{prune_row['load_avg_1m'][0]} and {prune_row['load_avg_1m'][1]} on "
        f"{os.cpu_count()} logical CPUs (other processes shared the machine; both sides "
        "alternated under it). Job / load+save of each repeat: "
        + ", ".join(f"{r}x" for r in prune_row["time_ratio_per_repeat"])
        + ".",
        f"Prune vs load+save: each repeat is one child process per side; `prunekit` is the "
        f"whole `prunekit.pipeline.prune` call (global magnitude, sparsity {SPARSITY}) with "
        f"the original's size and FLOPs cached by `inspect_model` at upload (inspection took "
        f"{prune_row['inspect_s']} s; inspection + job = "
        f"{prune_row['inspect_plus_prune_ratio']}x the bare load+save). The job measures the "
        f"pruned model (sizes, {prune_row['size_codec']}; FLOPs) and times it against the "
        f"original (reloaded in a thread while it prunes and saves), interleaved, at batch 1 "
        f"and 32 within the default latency budget of {prune_row['latency_budget_s']:g} s on "
        f"this machine's {prune_row['latency_device'] or 'device'}: {prune_row['measure_s']} s "
        f"of it. Loading + pruning + saving alone took {core} s ({prune_row['core_ratio']}x "
        f"the bare load+save). Peak RSS right after imports: "
        f"{prune_row['bare_rss_after_import_mib']} MiB (TF) vs "
        f"{prune_row['prune_rss_after_import_mib']} MiB (prunekit, with Keras); peak RSS "
        f"{prune_row['rss_ratio']}x: the job holds the original's copy for the comparison "
        "while it saves (a data-free job loads it during pruning).",
        *(
            [
                "The job's own TF speed-up (pruned over original, last repeat), within the "
                f"engine's default latency budget of {prune_row['latency_budget_s']:g} s: "
                + "; ".join(_speedup_row_text(b, row) for b, row in prune_row["speedup_tf"].items())
                + "."
            ]
            if prune_row.get("speedup_tf")
            else []
        ),
        *(
            [
                "Measuring the original model once, alone: "
                + ", ".join(
                    f"{k} {v:.1f} s" for k, v in prune_row["metric_seconds_original"].items()
                )
                + " (the compressed size DEFLATEs the whole artifact; FLOPs freeze the graph;"
                " latency times the model alone at batch 1 and 32)."
            ]
            if prune_row["metric_seconds_original"]
            else []
        ),
        "Masked step: the engine's own `prunekit.training.Trainer` step (gradients of pruned "
        "weights zeroed, weights re-masked after `apply_gradients`) against a plain "
        "`tf.function` step; steps timed in alternating pairs, the ratio is the median of the "
        "per-pair ratios with its bootstrap 95% interval.",
    ]


def main(quick: bool = False) -> Path:
    from prunekit.speedup import DEFAULT_BUDGET_S  # TF and Keras: not in the bare child

    repeats = 1 if quick else 3
    model = "mlp_6m" if quick else "resnet50"
    steps = 50 if quick else 300
    load_start = round(os.getloadavg()[0], 2)
    prune_row = prune_vs_bare(model, repeats, breakdown=not quick)
    prune_row["load_avg_1m"] = [load_start, round(os.getloadavg()[0], 2)]
    prune_row["latency_budget_s"] = DEFAULT_BUDGET_S
    samples = prune_row.pop("_samples")
    prune_row["_desc"] = MODELS[model][1]
    step_rows = [step_overhead(lenet_300_100, steps), step_overhead(small_cnn, steps)]
    rows: list[dict[str, Any]] = [
        {
            "measurement": f"prune vs load+save: {prune_row.pop('_desc')}",
            "parameters": prune_row["parameters"],
            "repeats": repeats,
            "baseline": f"{prune_row['bare_s']} s, {prune_row['bare_peak_rss_mib']} MiB",
            "prunekit": f"{prune_row['prune_s']} s, {prune_row['prune_peak_rss_mib']} MiB",
            "time_ratio": prune_row["time_ratio"],
            "time_ratio_ci95": None,
            "memory_ratio": prune_row["rss_ratio"],
        },
        *(
            {
                "measurement": f"masked vs dense train step: {r['model']}, batch {r['batch']}",
                "parameters": r["parameters"],
                "repeats": r["steps"],
                "baseline": f"{r['dense_step_ms']} ms",
                "prunekit": f"{r['masked_step_ms']} ms",
                "time_ratio": r["step_ratio"],
                "time_ratio_ci95": r["step_ratio_ci95"],
                "memory_ratio": None,
            }
            for r in step_rows
        ),
    ]
    notes = _notes(prune_row)
    headline = [
        {
            "metric": f"prune / load+save wall time, {prune_row['parameters'] / 1e6:.1f}M-param "
            "SavedModel",
            "value": prune_row["time_ratio"],
            "unit": "x",
        },
        {
            "metric": "prune / load+save peak RSS",
            "value": prune_row["rss_ratio"],
            "unit": "x",
        },
        *(
            {
                "metric": f"masked / dense train step, {r['model']}",
                "value": r["step_ratio"],
                "unit": "x",
            }
            for r in step_rows
        ),
    ]
    return write_result(
        SUITE,
        rows,
        bench_command(SUITE, quick),
        extra={"prune_vs_bare": {**prune_row, "samples": samples}, "train_steps": step_rows},
        quick=quick,
        headline=headline,
        notes=notes,
    )


def _cli(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("KIND", "MODEL", "OUT"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.child:
        kind, model, out = args.child
        if kind not in CHILD_KINDS:
            parser.error(f"unknown child kind {kind!r}")
        _child_main(kind, Path(model), Path(out))
        return
    print(main(args.quick))


if __name__ == "__main__":
    _cli()

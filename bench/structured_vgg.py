"""Structured pruning bar: a VGG-style CNN on Fashion-MNIST, before and after.

Trains a dense VGG-style network (conv 32-32-pool-64-64-pool-128-128-pool, BN + ReLU,
global average pooling, Dense 10), caches it under ``bench/work/``, then runs the
``slimming`` and ``filter`` strategies through the engine's front door
(``prunekit.pipeline.prune``, the code path the service's workers run) with fine-tuning,
and measures:

* accuracy on the full 10,000-image test set (the bar: at most 1 point below dense);
* FLOPs per sample (``prunekit.structured.model_cost``; bar: at least 3x fewer);
* CPU latency at batch 32: every model is wrapped in a ``tf.function``, warmed up, then
  the dense and pruned models are timed alternately in the same process (>= 30 timed
  runs each) and the medians compared (bar: at least 2x faster).

The validation split is carved from the training set (seeded) and is what choices are
made on: the dense model keeps its best epoch by validation accuracy; the test set is
only used for the reported numbers. The training set is subsampled (``--train``) to
fit the 2 shared CPU cores this was developed on; the output says how many were used.

    python bench/structured_vgg.py            # full run
    python bench/structured_vgg.py --quick    # smoke run (minutes)
    python bench/structured_vgg.py --from-raw bench/results/raw/structured_vgg.json

A run writes its raw measurements (``bench/results/raw/structured_vgg.json``; a quick run's
go to ``bench/work/``), then :func:`to_result` converts them into the common result schema
(``bench/common.py``): ``bench/results/structured_vgg.json`` (``.quick.json``).
``--from-raw`` converts an existing raw file with that same function, measuring nothing.
``main(quick)`` is the entry point of ``bench/run_all.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench.common import bench_command, machine_info, write_result  # noqa: E402
from prunekit.data import Dataset, Split  # noqa: E402
from prunekit.pipeline import prune  # noqa: E402
from prunekit.progress import NullReporter  # noqa: E402
from prunekit.spec import PruneSpec  # noqa: E402
from prunekit.structured import model_cost  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "fashion_mnist.npz"
WORK = ROOT / "bench" / "work"
RESULTS = ROOT / "bench" / "results"
RAW = RESULTS / "raw"
WIDTHS = (32, 32, 64, 64, 128, 128)


class PrintReporter(NullReporter):
    def __init__(self, label: str) -> None:
        self.label = label
        self.started = time.perf_counter()

    def phase(self, name: str, fraction: float = 0.0, **detail: Any) -> None:
        t = time.perf_counter() - self.started
        print(f"  [{self.label} {t:7.1f}s] {name} {detail or ''}", flush=True)

    def event(self, message: str, level: str = "info", **detail: Any) -> None:
        if level != "info" or "epoch" in message:
            print(f"  [{self.label}] {message}", flush=True)


def label_for(kind: str, ratio: float) -> str:
    """A pruned model's label: ``filter_l1`` at the bar ratio (as older raw files name it),
    ``filter_l1_r0.25`` at the others."""
    return kind if ratio == BAR_RATIO else f"{kind}_r{ratio:g}"


def vgg(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((28, 28, 1), name="image")
    x = inp
    for i, f in enumerate(WIDTHS):
        x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        # momentum 0.9: moving statistics settle within the short training budget
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        if i % 2 == 1:
            x = keras.layers.MaxPooling2D(name=f"pool{i // 2}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inp, out, name="vgg_fashion")


def load_data(n_train: int, n_val: int, seed: int) -> tuple[Split, Split, Split]:
    with np.load(DATA, allow_pickle=False) as d:
        x_train = d["x_train"][..., None].astype("float32") / 255.0
        y_train = d["y_train"].astype("int64")
        x_test = d["x_test"][..., None].astype("float32") / 255.0
        y_test = d["y_test"].astype("int64")
    perm = np.random.default_rng(seed).permutation(len(x_train))
    val_idx, train_idx = perm[:n_val], perm[n_val : n_val + n_train]
    return (
        Split(x_train[train_idx], y_train[train_idx]),
        Split(x_train[val_idx], y_train[val_idx]),
        Split(x_test, y_test),
    )


def accuracy(model: keras.Model, split: Split) -> float:
    logits = model.predict(split.x, batch_size=500, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == split.y))


def dense_path(cfg: dict[str, Any]) -> Path:
    """Where the dense model trained with ``cfg`` is cached (keyed by the whole config)."""
    key = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]
    return WORK / f"vgg_dense_{key}.keras"


def train_dense(cfg: dict[str, Any], train: Split, val: Split) -> tuple[Path, dict[str, Any]]:
    path = dense_path(cfg)
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        print(f"dense model cached: {path.name}", flush=True)
        return path, json.loads(meta_path.read_text())
    model = vgg(cfg["seed"])
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    started = time.perf_counter()
    hist = model.fit(
        train.x,
        train.y,
        batch_size=64,
        epochs=cfg["dense_epochs"],
        validation_data=(val.x, val.y),
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy", patience=2, restore_best_weights=True
            ),
            keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy", factor=0.3, patience=1),
        ],
        verbose=2,
    )
    WORK.mkdir(parents=True, exist_ok=True)
    # a fresh optimizer: the file holds the model, not Adam's slots (fair size comparison)
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.save(path)
    meta = {
        "train_seconds": round(time.perf_counter() - started, 1),
        "epochs_run": len(hist.history["loss"]),
        "val_accuracy_per_epoch": [round(v, 4) for v in hist.history["val_accuracy"]],
    }
    meta_path.write_text(json.dumps(meta))
    return path, meta


def latency(
    models: dict[str, keras.Model], runs: int, warmup: int, batch: int = 32
) -> dict[str, Any]:
    """Median ms per batch of ``batch``, models timed alternately in this process."""
    x = tf.constant(np.random.default_rng(0).random((batch, 28, 28, 1), dtype=np.float32))
    fns = {}
    for name, m in models.items():
        fn = tf.function(lambda t, m=m: m(t, training=False))
        for _ in range(warmup):
            fn(x).numpy()
        fns[name] = fn
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(runs):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn(x).numpy()
            times[name].append((time.perf_counter() - t) * 1000)
    return {
        name: {
            "median_ms": round(statistics.median(v), 3),
            "p10_ms": round(float(np.percentile(v, 10)), 3),
            "p90_ms": round(float(np.percentile(v, 90)), 3),
            "runs": len(v),
        }
        for name, v in times.items()
    }


FULL_RATIOS = (0.25, 0.5, 0.75)  # share of each prunable group's channels removed
BAR_RATIO = 0.5  # the structured-pruning bar (2x latency, 3x FLOPs, <= 1 point) is judged here


def measure(
    quick: bool,
    n_train: int | None = None,
    seed: int = 0,
    ratios: tuple[float, ...] | None = None,
) -> dict[str, Any]:
    """Train (or load) the dense VGG, prune it both ways at every channel ratio, time every
    model in one process: the raw result."""
    cfg = {
        "n_train": n_train or (3000 if quick else 15000),
        "n_val": 1000 if quick else 5000,
        "dense_epochs": 2 if quick else 12,
        "seed": seed,
    }
    runs, warmup = (30, 5) if quick else (50, 10)
    # cosine: what the results were measured with (structured fine-tuning used to always
    # decay; it now follows fine_tune.schedule, whose default is constant)
    ft = {
        "epochs": 1 if quick else 5,
        "batch_size": 64,
        "learning_rate": 1e-3,
        "schedule": "cosine",
    }
    ratios = tuple(ratios or ((BAR_RATIO,) if quick else FULL_RATIOS))
    strategies: dict[str, dict[str, Any]] = {}
    for ratio in ratios:
        strategies[label_for("slimming", ratio)] = {
            "name": "slimming",
            "ratio": ratio,
            "l1_lambda": 5e-3,
            "sparsity_epochs": 1 if quick else 3,
            "sparsity_learning_rate": 3e-3,
            "min_channels": 8,
        }
        strategies[label_for("filter_l1", ratio)] = {
            "name": "filter",
            "ratio": ratio,
            "criterion": "l1",
            "scope": "uniform",
        }

    print(f"config: {cfg}", flush=True)
    train, val, test = load_data(cfg["n_train"], cfg["n_val"], cfg["seed"])
    dense_path, dense_meta = train_dense(cfg, train, val)
    dense = keras.saving.load_model(dense_path, safe_mode=True)
    dense_cost = model_cost(dense)
    result: dict[str, Any] = {
        "benchmark": "structured_vgg",
        "quick": quick,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": cfg,
        "data": {
            "dataset": "fashion_mnist (x/255, 28x28x1)",
            "train_samples": len(train),
            "train_subsampled_from": 60000 - cfg["n_val"],
            "val_samples": len(val),
            "val": "carved from the training set (seeded); used for the dense model's best epoch",
            "test_samples": len(test),
        },
        "machine": {"platform": platform.platform(), **machine_info(with_tensorflow=True)},
        "dense": {
            **dense_meta,
            "val_accuracy": round(accuracy(dense, val), 4),
            "test_accuracy": round(accuracy(dense, test), 4),
            "flops": dense_cost.flops,
            "params": dense_cost.params,
            "size_bytes": dense_path.stat().st_size,
        },
        "fine_tune": ft,
        "latency_protocol": f"batches of 32 and of 1, tf.function, {warmup} warm-up calls, "
        f"{runs} timed runs per model, models alternated in one process, median",
        "strategies": {},
    }
    print(f"dense: {result['dense']}", flush=True)
    dataset = Dataset(train=train, val=val)
    pruned_models: dict[str, keras.Model] = {}
    for label, strategy in strategies.items():
        spec = PruneSpec(strategy=strategy, fine_tune=ft, seed=cfg["seed"])
        out = WORK / f"out_{label}{'_quick' if quick else ''}"
        started = time.perf_counter()
        res = prune(dense_path, "keras", spec, out, reporter=PrintReporter(label), data=dataset)
        wall = time.perf_counter() - started
        pruned = keras.saving.load_model(res.model_path, safe_mode=True)
        pruned_models[label] = pruned
        cost = model_cost(pruned)
        s = res.metrics["details"]["structured"]
        test_acc = accuracy(pruned, test)
        result["strategies"][label] = {
            "spec": {"strategy": strategy, "fine_tune": ft},
            "wall_seconds": round(wall, 1),
            "val_accuracy": round(accuracy(pruned, val), 4),
            "test_accuracy": round(test_acc, 4),
            "accuracy_drop_points": round(100 * (result["dense"]["test_accuracy"] - test_acc), 2),
            "flops": cost.flops,
            "flops_reduction": round(dense_cost.flops / cost.flops, 3),
            "params": cost.params,
            "params_reduction": round(dense_cost.params / cost.params, 3),
            "size_bytes": res.model_path.stat().st_size,
            "saved_model_zip_bytes": {k.value: v.stat().st_size for k, v in res.alternates.items()},
            "widths": [int(pruned.get_layer(f"conv{i}").filters) for i in range(len(WIDTHS))],
            "details": {
                k: s[k] for k in ("channels", "gamma", "sparsity_training", "fine_tune") if k in s
            },
        }
        print(f"{label}: {json.dumps(result['strategies'][label])[:600]}", flush=True)

    time_latency(result, dense, pruned_models, runs, warmup)
    return write_raw(result, quick)


def time_latency(
    result: dict[str, Any],
    dense: keras.Model,
    pruned: dict[str, keras.Model],
    runs: int,
    warmup: int,
) -> None:
    """Time every pruned model *paired with the dense one* (the two alternated, batch 32
    then 1) and fill the raw result's latency fields, speed-ups and bar checks.

    A pair is what a user comparing two models would run, and it keeps the protocol the
    same however many ratios are swept. (Checked once against one round-robin over all
    seven models: batch-32 speed-ups within 3%, batch-1 within 11%.) The dense model's
    figure is the median over its pairs."""
    result["latency_protocol"] = (
        f"batches of 32 and of 1, tf.function, {warmup} warm-up calls, {runs} timed runs "
        "per model, each pruned model alternated with the dense one in one process (one "
        "pair at a time), median; speed-ups against the dense median of the same pair"
    )
    for key, batch in (("latency_ms_batch32", 32), ("latency_ms_batch1", 1)):
        out: dict[str, Any] = {}
        dense_pairs: list[dict[str, Any]] = []
        for label, model in pruned.items():
            pair = latency({"dense": dense, label: model}, runs, warmup, batch=batch)
            out[label] = {**pair[label], "paired_dense_median_ms": pair["dense"]["median_ms"]}
            dense_pairs.append(pair["dense"])
        out["dense"] = {  # medians over the pairs of the dense model's median, p10 and p90
            k: round(statistics.median(d[k] for d in dense_pairs), 3)
            for k in ("median_ms", "p10_ms", "p90_ms")
        }
        out["dense"]["runs"] = runs * len(dense_pairs)
        result[key] = out
    lat, lat1 = result["latency_ms_batch32"], result["latency_ms_batch1"]
    for label in pruned:
        row = result["strategies"][label]
        row["latency_speedup"] = round(
            lat[label]["paired_dense_median_ms"] / lat[label]["median_ms"], 3
        )
        row["latency_speedup_b1"] = round(
            lat1[label]["paired_dense_median_ms"] / lat1[label]["median_ms"], 3
        )
        row["bar"] = {
            "latency_2x": row["latency_speedup"] >= 2.0,
            "flops_3x": row["flops_reduction"] >= 3.0,
            "accuracy_drop_le_1pt": row["accuracy_drop_points"] <= 1.0,
        }
    print(json.dumps({k: result["strategies"][k].get("bar") for k in pruned}, indent=1))


def write_raw(result: dict[str, Any], quick: bool) -> dict[str, Any]:
    dest = (WORK if quick else RAW) / f"structured_vgg{'_quick' if quick else ''}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {dest}")
    return result


def remeasure_latency(raw: dict[str, Any]) -> dict[str, Any]:
    """Time the models a full run left in ``bench/work/`` again (same protocol as a run),
    without retraining anything; the raw result with new latency figures."""
    cfg = raw["config"]
    dense = keras.saving.load_model(dense_path(cfg), safe_mode=True)
    pruned = {
        label: keras.saving.load_model(WORK / f"out_{label}" / "model.keras", safe_mode=True)
        for label in raw["strategies"]
    }
    runs, warmup = (30, 5) if raw.get("quick") else (50, 10)
    time_latency(raw, dense, pruned, runs, warmup)
    raw["latency_remeasured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return write_raw(raw, bool(raw.get("quick")))


# ------------------------------------------------------------------------- common schema
COLUMNS = [
    "model",
    "strategy",
    "ratio",
    "accuracy",
    "accuracy_drop_points",
    "flops",
    "flops_reduction",
    "params",
    "params_reduction",
    "latency_ms_b32",
    "latency_speedup",
    "latency_ms_b1",
    "latency_speedup_b1",
    "size_bytes",
    "wall_s",
    "widths",
    "bar_met",
]


def result_machine(machine: dict[str, Any]) -> dict[str, Any]:
    """``machine`` in the common keys; files from before runs recorded ``machine_info()``
    only have platform, CPU count and versions (the CPU model was not recorded)."""
    if "cpu" in machine:
        return machine
    return {
        "cpu": f"CPU model not recorded ({machine.get('platform', '?')})",
        "cores": machine.get("cpu_count"),
        **{k: machine[k] for k in ("tensorflow", "keras") if k in machine},
    }


def to_result(raw: dict[str, Any]) -> Path:
    """Write a raw result (:func:`measure`'s) in the common schema: one row per model."""
    quick = bool(raw.get("quick", False))
    dense = raw["dense"]
    lat = raw["latency_ms_batch32"]
    lat1 = raw.get("latency_ms_batch1", {})  # older raw files timed batch 32 only

    def b1(label: str) -> float | None:
        return lat1[label]["median_ms"] if label in lat1 else None

    rows: list[dict[str, Any]] = [
        {
            "model": "dense",
            "strategy": "dense",
            "ratio": 0.0,
            "accuracy": dense["test_accuracy"],
            "val_accuracy": dense["val_accuracy"],
            "accuracy_drop_points": 0.0,
            "flops": dense["flops"],
            "flops_reduction": 1.0,
            "params": dense["params"],
            "params_reduction": 1.0,
            "latency_ms_b32": lat["dense"]["median_ms"],
            "latency_p10_ms": lat["dense"]["p10_ms"],
            "latency_p90_ms": lat["dense"]["p90_ms"],
            "latency_speedup": 1.0,
            "latency_ms_b1": b1("dense"),
            "latency_speedup_b1": 1.0 if lat1 else None,
            "size_bytes": dense["size_bytes"],
            "wall_s": dense.get("train_seconds"),
            "widths": list(WIDTHS),
            "epochs": dense.get("epochs_run"),
        }
    ]
    for label, r in raw["strategies"].items():
        strategy = r["spec"]["strategy"]
        rows.append({
            "model": label,
            "strategy": strategy["name"],
            "ratio": strategy["ratio"],
            "accuracy": r["test_accuracy"],
            "val_accuracy": r["val_accuracy"],
            "accuracy_drop_points": r["accuracy_drop_points"],
            "flops": r["flops"],
            "flops_reduction": r["flops_reduction"],
            "params": r["params"],
            "params_reduction": r["params_reduction"],
            "latency_ms_b32": lat[label]["median_ms"],
            "latency_p10_ms": lat[label]["p10_ms"],
            "latency_p90_ms": lat[label]["p90_ms"],
            "latency_speedup": r["latency_speedup"],
            "latency_ms_b1": b1(label),
            "latency_speedup_b1": r.get("latency_speedup_b1"),
            "size_bytes": r["size_bytes"],
            "wall_s": r["wall_seconds"],
            "widths": r["widths"],
            "bar_met": all(r["bar"].values()),
            "spec": r["spec"],
        })  # fmt: skip
    headline: list[dict[str, Any]] = []
    for row in rows[1:]:
        if row["ratio"] != BAR_RATIO:  # the other ratios are the trade-off curve
            continue
        name = f"VGG / Fashion-MNIST, `{row['strategy']}` ratio {row['ratio']:g}"
        headline += [
            {"metric": f"{name}: CPU latency speed-up, batch 32", "value": row["latency_speedup"],
             "unit": "x"},
            {"metric": f"{name}: FLOPs cut", "value": row["flops_reduction"], "unit": "x"},
        ]  # fmt: skip
        if row.get("latency_speedup_b1") is not None:
            headline.append({"metric": f"{name}: CPU latency speed-up, batch 1",
                             "value": row["latency_speedup_b1"], "unit": "x"})  # fmt: skip
        headline += [
            {"metric": f"{name}: test accuracy drop", "value": row["accuracy_drop_points"],
             "unit": "points"},
        ]  # fmt: skip
    data = raw["data"]
    notes = [
        f"Fashion-MNIST, training set subsampled to {data['train_samples']} images, "
        f"{data['val_samples']} validation images carved from it (the dense model's best "
        f"epoch), accuracy on the {data['test_samples']}-image test set.",
        f"Latency: {raw['latency_protocol']}. The dense model trained "
        f"{dense.get('epochs_run')} epochs (early stopping); each pruned model was "
        f"fine-tuned {raw['fine_tune']['epochs']} epochs (slimming also ran sparsity "
        "training first).",
        f"The bar, judged at channel ratio {BAR_RATIO:g}: latency at least 2x faster, FLOPs "
        "at least 3x fewer, at most 1 point of test accuracy lost (`bar_met`). The other "
        "ratios show the trade-off curve (plot); `bar_met` is computed for them too.",
    ]
    extra = {k: v for k, v in raw.items() if k not in ("benchmark", "quick", "machine")}
    return write_result(
        "structured_vgg",
        rows,
        bench_command("structured_vgg", quick),
        extra,
        quick=quick,
        columns=COLUMNS,
        headline=headline,
        notes=notes,
        machine=result_machine(raw.get("machine") or {}),
        created_at=raw.get("generated_at") or "not recorded in the raw file",
    )


def main(quick: bool = False) -> Path:
    """Measure (``quick``: a smoke run) and write the common result; its path."""
    return to_result(measure(quick))


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--train", type=int, default=None, help="training samples used")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--ratios",
        type=lambda s: tuple(float(v) for v in s.split(",")),
        default=None,
        help=f"channel ratios removed (default {','.join(map(str, FULL_RATIOS))}; quick: "
        f"{BAR_RATIO})",
    )
    ap.add_argument(
        "--from-raw",
        type=Path,
        metavar="FILE",
        help="measure nothing: convert this raw result file to the common schema",
    )
    ap.add_argument(
        "--latency-only",
        action="store_true",
        help="with --from-raw: time the models that run left in bench/work/ again",
    )
    args = ap.parse_args(argv)
    if args.from_raw:
        raw = json.loads(args.from_raw.read_text())
        if args.latency_only:
            raw = remeasure_latency(raw)
    else:
        raw = measure(args.quick, args.train, args.seed, args.ratios)
    print(f"wrote {to_result(raw)}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())

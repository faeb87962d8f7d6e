"""Accuracy-budget search (strategy ``auto``) against a grid of fixed ratios.

Three comparisons, each side by side in one run, through the engine (``PruningContext`` +
the strategies, the code the worker runs inside ``prunekit.pipeline.prune``):

1. LeNet-300-100 and LeNet-5 on MNIST, 0.5-point validation budget. Baseline: uniform
   magnitude pruning at each ratio of a grid, each fine-tuned ``--epochs``; the largest
   ratio within budget is the baseline's answer, the sum of the grid's wall times its cost.
   The search (``auto``, objective size) runs with a fine-tune epoch cap equal to the
   grid's total epochs. Reported: sparsity found, wall time against 3x the grid's.
2. A small VGG on Fashion-MNIST, structured, 1-point budget, latency objective. Baseline:
   ``filter`` (L1, uniform) at each ratio of a grid; the fastest model within budget.
   Both chosen models and the dense one are timed again together at the end, interleaved:
   7 rounds, each the 10th percentile of 60 batch-32 runs, median over rounds.
3. LeNet-5 at 95% sparsity: uniform vs lamp vs erk magnitude pruning, fine-tuned, test
   accuracy, mean of 3 seeds (each seed trains its own dense model).

Data are subsets (``--train``, 1000 validation, 2000 test images) so that a run fits the
shared 2-core machine in minutes; the output says how many were used and the load average.

    python -m bench.search                 # everything (about 15-25 min on 2 loaded cores)
    python -m bench.search --only mnist    # one part: mnist | vgg | alloc
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from bench import architectures
from bench import data as bench_data
from prunekit.context import PruningContext
from prunekit.data import Dataset, Split
from prunekit.evaluation import evaluate
from prunekit.formats import ModelFormat
from prunekit.losses import LossName, LossSpec
from prunekit.model import LoadedModel
from prunekit.progress import NullReporter
from prunekit.search import BudgetNotMetError, time_forward
from prunekit.spec import PruneSpec
from prunekit.strategies import build, parse_params

RESULTS = Path(__file__).resolve().parent / "results" / "search.json"
LOSS = LossSpec(LossName.SPARSE_CATEGORICAL, from_logits=True)
GRID = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
VGG_GRID = (0.125, 0.25, 0.375, 0.5)
VGG_WIDTHS = (8, 8, 16, 16, 32, 32)


def load(name: str, n_train: int, channel_axis: bool, seed: int = 0) -> Dataset:
    s = bench_data.load(
        name,
        channel_axis=channel_axis,
        val_size=5000,
        seed=seed,
        train_subsample=n_train,
        val_subsample=1000,
        test_subsample=2000,
    )
    return Dataset(
        train=Split(s.x_train, s.y_train),
        val=Split(s.x_val, s.y_val),
        test=Split(s.x_test, s.y_test),
    )


def vgg(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((28, 28, 1), name="image")
    x = inp
    for i, f in enumerate(VGG_WIDTHS):
        x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        if i % 2 == 1:
            x = keras.layers.MaxPooling2D(name=f"pool{i // 2}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(x), name="vgg_fashion")


def train_dense(model: keras.Model, data: Dataset, epochs: int, path: Path) -> Path:
    """Train and save ``model``; a file already at ``path`` (same name: same model, data size
    and epochs) is reused."""
    if path.exists():
        return path
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(data.train.x, data.train.y, batch_size=64, epochs=epochs, verbose=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


class PrintReporter(NullReporter):
    """Prints the search's events (candidates) so a long run shows where it is."""

    def event(self, message: str, level: str = "info", **detail: Any) -> None:
        print(f"    {message}", flush=True)


def context(path: Path, strategy: dict[str, Any], data: Dataset, epochs: int, seed: int = 0
            ) -> PruningContext:  # fmt: skip
    model = LoadedModel(format=ModelFormat.KERAS, keras_model=keras.models.load_model(path))
    spec = PruneSpec(
        strategy=strategy,
        seed=seed,
        fine_tune={"epochs": epochs, "batch_size": 64, "learning_rate": 1e-3},
    )
    return PruningContext(model, spec, PrintReporter(), data=data, loss=LOSS)


def acc(model: LoadedModel | keras.Model, split: Split) -> float:
    if isinstance(model, keras.Model):
        model = LoadedModel(format=ModelFormat.KERAS, keras_model=model)
    return float(evaluate(model, split, LOSS)["accuracy"] or 0.0)


def prunable_sparsity(model: LoadedModel) -> float:
    arrays = [w.numpy() for w in model.prunable_weights()]
    return float(sum(int((a == 0).sum()) for a in arrays) / sum(a.size for a in arrays))


def load_avg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


# ---------------------------------------------------------------- 1. unstructured
def unstructured(arch: str, data: Dataset, epochs: int, work: Path, budget: float) -> dict:
    builder = architectures.lenet_300_100 if arch == "lenet_300_100" else architectures.lenet5
    shape = (28, 28) if arch == "lenet_300_100" else (28, 28, 1)
    keras.utils.set_random_seed(0)
    dense_path = train_dense(
        builder(keras, shape), data, 8, work / f"{arch}_{len(data.train)}_8.keras"
    )
    base_val = acc(keras.models.load_model(dense_path), data.val)
    dense_test = acc(keras.models.load_model(dense_path), data.test)
    grid = []
    started = time.perf_counter()
    for r in GRID:
        t0 = time.perf_counter()
        strategy = {"name": "magnitude", "sparsity": r, "allocation": "uniform"}
        ctx = context(dense_path, strategy, data, epochs)
        build(parse_params(ctx.spec.strategy)).run(ctx)
        v = acc(ctx.model, data.val)
        grid.append({"ratio": r, "val_accuracy": round(v, 4), "drop": round(base_val - v, 4),
                     "test_accuracy": round(acc(ctx.model, data.test), 4),
                     "seconds": round(time.perf_counter() - t0, 1)})  # fmt: skip
        print(f"  {arch} grid {r}: val {v:.4f} (drop {base_val - v:+.4f})", flush=True)
    grid_seconds = time.perf_counter() - started
    ok = [g for g in grid if g["drop"] <= budget + 1e-9]
    best = max(ok, key=lambda g: g["ratio"]) if ok else None

    t0 = time.perf_counter()
    strategy = {
        "name": "auto",
        "max_accuracy_drop": budget,
        "objective": "size",
        "max_fine_tune_epochs": epochs * len(GRID),
        "candidate_epochs": epochs,
        "final_epochs": epochs,
        "max_samples": 1000,
    }
    ctx = context(dense_path, strategy, data, epochs)
    build(parse_params(ctx.spec.strategy)).run(ctx)
    search_seconds = time.perf_counter() - t0
    s = ctx.cache["search"]
    chosen = s["candidates"][s["chosen"]]
    out = {
        "model": arch,
        "budget": budget,
        "baseline_val_accuracy": round(base_val, 4),
        "dense_test_accuracy": round(dense_test, 4),
        "grid": grid,
        "grid_best": best,
        "grid_seconds": round(grid_seconds, 1),
        "search": {
            "sparsity": round(prunable_sparsity(ctx.model), 4),
            "chosen_ratio": chosen["ratio"],
            "val_drop": s["final"].get("val_drop", chosen["drop"]),
            "test_accuracy": s["test"]["accuracy_after"],
            "candidates": len(s["candidates"]),
            "epochs": s["fine_tune_epochs_used"],
            "stopped": s["stopped"],
            "seconds": round(search_seconds, 1),
        },
        "time_ratio": round(search_seconds / grid_seconds, 2),
        "load_avg": load_avg(),
    }
    print(json.dumps(out["search"]), f"grid best {best}", flush=True)
    return out


# ------------------------------------------------------------------ 2. structured
def structured(data: Dataset, epochs: int, work: Path, budget: float) -> dict[str, Any]:
    from prunekit.structured.runner import outcome  # noqa: F401  (TF graph helpers loaded)

    name = f"vgg_small_{len(data.train)}_6.keras"
    dense_path = train_dense(vgg(0), data, 6, work / name)
    dense = keras.models.load_model(dense_path)
    base_val = acc(dense, data.val)
    grid = []
    models: dict[str, keras.Model] = {"dense": dense}
    started = time.perf_counter()
    for r in VGG_GRID:
        t0 = time.perf_counter()
        ctx = context(dense_path, {"name": "filter", "ratio": r}, data, epochs)
        res = build(parse_params(ctx.spec.strategy)).run(ctx)
        assert res.model is not None and res.model.keras_model is not None
        m = res.model.keras_model
        v = acc(m, data.val)
        models[f"grid_{r}"] = m
        grid.append({"ratio": r, "val_accuracy": round(v, 4), "drop": round(base_val - v, 4),
                     "test_accuracy": round(acc(m, data.test), 4),
                     "seconds": round(time.perf_counter() - t0, 1)})  # fmt: skip
        print(f"  vgg grid {r}: val {v:.4f} (drop {base_val - v:+.4f})", flush=True)
    grid_seconds = time.perf_counter() - started
    ok = [g for g in grid if g["drop"] <= budget + 1e-9]
    best = max(ok, key=lambda g: g["ratio"]) if ok else None

    t0 = time.perf_counter()
    strategy = {
        "name": "auto",
        "max_accuracy_drop": budget,
        "objective": "latency",
        "family": "structured",
        "max_fine_tune_epochs": epochs * len(VGG_GRID),
        "candidate_epochs": epochs,
        "final_epochs": epochs,
        "max_samples": 1000,
    }
    ctx = context(dense_path, strategy, data, epochs)
    try:
        res = build(parse_params(ctx.spec.strategy)).run(ctx)
    except BudgetNotMetError as exc:
        print(f"  search failed: {exc}", flush=True)
        return {"model": "vgg_small", "budget": budget, "grid": grid, "grid_best": best,
                "baseline_val_accuracy": round(base_val, 4), "search_failed": str(exc),
                "search_seconds": round(time.perf_counter() - t0, 1),
                "grid_seconds": round(grid_seconds, 1), "load_avg": load_avg()}  # fmt: skip
    search_seconds = time.perf_counter() - t0
    assert res.model is not None and res.model.keras_model is not None
    models["search"] = res.model.keras_model
    s = ctx.cache["search"]
    chosen = s["candidates"][s["chosen"]]
    # the models compared are timed again together, interleaved, on one warm process
    timed: dict[str, list[float]] = {k: [] for k in models if k in ("dense", "search")}
    if best is not None:
        timed[f"grid_{best['ratio']}"] = []
    for _ in range(7):
        for k in timed:
            wrapped = LoadedModel(format=ModelFormat.KERAS, keras_model=models[k])
            timed[k].append(time_forward(wrapped, [28, 28, 1], runs=60) or float("nan"))
    latency = {k: round(float(np.median(v)), 4) for k, v in timed.items()}
    out = {
        "model": "vgg_small",
        "widths": list(VGG_WIDTHS),
        "budget": budget,
        "baseline_val_accuracy": round(base_val, 4),
        "dense_test_accuracy": round(acc(dense, data.test), 4),
        "grid": grid,
        "grid_best": best,
        "grid_seconds": round(grid_seconds, 1),
        "search": {
            "chosen_ratio": chosen["ratio"],
            "val_drop": s["final"].get("val_drop", chosen["drop"]),
            "test_accuracy": s["test"]["accuracy_after"],
            "flops": chosen["flops"],
            "candidates": len(s["candidates"]),
            "epochs": s["fine_tune_epochs_used"],
            "stopped": s["stopped"],
            "seconds": round(search_seconds, 1),
        },
        "latency_ms_batch32": latency,
        "time_ratio": round(search_seconds / grid_seconds, 2),
        "load_avg": load_avg(),
    }
    print(json.dumps(out["search"]), latency, f"grid best {best}", flush=True)
    return out


# ---------------------------------------------------------------- 3. allocations
def allocations(n_train: int, epochs: int, work: Path, seeds: int = 3) -> dict:
    rows: dict[str, list[float]] = {"uniform": [], "lamp": [], "erk": [], "global": []}
    for seed in range(seeds):
        data = load("mnist", n_train, True, seed=seed)
        keras.utils.set_random_seed(seed)
        name = f"lenet5_s{seed}_{len(data.train)}_8.keras"
        path = train_dense(architectures.lenet5(keras), data, 8, work / name)
        for rule in rows:
            strategy = {"name": "magnitude", "sparsity": 0.95, "allocation": rule}
            ctx = context(path, strategy, data, epochs, seed=seed)
            build(parse_params(ctx.spec.strategy)).run(ctx)
            rows[rule].append(acc(ctx.model, data.test))
            print(f"  seed {seed} {rule}: test {rows[rule][-1]:.4f}", flush=True)
    return {
        "sparsity": 0.95,
        "fine_tune_epochs": epochs,
        "test_accuracy": {k: [round(v, 4) for v in vs] for k, vs in rows.items()},
        "mean": {k: round(float(np.mean(v)), 4) for k, v in rows.items()},
        "std": {k: round(float(np.std(v)), 4) for k, v in rows.items()},
        "load_avg": load_avg(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=("mnist", "vgg", "alloc"), default=None)
    ap.add_argument("--train", type=int, default=6000, help="training images (subset)")
    ap.add_argument("--epochs", type=int, default=1, help="fine-tune epochs per candidate")
    ap.add_argument("--vgg-epochs", type=int, default=3, help="the same, for the VGG part")
    args = ap.parse_args()
    work = Path(__file__).resolve().parent / "work" / "search"
    out: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    out["command"] = "python -m bench.search" + (f" --only {args.only}" if args.only else "")
    out["train_images"] = args.train
    if args.only in (None, "mnist"):
        mnist = load("mnist", args.train, False)
        out["lenet_300_100"] = unstructured("lenet_300_100", mnist, args.epochs, work, 0.005)
        mnist_c = load("mnist", args.train, True)
        out["lenet5"] = unstructured("lenet5", mnist_c, args.epochs, work, 0.005)
        RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    if args.only in (None, "vgg"):
        fashion = load("fashion_mnist", args.train, True)
        out["vgg_structured"] = structured(fashion, args.vgg_epochs, work, 0.01)
        RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    if args.only in (None, "alloc"):
        out["allocation_95"] = allocations(args.train, 2, work)
        RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

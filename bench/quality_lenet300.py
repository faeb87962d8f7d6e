"""Quality benchmark: every weight-level strategy on LeNet-300-100 / MNIST.

One dense baseline (784-300-100-10, ReLU, logits; Adam 1e-3) trained once and cached under
``bench/work/``. A validation split (5,000 images, seeded) is carved from train and is the
only split strategies see (for choosing hyper-parameters and for the iterative ones); the
test split is touched once per run, for the table. Each strategy starts from the same dense
weights and is run through the engine API (``PruningContext`` + ``build(params).run``).

    python bench/quality_lenet300.py --quick      # 10k training images, 1-epoch budgets
    python bench/quality_lenet300.py              # full: 55k images, BUDGET epochs each

Writes ``bench/results/quality_lenet300[_quick].json``. The bar: at 90% sparsity every
fine-tuning strategy within 0.5 points of dense test accuracy; the best at 95% within 0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from prunekit.context import PruningContext, evaluate  # noqa: E402
from prunekit.data import Dataset, Split  # noqa: E402
from prunekit.formats import ModelFormat  # noqa: E402
from prunekit.losses import LossName, LossSpec  # noqa: E402
from prunekit.model import LoadedModel  # noqa: E402
from prunekit.spec import PruneSpec  # noqa: E402
from prunekit.strategies import build, parse_params  # noqa: E402

MNIST = ROOT.parent / "shared" / "data" / "mnist.npz"
WORK = ROOT / "bench" / "work"
RESULTS = ROOT / "bench" / "results"
LOSS = LossSpec(LossName.SPARSE_CATEGORICAL, from_logits=True)
SEED = 0


def lenet300() -> keras.Model:
    inp = keras.Input((784,), name="pixels")
    x = keras.layers.Dense(300, activation="relu", name="fc1")(inp)
    x = keras.layers.Dense(100, activation="relu", name="fc2")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(x), name="lenet300")


def load_mnist(train_n: int | None) -> tuple[Split, Split, Split]:
    with np.load(MNIST, allow_pickle=False) as d:
        x = d["x_train"].reshape(-1, 784).astype("float32") / 255.0
        y = d["y_train"].astype("int64")
        xt = d["x_test"].reshape(-1, 784).astype("float32") / 255.0
        yt = d["y_test"].astype("int64")
    perm = np.random.default_rng(SEED).permutation(len(x))
    val_idx, train_idx = perm[:5000], perm[5000:]
    if train_n is not None:
        train_idx = train_idx[:train_n]
    return Split(x[train_idx], y[train_idx]), Split(x[val_idx], y[val_idx]), Split(xt, yt)


def dense_baseline(train: Split, val: Split, epochs: int, tag: str) -> Path:
    path = WORK / f"lenet300_dense_{tag}.weights.h5"
    if path.exists():
        return path
    WORK.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(SEED)
    model = lenet300()
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(
        train.x, train.y, batch_size=128, epochs=epochs, validation_data=(val.x, val.y), verbose=2
    )
    model.save_weights(path)
    return path


def configurations(budget: int, sparsities: list[float]) -> list[tuple[dict[str, Any], int]]:
    """(strategy params, fine-tune epochs) with roughly the same training budget each."""
    out: list[tuple[dict[str, Any], int]] = []
    pre = max(1, budget // 3)
    for s in sparsities:
        out += [
            ({"name": "magnitude", "sparsity": s}, budget),
            ({"name": "random", "sparsity": s}, budget),
            ({"name": "l1", "sparsity": s, "epochs": pre, "l1": 1e-4}, budget),
            ({"name": "l0", "sparsity": s, "epochs": pre}, budget),
            ({"name": "saliency", "sparsity": s, "steps": 3}, max(1, budget // 3)),
            ({"name": "gradual", "sparsity": s, "frequency": 100}, budget + pre),
            ({"name": "gradual", "sparsity": s, "frequency": 100, "regrow": True}, budget + pre),
        ]
    out.append(({"name": "nm", "n": 2, "m": 4}, budget))
    return out


def run_one(
    weights: Path, raw: dict[str, Any], epochs: int, data: Dataset, test: Split, lr: float
) -> dict[str, Any]:
    keras.utils.set_random_seed(SEED)
    model = lenet300()
    model.load_weights(weights)
    loaded = LoadedModel(ModelFormat.KERAS, keras_model=model)
    spec = PruneSpec(
        strategy=raw,
        seed=SEED,
        fine_tune={"epochs": epochs, "batch_size": 128, "learning_rate": lr, "optimizer": "adam"},
    )
    ctx = PruningContext(loaded, spec, data=data, loss=LOSS)
    started = time.perf_counter()
    outcome = build(parse_params(raw)).run(ctx)
    wall = time.perf_counter() - started
    arrays = [w.numpy() for w in loaded.prunable_weights()]
    zeros = sum(int((a == 0).sum()) for a in arrays)
    total = sum(a.size for a in arrays)
    return {
        "strategy": raw["name"] + ("+regrow" if raw.get("regrow") else ""),
        "params": raw,
        "fine_tune_epochs": epochs,
        "sparsity": round(zeros / total, 6),
        "val_accuracy": evaluate(loaded, data.val, LOSS)["accuracy"] if data.val else None,
        "test_accuracy": evaluate(loaded, test, LOSS)["accuracy"],
        "wall_seconds": round(wall, 1),
        "details": {
            k: v for k, v in outcome.details.items() if k in ("expected_l0", "zeros_after_l1")
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10k images, 1-epoch budgets")
    ap.add_argument("--budget", type=int, default=None, help="fine-tune epochs per strategy")
    ap.add_argument("--dense-epochs", type=int, default=None)
    ap.add_argument("--lr", type=float, default=5e-4, help="fine-tune learning rate (Adam)")
    ap.add_argument("--only", default=None, help="comma-separated strategy names")
    ap.add_argument("--sparsities", default="0.9,0.95")
    args = ap.parse_args()
    tag = "quick" if args.quick else "full"
    budget = args.budget or (1 if args.quick else 6)
    dense_epochs = args.dense_epochs or (5 if args.quick else 15)
    train, val, test = load_mnist(10_000 if args.quick else None)
    weights = dense_baseline(train, val, dense_epochs, tag)
    dense = lenet300()
    dense.load_weights(weights)
    dense_loaded = LoadedModel(ModelFormat.KERAS, keras_model=dense)
    dense_test = evaluate(dense_loaded, test, LOSS)["accuracy"]
    dense_val = evaluate(dense_loaded, val, LOSS)["accuracy"]
    print(f"dense: val {dense_val:.4f} test {dense_test:.4f}", flush=True)
    data = Dataset(train=train, val=val)  # no test split: strategies never see it
    sparsities = [float(s) for s in args.sparsities.split(",")]
    rows = []
    for raw, epochs in configurations(budget, sparsities):
        if args.only and raw["name"] not in args.only.split(","):
            continue
        row = run_one(weights, raw, epochs, data, test, args.lr)
        row["drop_points"] = round(100 * (dense_test - row["test_accuracy"]), 3)
        rows.append(row)
        print(
            f"{row['strategy']:15s} s={row['sparsity']:.4f} test={row['test_accuracy']:.4f} "
            f"drop={row['drop_points']:+.2f}pt val={row['val_accuracy']:.4f} "
            f"{row['wall_seconds']:.0f}s",
            flush=True,
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"quality_lenet300{'_quick' if args.quick else ''}.json"
    if args.only and out.exists():  # a partial rerun replaces only its own rows
        previous = json.loads(out.read_text())["results"]
        rerun = set(args.only.split(","))
        rows = [r for r in previous if r["params"]["name"] not in rerun] + rows
    out.write_text(
        json.dumps(
            {
                "mode": tag,
                "train_images": len(train),
                "budget_epochs": budget,
                "fine_tune_lr": args.lr,
                "dense": {
                    "epochs": dense_epochs,
                    "val_accuracy": dense_val,
                    "test_accuracy": dense_test,
                },
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "results": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

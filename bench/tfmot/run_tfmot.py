"""tfmot baseline: magnitude pruning with ``prune_low_magnitude`` (runs in bench/.venv-tfmot).

Run from the repository root (the driver ``bench.compare_tfmot`` does this for you):

    bench/.venv-tfmot/bin/python -m bench.tfmot.run_tfmot --config cfg.json --out out.json

Loads the dense baseline from the portable ``.npz`` the Keras 3 side wrote (or, without
one, trains it here), checks that tf_keras reproduces the Keras 3 test predictions, then
for every target sparsity: wraps the dense model with ``prune_low_magnitude`` under a
``PolynomialDecay(0 -> s)`` schedule, fine-tunes with ``UpdatePruningStep`` for the
configured budget, ``strip_pruning``s it and measures test accuracy, macro-F1, actual
kernel sparsity, gzip size of the weights and wall time.
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

# tfmot 0.8.1 itself sets TF_USE_LEGACY_KERAS=1 when imported and wraps tf_keras (Keras 2);
# set it before TensorFlow is imported so ``tf.keras`` is tf_keras here as well.
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from bench import architectures, data, metrics, training, weights_io
from bench.config import WORK_DIR, RunConfig, pruning_schedule_steps

STRATEGY = "tfmot_polynomial"
# Keras 3 and tf_keras run the same float32 maths, but kernels may differ in summation
# order; allow at most this fraction of test predictions to differ (0.01 points).
MAX_ACC_DIFF = 0.0001


def environment() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "tf_keras": keras.__version__,
        "tfmot": tfmot.__version__,
        "numpy": np.__version__,
        "TF_USE_LEGACY_KERAS": os.environ.get("TF_USE_LEGACY_KERAS", ""),
    }


def load_split(cfg: RunConfig) -> data.Split:
    return data.load_for(cfg)


def build(cfg: RunConfig, split: data.Split) -> Any:
    return architectures.build(keras, cfg.model, tuple(split.x_train.shape[1:]))


def dense_arrays(cfg: RunConfig, split: data.Split, log: Any) -> dict[str, np.ndarray]:
    """Weights of the dense baseline: from the portable file, else trained here."""
    if cfg.dense_weights:
        arrays, _ = weights_io.load_npz(cfg.dense_weights)
        return arrays
    print("no dense_weights given: training the dense baseline with tf_keras", file=log)
    keras.utils.set_random_seed(cfg.seed)
    model = build(cfg, split)
    training.compile_model(keras, model, training.dense_optimizer(keras, cfg, len(split.y_train)))
    model.fit(
        split.x_train,
        split.y_train,
        batch_size=cfg.batch_size,
        epochs=cfg.dense_epochs,
        verbose=0,
    )
    return weights_io.model_arrays(model)


def check_dense(cfg: RunConfig, split: data.Split, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Evaluate the dense weights in tf_keras and compare with the Keras 3 predictions."""
    model = build(cfg, split)
    weights_io.set_model_arrays(model, arrays)
    ev = training.evaluate(model, split.x_test, split.y_test)
    val = training.evaluate(model, split.x_val, split.y_val)
    out: dict[str, Any] = {
        "accuracy": ev["accuracy"],
        "macro_f1": ev["macro_f1"],
        "val_accuracy": val["accuracy"],
        "compressed_bytes": weights_io.compressed_bytes(arrays),
        **{k: v for k, v in weights_io.sparsity_report(arrays).items() if k != "per_layer"},
    }
    if cfg.reference_predictions:
        ref = np.load(cfg.reference_predictions, allow_pickle=False)
        ref_acc = metrics.accuracy(split.y_test, ref)
        out["keras3_accuracy"] = ref_acc
        out["prediction_agreement"] = float(np.mean(ref == ev["predictions"]))
        out["accuracy_diff"] = ev["accuracy"] - ref_acc
        out["equal_baseline"] = abs(ev["accuracy"] - ref_acc) <= MAX_ACC_DIFF + 1e-12
    return out


def prune_one(
    cfg: RunConfig, split: data.Split, arrays: dict[str, np.ndarray], sparsity: float
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    steps_per_epoch = int(np.ceil(len(split.y_train) / cfg.batch_size))
    sched = pruning_schedule_steps(cfg, steps_per_epoch)
    keras.utils.set_random_seed(cfg.seed)  # same shuffling for every sparsity

    t0 = time.perf_counter()
    base = build(cfg, split)
    weights_io.set_model_arrays(base, arrays)
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=sparsity,
        begin_step=sched["begin_step"],
        end_step=sched["end_step"],
        frequency=sched["frequency"],
    )
    pruned = tfmot.sparsity.keras.prune_low_magnitude(base, pruning_schedule=schedule)
    training.compile_model(
        keras,
        pruned,
        training.make_optimizer(
            keras,
            cfg.optimizer,
            cfg.finetune_lr,
            cfg.momentum,
            cfg.finetune_schedule,
            steps_per_epoch * cfg.finetune_epochs,
        ),
    )
    history = pruned.fit(
        split.x_train,
        split.y_train,
        batch_size=cfg.batch_size,
        epochs=cfg.finetune_epochs,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
        verbose=0,
    )
    final = tfmot.sparsity.keras.strip_pruning(pruned)
    wall_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    test = training.evaluate(final, split.x_test, split.y_test)
    val = training.evaluate(final, split.x_val, split.y_val)
    pruned_arrays = weights_io.model_arrays(final)
    report = weights_io.sparsity_report(pruned_arrays)
    row: dict[str, Any] = {
        "model": cfg.model,
        "strategy": STRATEGY,
        "sparsity": sparsity,
        "accuracy": test["accuracy"],
        "macro_f1": test["macro_f1"],
        "compressed_bytes": weights_io.compressed_bytes(pruned_arrays),
        "wall_s": round(wall_s, 2),
        "side": "tfmot",
        "dataset": cfg.dataset,
        "actual_sparsity": report["sparsity"],
        "per_layer_sparsity": report["per_layer"],
        "val_accuracy": val["accuracy"],
        "finetune_epochs": cfg.finetune_epochs,
        "finetune_steps": sched["total_steps"],
        "finetune_lr": cfg.finetune_lr,
        "finetune_schedule": cfg.finetune_schedule,
        "schedule": {"kind": "PolynomialDecay", "power": 3, **sched},
        "final_train_loss": round(float(history.history["loss"][-1]), 5),
        "eval_s": round(time.perf_counter() - t1, 2),
    }
    return row, pruned_arrays


def run(cfg: RunConfig, *, save_dir: Path | None = None, log: Any = sys.stderr) -> dict[str, Any]:
    split = load_split(cfg)
    arrays = dense_arrays(cfg, split, log)
    dense = check_dense(cfg, split, arrays)
    print(f"[tfmot] dense in tf_keras: {json.dumps(dense)}", file=log)
    rows = []
    for s in cfg.sparsities:
        row, pruned_arrays = prune_one(cfg, split, arrays, s)
        print(
            f"[tfmot] s={s:.2f} acc={row['accuracy']:.4f} f1={row['macro_f1']:.4f} "
            f"actual={row['actual_sparsity']:.4f} gz={row['compressed_bytes']} "
            f"wall={row['wall_s']:.1f}s",
            file=log,
            flush=True,
        )
        rows.append(row)
        if save_dir is not None:
            name = f"tfmot_s{s:.3f}_ft{cfg.finetune_epochs}.npz"
            weights_io.save_npz(save_dir / cfg.dense_key() / name, pruned_arrays)
    return {
        "side": "tfmot",
        "environment": environment(),
        "config": cfg.to_dict(),
        "data": split.describe(),
        "dense": dense,
        "rows": rows,
    }


def parse_config(argv: list[str] | None) -> tuple[RunConfig, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, help="RunConfig as JSON; CLI flags override it")
    p.add_argument("--out", type=Path, required=True, help="where to write the result JSON")
    p.add_argument("--save-dir", type=Path, default=None, help="also save pruned weights here")
    p.add_argument("--model", choices=sorted(architectures.MODELS))
    p.add_argument("--dataset", choices=sorted(data.DATASET_FILES))
    p.add_argument("--sparsities", type=lambda s: [float(x) for x in s.split(",")])
    p.add_argument("--dense-epochs", type=int)
    p.add_argument("--finetune-epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=["adam", "sgd"])
    p.add_argument("--lr", type=float)
    p.add_argument("--finetune-lr", type=float)
    p.add_argument("--finetune-schedule", choices=["constant", "cosine"])
    p.add_argument("--seed", type=int)
    p.add_argument("--train-subsample", type=int)
    p.add_argument("--val-subsample", type=int)
    p.add_argument("--test-subsample", type=int)
    p.add_argument("--dense-weights")
    p.add_argument("--reference-predictions")
    a = p.parse_args(argv)
    base = json.loads(a.config.read_text()) if a.config else {}
    for key in RunConfig.__dataclass_fields__:
        value = getattr(a, key, None)
        if value is not None:
            base[key] = value
    cfg = RunConfig.from_dict(base)
    if a.config is None and a.model and not a.dataset:
        cfg.dataset = architectures.MODELS[cfg.model].default_dataset
    return cfg, a


def main(argv: list[str] | None = None) -> int:
    cfg, a = parse_config(argv)
    result = run(cfg, save_dir=a.save_dir or WORK_DIR / "pruned")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2))
    if result["dense"].get("equal_baseline") is False:
        print("[tfmot] dense baseline differs between Keras 3 and tf_keras", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())

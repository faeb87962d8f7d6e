"""Train the dense baselines once, on the Keras 3 side, and cache them (service venv).

Run from the repository root:

    .venv/bin/python -m bench.train_dense --model lenet_300_100 --epochs 20

Outputs under ``bench/work/dense/`` (git-ignored), named by ``RunConfig.dense_key()``:
``<key>.npz`` (portable weights, see ``weights_io``), ``<key>.keras`` (the Keras 3 model)
and ``<key>.json`` (config, per-epoch history, validation and test figures, wall time).
A cached baseline is reused unless ``--force``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # after the log-level env var, which TF reads at import

from bench import architectures, data, training, weights_io
from bench.config import WORK_DIR, RunConfig, default_config

DENSE_DIR = WORK_DIR / "dense"


@dataclass
class DenseBaseline:
    key: str
    weights_path: Path
    keras_path: Path
    meta: dict[str, Any]


def load_split(cfg: RunConfig) -> data.Split:
    return data.load_for(cfg)


def build_keras3(cfg: RunConfig, split: data.Split) -> Any:
    return architectures.build(keras, cfg.model, tuple(split.x_train.shape[1:]))


def train_dense(cfg: RunConfig, *, force: bool = False, verbose: int = 2) -> DenseBaseline:
    """Train (or load from cache) the dense baseline described by ``cfg``."""
    key = cfg.dense_key()
    weights_path = DENSE_DIR / f"{key}.npz"
    keras_path = DENSE_DIR / f"{key}.keras"
    meta_path = DENSE_DIR / f"{key}.json"
    if not force and weights_path.is_file() and meta_path.is_file():
        return DenseBaseline(key, weights_path, keras_path, json.loads(meta_path.read_text()))

    # Val/test subsampling only affects evaluation, so it is not part of the key and the
    # cached figures are always on the full validation and test sets.
    split = load_split(dataclasses.replace(cfg, val_subsample=None, test_subsample=None))
    keras.utils.set_random_seed(cfg.seed)
    model = build_keras3(cfg, split)
    training.compile_model(keras, model, training.dense_optimizer(keras, cfg, len(split.y_train)))
    t0 = time.perf_counter()
    history = model.fit(
        split.x_train,
        split.y_train,
        batch_size=cfg.batch_size,
        epochs=cfg.dense_epochs,
        validation_data=(split.x_val, split.y_val),
        verbose=verbose,
    )
    train_s = time.perf_counter() - t0
    val = training.evaluate(model, split.x_val, split.y_val)
    test = training.evaluate(model, split.x_test, split.y_test)
    size = training.size_and_sparsity(model)
    meta: dict[str, Any] = {
        "key": key,
        "config": cfg.to_dict(),
        "data": split.describe(),
        "keras_version": keras.__version__,
        "train_wall_s": round(train_s, 2),
        "epoch_s": round(train_s / max(1, cfg.dense_epochs), 2),
        "history": {k: [round(float(v), 5) for v in vs] for k, vs in history.history.items()},
        "val_accuracy": val["accuracy"],
        "val_macro_f1": val["macro_f1"],
        "test_accuracy": test["accuracy"],
        "test_macro_f1": test["macro_f1"],
        "compressed_bytes": size["compressed_bytes"],
        "total_params": size["total_params"],
        "prunable_params": size["prunable_params"],
    }
    DENSE_DIR.mkdir(parents=True, exist_ok=True)
    weights_io.save_model_weights(model, weights_path, meta=json.dumps({"key": key}))
    model.save(keras_path)
    meta_path.write_text(json.dumps(meta, indent=2))
    return DenseBaseline(key, weights_path, keras_path, meta)


def load_dense_model(cfg: RunConfig, baseline: DenseBaseline, split: data.Split) -> Any:
    """Rebuild the architecture in Keras 3 and load the portable weights (round-trip check)."""
    model = build_keras3(cfg, split)
    weights_io.load_model_weights(model, baseline.weights_path)
    return model


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="lenet_300_100", choices=sorted(architectures.MODELS))
    p.add_argument("--dataset", default=None, choices=sorted(data.DATASET_FILES))
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--optimizer", default=None, choices=["adam", "sgd"])
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--lr-schedule", default=None, choices=["constant", "cosine"])
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--train-subsample", type=int, default=None)
    p.add_argument("--force", action="store_true", help="retrain even if cached")
    a = p.parse_args(argv)

    overrides = {
        "dataset": a.dataset,
        "dense_epochs": a.epochs,
        "batch_size": a.batch_size,
        "optimizer": a.optimizer,
        "lr": a.lr,
        "lr_schedule": a.lr_schedule,
        "seed": a.seed,
        "train_subsample": a.train_subsample,
    }
    cfg = default_config(a.model, **overrides)
    b = train_dense(cfg, force=a.force)
    m = b.meta
    print(
        f"{b.key}: val acc {m['val_accuracy']:.4f}  test acc {m['test_accuracy']:.4f}  "
        f"macro-F1 {m['test_macro_f1']:.4f}  train {m['train_wall_s']:.1f}s "
        f"({m['epoch_s']:.2f}s/epoch)  -> {b.weights_path}"
    )


if __name__ == "__main__":
    main()

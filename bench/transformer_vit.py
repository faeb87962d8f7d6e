"""A small ViT on MNIST: half its attention heads and half its FFN width removed.

The encoder (pre-LayerNorm, ``--blocks`` blocks of ``MultiHeadAttention`` + GELU FFN) reads
MNIST as 16 patches of 7x7 pixels, each with a one-hot position appended (so no custom
layer is needed). It is trained here, pruned with :func:`prunekit.structured.prune_channels`
at ratio 0.5 (the residual stream goes through LayerNorm and is kept, so the prunable groups
are exactly the heads of every attention layer and the inner width of every FFN), then
fine-tuned. Reported: parameters, the saved ``.keras`` size, accuracy on the MNIST test set
(dense, pruned before fine-tuning, after), and the TF latency at batch 32 timed in
interleaved pairs (:func:`prunekit.metrics.timing.interleaved_speedup`).

    .venv/bin/python -m bench.transformer_vit                 # ~10 min on 2 busy cores
    .venv/bin/python -m bench.transformer_vit --train 6000 --epochs 1 --ft-epochs 1  # quick
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from bench.data import data_dir

REPO = Path(__file__).resolve().parent.parent
RAW = REPO / "bench" / "results" / "raw" / "transformer_vit.json"
PATCH = 7
TOKENS = (28 // PATCH) ** 2


def patches(x: np.ndarray) -> np.ndarray:
    """(n, 28, 28) uint8 -> (n, 16, 49 + 16) float32: 7x7 patches, one-hot position."""
    n = len(x)
    side = 28 // PATCH
    p = x.reshape(n, side, PATCH, side, PATCH).transpose(0, 1, 3, 2, 4)
    p = p.reshape(n, TOKENS, PATCH * PATCH).astype("float32") / 255.0
    pos = np.broadcast_to(np.eye(TOKENS, dtype="float32"), (n, TOKENS, TOKENS))
    return np.concatenate([p, pos], axis=-1)


def vit(d: int, heads: int, ff: int, blocks: int) -> Any:
    import keras

    x_in = keras.Input((TOKENS, PATCH * PATCH + TOKENS), name="patches")
    x = keras.layers.Dense(d, name="embed")(x_in)
    for i in range(blocks):
        h = keras.layers.LayerNormalization(epsilon=1e-6, name=f"ln1_{i}")(x)
        h = keras.layers.MultiHeadAttention(heads, key_dim=d // heads, name=f"mha_{i}")(h, h)
        x = keras.layers.Add(name=f"res1_{i}")([x, h])
        h = keras.layers.LayerNormalization(epsilon=1e-6, name=f"ln2_{i}")(x)
        h = keras.layers.Dense(ff, activation="gelu", name=f"ff1_{i}")(h)
        h = keras.layers.Dense(d, name=f"ff2_{i}")(h)
        x = keras.layers.Add(name=f"res2_{i}")([x, h])
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="ln_out")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(x_in, keras.layers.Dense(10, name="logits")(x), name="vit")


def _compile(model: Any, lr: float, steps: int) -> None:
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(lr, max(1, steps))
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def _accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    logits = np.asarray(model.predict(x, batch_size=256, verbose=0))
    return float(np.mean(np.argmax(logits, axis=1) == y))


def _saved_bytes(model: Any) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.keras"
        model.save(path)
        return path.stat().st_size


def time_pair(dense: Any, pruned: Any, x: np.ndarray, jit: bool) -> Any:
    """Batch-32 latency of ``dense`` over ``pruned``, interleaved pairs (``jit``: XLA)."""
    import tensorflow as tf

    from prunekit.metrics.timing import TimingConfig, interleaved_speedup

    xb = tf.constant(x)
    dense_fn = tf.function(lambda: dense(xb, training=False), jit_compile=jit)
    pruned_fn = tf.function(lambda: pruned(xb, training=False), jit_compile=jit)
    return interleaved_speedup(
        lambda: dense_fn().numpy(),
        lambda: pruned_fn().numpy(),
        TimingConfig(warmup=5, min_pairs=30, max_pairs=600, budget_s=40.0),
    )


def retime(folder: Path) -> None:
    import keras

    with np.load(data_dir() / "mnist.npz", allow_pickle=False) as d:
        x = patches(d["x_test"][:32])
    dense = keras.saving.load_model(folder / "dense.keras")
    pruned = keras.saving.load_model(folder / "pruned.keras")
    out = json.loads(RAW.read_text()) if RAW.exists() else {}
    out["retimed_batch32"] = {
        "tf": time_pair(dense, pruned, x, jit=False).as_dict(),
        "xla": time_pair(dense, pruned, x, jit=True).as_dict(),
        "load_average": os.getloadavg(),
    }
    RAW.write_text(json.dumps(out, indent=1))
    print(json.dumps(out["retimed_batch32"], indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train", type=int, default=15000, help="MNIST training samples used")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--ft-epochs", type=int, default=2)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--ff", type=int, default=512)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--criterion", default="l2", choices=["l1", "l2", "taylor"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, default=None, help="save dense.keras/pruned.keras here")
    ap.add_argument(
        "--time-only",
        type=Path,
        default=None,
        help="re-time the two models a --keep run saved (TF and XLA), update the raw result",
    )
    args = ap.parse_args()
    if args.time_only is not None:
        retime(args.time_only)
        return

    import keras

    from prunekit.structured import compute_gradients, prune_channels

    keras.utils.set_random_seed(args.seed)
    with np.load(data_dir() / "mnist.npz", allow_pickle=False) as d:
        x_train, y_train = patches(d["x_train"][: args.train]), d["y_train"][: args.train]
        x_test, y_test = patches(d["x_test"]), d["y_test"]
    batch = 64
    steps = args.epochs * (len(x_train) // batch)
    model = vit(args.d, args.heads, args.ff, args.blocks)
    _compile(model, 1e-3, steps)
    t0 = time.perf_counter()
    model.fit(x_train, y_train, batch_size=batch, epochs=args.epochs, verbose=2)
    train_s = time.perf_counter() - t0
    dense_acc = _accuracy(model, x_test, y_test)

    gradients = None
    if args.criterion == "taylor":
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        gradients = compute_gradients(model, x_train[:512], y_train[:512], loss)
    result = prune_channels(model, args.ratio, criterion=args.criterion, gradients=gradients)
    pruned = result.model
    pruned_groups = [g for g in result.groups if g.kept < g.size]
    pruned_acc = _accuracy(pruned, x_test, y_test)
    ft_steps = args.ft_epochs * (len(x_train) // batch)
    _compile(pruned, 5e-4, ft_steps)
    t0 = time.perf_counter()
    if args.ft_epochs:
        pruned.fit(x_train, y_train, batch_size=batch, epochs=args.ft_epochs, verbose=2)
    ft_s = time.perf_counter() - t0
    ft_acc = _accuracy(pruned, x_test, y_test)

    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        model.save(args.keep / "dense.keras")
        pruned.save(args.keep / "pruned.keras")
    speed = time_pair(model, pruned, x_test[:32], jit=False)
    out = {
        "command": "python -m bench.transformer_vit "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
        "config": {k: v for k, v in vars(args).items() if k not in ("keep", "time_only")},
        "heads": [
            {"layer": g.sources[0], "before": g.size, "after": g.kept}
            for g in pruned_groups
            if g.sources[0].startswith("mha")
        ],
        "ffn": [
            {"layer": g.sources[0], "before": g.size, "after": g.kept}
            for g in pruned_groups
            if g.sources[0].startswith("ff")
        ],
        "params": {"dense": model.count_params(), "pruned": pruned.count_params()},
        "keras_bytes": {"dense": _saved_bytes(model), "pruned": _saved_bytes(pruned)},
        "flops": {"dense": result.cost_before.flops, "pruned": result.cost_after.flops},
        "accuracy": {"dense": dense_acc, "pruned_before_ft": pruned_acc, "after_ft": ft_acc},
        "seconds": {"train": round(train_s, 1), "fine_tune": round(ft_s, 1)},
        "speedup_batch32": speed.as_dict(),
        "load_average": os.getloadavg(),
    }
    RAW.parent.mkdir(parents=True, exist_ok=True)
    RAW.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

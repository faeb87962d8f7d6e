"""Validation-only side experiment: regularisers during masked fine-tuning at 95% sparsity.

LeNet-300-100 / MNIST, the bench's cached dense model (seed 0), one-shot global magnitude
pruning of every kernel to 95%, then 10 epochs of Adam with cosine decay from 1e-2 (the
prunekit budget of the cosine comparison) in a plain Keras loop that re-applies the masks
after every step. Variants: plain cross-entropy, AdamW weight decay, label smoothing.
Prints one JSON line per run with the final validation accuracy; the test split is never
read. Run from the repository root::

    .venv/bin/python bench/results/raw/experiments/regularisers_lenet300_s95.py [VARIANTS]
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from bench import train_dense as td
from bench.config import default_config

Optimizer = Callable[[Any], keras.optimizers.Optimizer]
VARIANTS: dict[str, tuple[Optimizer, float]] = {
    "adam": (lambda rate: keras.optimizers.Adam(rate), 0.0),
    "adamw_wd0.05": (lambda rate: keras.optimizers.AdamW(rate, weight_decay=0.05), 0.0),
    "adamw_wd0.2": (lambda rate: keras.optimizers.AdamW(rate, weight_decay=0.2), 0.0),
    "ls0.1": (lambda rate: keras.optimizers.Adam(rate), 0.1),
}


def make_step(
    model: keras.Model, opt: keras.optimizers.Optimizer, masked: list, eps: float
) -> Callable[[tf.Tensor, tf.Tensor], None]:
    """One compiled step: cross-entropy on targets smoothed by ``eps``, masks re-applied."""

    @tf.function
    def step(x: tf.Tensor, y: tf.Tensor) -> None:
        with tf.GradientTape() as tape:
            target = tf.one_hot(y, 10) * (1 - eps) + eps / 10
            logits = model(x, training=True)
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(target, logits))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        for var, mask in masked:
            var.assign(var * mask)

    return step


def main(names: list[str]) -> None:
    cfg = default_config("lenet_300_100")
    split = td.load_split(cfg)
    base = td.train_dense(cfg)
    dense = td.load_dense_model(cfg, base, split)

    def val_acc(model: keras.Model) -> float:
        pred = model.predict(split.x_val, batch_size=2048, verbose=0).argmax(-1)
        return float((pred == split.y_val).mean())

    dense_val = val_acc(dense)
    print("dense val", dense_val, flush=True)
    w0 = [w.copy() for w in dense.get_weights()]
    kernels = [i for i, w in enumerate(w0) if w.ndim == 2]
    flat = np.concatenate([np.abs(w0[i]).ravel() for i in kernels])
    threshold = np.sort(flat)[round(0.95 * flat.size) - 1]
    masks = {i: (np.abs(w0[i]) > threshold).astype("float32") for i in kernels}

    for seed in (0, 1):
        for name in names:
            make_optimizer, smoothing = VARIANTS[name]
            keras.utils.set_random_seed(seed)
            model = td.load_dense_model(cfg, base, split)
            model.set_weights([w * masks[i] if i in masks else w for i, w in enumerate(w0)])
            steps = 10 * int(np.ceil(len(split.y_train) / 128))
            opt = make_optimizer(keras.optimizers.schedules.CosineDecay(1e-2, steps))
            masked = [(model.trainable_variables[i], tf.constant(masks[i])) for i in kernels]

            step = make_step(model, opt, masked, smoothing)
            data = tf.data.Dataset.from_tensor_slices(
                (split.x_train, split.y_train.astype("int32"))
            )
            started = time.time()
            history = []
            for epoch in range(10):
                for x, y in data.shuffle(60000, seed=seed + epoch).batch(128):
                    step(x, y)
                history.append(round(val_acc(model), 4))
            print(json.dumps({
                "name": name, "seed": seed, "val": history[-1],
                "val_drop_pts": round(100 * (dense_val - history[-1]), 2),
                "hist": history, "s": round(time.time() - started),
            }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1].split(",") if len(sys.argv) > 1 else list(VARIANTS))

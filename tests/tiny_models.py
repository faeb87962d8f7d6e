"""Small real models the tests build themselves (no downloads)."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import keras
import numpy as np


def mlp(seed: int = 0, inputs: int = 8, hidden: int = 16, classes: int = 3) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((inputs,), name="features")
    x = keras.layers.Dense(hidden, activation="relu", name="dense_1")(inp)
    x = keras.layers.Dense(hidden, activation="relu", name="dense_2")(x)
    out = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(inp, out, name="tiny_mlp")


def cnn(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((12, 12, 1), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    out = keras.layers.Dense(5, name="logits")(x)
    return keras.Model(inp, out, name="tiny_cnn")


def sample(model: keras.Model, n: int = 4, seed: int = 1) -> np.ndarray:
    shape = (n, *model.inputs[0].shape[1:])
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def export_saved_model(model: keras.Model, path: Path) -> Path:
    model.export(str(path), verbose=False)
    return path


def zip_dir(src: Path, dest: Path, top: str | None = None) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                rel = p.relative_to(src).as_posix()
                zf.write(p, f"{top}/{rel}" if top else rel)
    return dest


def tar_gz_dir(src: Path, dest: Path, top: str = "model") -> Path:
    with tarfile.open(dest, "w:gz") as tf:
        tf.add(src, arcname=top)
    return dest


def wide_mlp(seed: int = 0, inputs: int = 256, hidden: int = 2048) -> keras.Model:
    """~4.7 M parameters: big enough that a job runs for seconds (crash and cancel tests)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((inputs,), name="features")
    x = keras.layers.Dense(hidden, activation="relu", name="dense_1")(inp)
    x = keras.layers.Dense(hidden, activation="relu", name="dense_2")(x)
    out = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inp, out, name="wide_mlp")

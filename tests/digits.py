"""A slice of the real 8x8 digits (``tests.shared_data``) and a small classifier trained on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from tests.shared_data import DIGITS

RESCALE = 1 / 16  # digits pixels are 0..16


def digits_classifier(
    tmp: Path, *, n_train: int, n_test: int, hidden: int, epochs: int
) -> dict[str, Any]:
    """``n_train``/``n_test`` samples as an ``.npz`` (uint8, as uploaded) and an MLP
    ``8x8 -> hidden -> 10`` (logits) trained on them with seed 0, saved as ``.keras``."""
    with np.load(DIGITS.resolve(), allow_pickle=False) as d:
        x_train, y_train = d["x_train"][:n_train], d["y_train"][:n_train]
        x_test, y_test = d["x_test"][:n_test], d["y_test"][:n_test]
    npz = tmp / "digits_slice.npz"
    np.savez_compressed(npz, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8), name="pixels")
    x = keras.layers.Flatten()(inp)
    x = keras.layers.Dense(hidden, activation="relu", name="hidden")(x)
    model = keras.Model(inp, keras.layers.Dense(10, name="logits")(x))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train * RESCALE, y_train, epochs=epochs, batch_size=32, verbose=0)
    path = tmp / "digits.keras"
    model.save(path)
    scaled = (x_test * RESCALE).astype("float32")
    logits = model.predict(scaled, verbose=0)
    return {
        "npz": npz,
        "model": path,
        "x_test": scaled,
        "accuracy": float(np.mean(np.argmax(logits, -1) == y_test)),
    }

"""Numpy-only loading of the offline image data sets, with a fixed validation split.

The archives live in ``$PRUNEKIT_DATA_DIR`` (default ``<repo root>/../shared/data``).
Hyper-parameters are chosen on the validation split, which is carved out of the
official training set with a fixed seed; the official test set is only ever used
for the final figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench import common

if TYPE_CHECKING:
    from bench.config import RunConfig

REPO_ROOT = Path(__file__).resolve().parent.parent

DATASET_FILES: dict[str, str] = {
    "mnist": "mnist.npz",
    "fashion_mnist": "fashion_mnist.npz",
    "digits_8x8": "digits_8x8.npz",
}

# Largest pixel value of each archive (all stored as uint8).
PIXEL_MAX: dict[str, float] = {"mnist": 255.0, "fashion_mnist": 255.0, "digits_8x8": 16.0}

NUM_CLASSES = 10


def data_dir() -> Path:
    """Directory holding the ``.npz`` archives (env ``PRUNEKIT_DATA_DIR`` overrides)."""
    return common.data_dir()


@dataclass(frozen=True)
class Split:
    """Train / validation / test arrays, float32 images in [0, 1] and int64 labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def describe(self) -> dict[str, object]:
        return {
            "dataset": self.name,
            "input_shape": list(self.x_train.shape[1:]),
            "n_train": len(self.y_train),
            "n_val": len(self.y_val),
            "n_test": len(self.y_test),
        }


def load_raw(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the four uint8 arrays of one archive, untouched."""
    if name not in DATASET_FILES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASET_FILES)}")
    path = data_dir() / DATASET_FILES[name]
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; set PRUNEKIT_DATA_DIR to the data directory")
    with np.load(path, allow_pickle=False) as d:
        return d["x_train"], d["y_train"], d["x_test"], d["y_test"]


def _scale(x: np.ndarray, name: str, channel_axis: bool) -> np.ndarray:
    out = x.astype(np.float32) / np.float32(PIXEL_MAX[name])
    return out[..., np.newaxis] if channel_axis else out


def _subsample(
    x: np.ndarray, y: np.ndarray, n: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    if n is None or n >= len(y):
        return x, y
    idx = np.sort(rng.permutation(len(y))[:n])
    return x[idx], y[idx]


def load(
    name: str,
    *,
    channel_axis: bool = False,
    val_size: int = 5000,
    seed: int = 0,
    train_subsample: int | None = None,
    val_subsample: int | None = None,
    test_subsample: int | None = None,
) -> Split:
    """Load a data set, scale it to float32 [0, 1] and carve a validation split.

    ``val_size`` images are drawn from the official training set with a permutation seeded
    by ``seed`` (so every run and both venvs see the same split); the rest is training data.
    The optional subsample sizes draw a fixed random subset of each part for quick runs.
    """
    x_tr, y_tr, x_te, y_te = load_raw(name)
    if not 0 <= val_size < len(y_tr):
        raise ValueError(f"val_size must be in [0, {len(y_tr)}), got {val_size}")
    perm = np.random.default_rng(seed).permutation(len(y_tr))
    val_idx, train_idx = np.sort(perm[:val_size]), np.sort(perm[val_size:])

    sub_rng = np.random.default_rng(seed + 1)
    x_train, y_train = _subsample(x_tr[train_idx], y_tr[train_idx], train_subsample, sub_rng)
    x_val, y_val = _subsample(x_tr[val_idx], y_tr[val_idx], val_subsample, sub_rng)
    x_test, y_test = _subsample(x_te, y_te, test_subsample, sub_rng)

    return Split(
        name=name,
        x_train=_scale(x_train, name, channel_axis),
        y_train=y_train.astype(np.int64),
        x_val=_scale(x_val, name, channel_axis),
        y_val=y_val.astype(np.int64),
        x_test=_scale(x_test, name, channel_axis),
        y_test=y_test.astype(np.int64),
    )


def load_for(cfg: RunConfig) -> Split:
    """The data split one benchmark run uses, from its config (the same on every side)."""
    from bench import architectures

    return load(
        cfg.dataset,
        channel_axis=architectures.MODELS[cfg.model].channel_axis,
        val_size=cfg.val_size,
        seed=cfg.seed,
        train_subsample=cfg.train_subsample,
        val_subsample=cfg.val_subsample,
        test_subsample=cfg.test_subsample,
    )

"""Shared set-up for the strategy tests: a tiny MLP on real 8x8 digits, both formats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from prunekit.context import PruningContext
from prunekit.data import Dataset, Split
from prunekit.losses import resolve_loss
from prunekit.model import LoadedModel, load_model
from prunekit.progress import RecordingReporter
from prunekit.spec import PruneSpec
from tests import tiny_models
from tests.shared_data import DIGITS


def digits(n: int = 256) -> Dataset:
    """The first ``n`` training digits (64 features, x/16) and 128 test digits."""
    with np.load(DIGITS, allow_pickle=False) as d:
        x = d["x_train"].reshape(-1, 64).astype("float32") / 16.0
        xt = d["x_test"].reshape(-1, 64).astype("float32") / 16.0
        return Dataset(
            train=Split(x[:n], d["y_train"][:n].astype("int64")),
            test=Split(xt[:128], d["y_test"][:128].astype("int64")),
        )


def save_models(tmp: Path, seed: int = 0) -> dict[str, Path]:
    """A 64-32-32-10 MLP saved as .keras and as a SavedModel (same weights)."""
    model = tiny_models.mlp(seed=seed, inputs=64, hidden=32, classes=10)
    keras_path = tmp / "mlp.keras"
    model.save(keras_path)
    sm = tiny_models.export_saved_model(model, tmp / "mlp_sm")
    return {"keras": keras_path, "saved_model": sm}


def context(
    model: LoadedModel, strategy: dict[str, Any], data: Dataset | None, **spec: Any
) -> PruningContext:
    ps = PruneSpec(strategy=strategy, **spec)
    loss = None
    if data is not None:
        outputs = model.predict(data.train.x[:32])
        compiled = getattr(model.keras_model, "loss", None)
        loss = resolve_loss(ps.loss, compiled, data.train.y[:32], outputs)
    return PruningContext(model, ps, RecordingReporter(), data=data, loss=loss)


def load(path: Path) -> LoadedModel:
    return load_model(path, "keras" if path.suffix == ".keras" else "saved_model")


def zeros(model: LoadedModel) -> tuple[int, int]:
    """(zeros, total) over the prunable weights."""
    arrays = [w.numpy() for w in model.prunable_weights()]
    return sum(int((a == 0).sum()) for a in arrays), sum(a.size for a in arrays)

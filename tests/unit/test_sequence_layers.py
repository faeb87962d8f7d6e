"""Embedding, Conv1D, LSTM and GRU under the unstructured strategies."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import keras
import numpy as np

from bench.coverage import check_unstructured
from prunekit.model import load_model
from prunekit.pipeline import prune
from prunekit.spec import Measure, PruneSpec


def test_conv1d_lstm_gru_kernels_pruned_embedding_kept_and_named(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    tokens = keras.Input((12,), dtype="int32")
    x = keras.layers.Embedding(50, 8, name="tok")(tokens)
    x = keras.layers.Conv1D(16, 3, padding="same", name="conv")(x)
    x = keras.layers.LSTM(12, return_sequences=True, name="lstm")(x)
    x = keras.layers.GRU(8, name="gru")(x)
    model = keras.Model(tokens, keras.layers.Dense(3, name="out")(x))
    path = tmp_path / "seq.keras"
    model.save(path)
    x_in = np.random.default_rng(0).integers(0, 50, size=(4, 12)).astype("int32")
    ref_shape = tuple(np.asarray(model(x_in)).shape)

    # layer scope: every kernel at 80%, so each one shows it is pruned
    for strategy in ({"name": "magnitude", "sparsity": 0.8, "scope": "layer"},):
        spec = PruneSpec(strategy=strategy, measure=Measure(latency_budget_s=0.01))
        result = prune(path, "keras", spec, tmp_path / str(strategy["name"]))
        layers = {row["name"]: row for row in result.metrics["layers"]}
        pruned = {
            "conv/kernel",
            "lstm/lstm_cell/kernel",
            "lstm/lstm_cell/recurrent_kernel",
            "gru/gru_cell/kernel",
            "gru/gru_cell/recurrent_kernel",
            "out/kernel",
        }
        assert pruned <= set(layers), sorted(layers)
        least = 0.75
        got = {n: layers[n]["sparsity"] for n in pruned}
        assert all(v >= least for v in got.values()), (strategy, got)
        assert "tok/embeddings" not in layers
        assert any("tok/embeddings (400 weights)" in n for n in result.notes), result.notes
        row = check_unstructured(load_model(path, "keras"), "keras", result, x_in, ref_shape)
        assert row.status == "ok", row.reason

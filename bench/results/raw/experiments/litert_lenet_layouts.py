"""Side experiment (issue #12): which sparse layouts of LeNet-300-100 ship smaller and faster
on LiteRT, measured with the engine's own export path (``prunekit.litert.exports``).

MNIST, a dense LeNet-300-100 trained 3 epochs (seed 0), then per variant a per-layer layout
((block k along the inputs, sparsity) for fc1, fc2, logits; k=1 is unstructured): the lowest
L1-norm blocks are zeroed and the model fine-tuned 2 epochs with the mask re-applied after
every step. Every variant goes through ``export_litert`` exactly as a job would: float32 and
int8 files, sizes, kernels, the files' own accuracy on the 10,000 test samples, and interleaved
latency pairs against the dense float32 file (1 thread and all cores, batch 1 and 32).
Writes ``litert_lenet_layouts.json`` next to this file. Run from the repository root::

    .venv/bin/python bench/results/raw/experiments/litert_lenet_layouts.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from bench.architectures import lenet_300_100
from bench.common import DATA_DIR
from prunekit.eligibility import speedup_paths
from prunekit.evaluation import quality
from prunekit.formats import ModelFormat
from prunekit.litert.exports import HeldOut, dense_reference, export_litert
from prunekit.losses import LossName, LossSpec
from prunekit.model import LoadedModel

LOSS = LossSpec(LossName.SPARSE_CATEGORICAL, from_logits=True)
Layout = list[tuple[int, float]]  # per layer: (block length along the inputs, sparsity)
VARIANTS: dict[str, Layout | None] = {
    "dense": None,
    "90%_unstructured": [(1, 0.9)] * 3,
    "90%_1x4": [(4, 0.9)] * 3,
    "90%_1x16": [(16, 0.9)] * 3,
    "fc1_1x16_95%_rest_dense": [(16, 0.95), (1, 0.0), (1, 0.0)],
    "fc1_1x16_95%_fc2_logits_1x4_80%": [(16, 0.95), (4, 0.8), (4, 0.8)],
}


def block_masks(kernels: list[np.ndarray], layout: Layout) -> list[np.ndarray]:
    """Zero the round(s * blocks) lowest-L1 1xk blocks of each (inputs, outputs) kernel."""
    masks = []
    for w, (k, sparsity) in zip(kernels, layout, strict=True):
        rows = (w.shape[0] // k) * k
        norms = np.abs(w[:rows]).reshape(rows // k, k, -1).sum(axis=1)
        keep = np.ones(norms.size, bool)
        keep[np.argsort(norms, axis=None)[: round(sparsity * norms.size)]] = False
        mask = np.ones(w.shape, bool)
        mask[:rows] = np.repeat(keep.reshape(norms.shape), k, axis=0)
        masks.append(mask)
    return masks


class Reapply(keras.callbacks.Callback):
    def __init__(self, layers: list[Any], masks: list[np.ndarray]) -> None:
        super().__init__()
        self.pairs = list(zip(layers, masks, strict=True))

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        for layer, mask in self.pairs:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel * mask, bias])


def main() -> None:
    with np.load(DATA_DIR / "mnist.npz") as d:
        x_train, y_train = d["x_train"].astype("float32") / 255, d["y_train"]
        x_test, y_test = d["x_test"].astype("float32") / 255, d["y_test"]
    keras.utils.set_random_seed(0)
    dense = lenet_300_100(keras)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    dense.compile(keras.optimizers.Adam(1e-3), loss)
    dense.fit(x_train, y_train, epochs=3, batch_size=128, verbose=0)
    reference = dense_reference(LoadedModel(ModelFormat.KERAS, keras_model=dense), [28, 28])
    reference_out = dense.predict(x_test, verbose=0, batch_size=1024)
    weights = [layer.get_weights() for layer in dense.layers if layer.weights]
    results: dict[str, Any] = {"load_avg_start": os.getloadavg()[0], "variants": {}}
    for name, layout in VARIANTS.items():
        keras.utils.set_random_seed(1)
        model = keras.models.clone_model(dense)
        layers = [layer for layer in model.layers if layer.weights]
        for layer, w in zip(layers, weights, strict=True):
            layer.set_weights(w)
        if layout is not None:
            masks = block_masks([w[0] for w in weights], layout)
            Reapply(layers, masks).on_train_batch_end(0)
            model.compile(keras.optimizers.Adam(5e-4), loss)
            model.fit(x_train, y_train, epochs=2, batch_size=128, verbose=0,
                      callbacks=[Reapply(layers, masks)])  # fmt: skip
        outputs = model.predict(x_test, verbose=0, batch_size=1024)
        zeros = sum(int(np.sum(layer.get_weights()[0] == 0)) for layer in layers)
        total = sum(layer.get_weights()[0].size for layer in layers)
        pruned = LoadedModel(ModelFormat.KERAS, keras_model=model)
        with tempfile.TemporaryDirectory() as out:
            report = export_litert(
                pruned, ["tflite", "tflite_int8"], Path(out), reference, train_x=x_train,
                held_out=HeldOut(x_test, y_test, LOSS, reference_out, outputs),
                sparsity=zeros / total,
            )  # fmt: skip
        results["variants"][name] = {
            "sparsity": zeros / total,
            "tf_accuracy": quality(outputs, y_test, LOSS)["accuracy"],
            "zero_layout": {r["layer"]: r["zero_layout"] for r in speedup_paths(pruned)["layers"]},
            "dense_litert": report.before,
            "exports": report.exports,
            "speedup": report.speedup,
            "warnings": report.warnings,
        }
        print(name, json.dumps(summary(results["variants"][name])), flush=True)
    results["load_avg_end"] = os.getloadavg()[0]
    out_path = Path(__file__).with_suffix(".json")
    out_path.write_text(json.dumps(results, indent=1, default=str) + "\n")


def summary(v: dict[str, Any]) -> dict[str, Any]:
    """Size ratio, accuracy and the batch-1 one-thread speed-up of each export."""
    return {
        fmt: {
            "smaller": e.get("size_ratio_vs_dense"),
            "accuracy": e.get("quality", {}).get("accuracy"),
            "tf_accuracy": v["tf_accuracy"],
            "sparse_storage": e.get("sparse_storage"),
            "kernels": e.get("kernel_summary"),
            "speedup_b1_1t": v["speedup"]
            .get(f"litert_{fmt}_1thread", {})
            .get("batch_1", {})
            .get("median"),
        }
        for fmt, e in v["exports"].items()
    }


if __name__ == "__main__":
    main()

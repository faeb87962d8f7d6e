"""Side experiment (issue #12): why XNNPACK takes no op of a LiteRT file holding a weight that
a sparse kernel reads, and what that costs the ``litert_int8`` preset.

A LeNet-300-100 with random weights and biases (seed 0; kernel attribution and timing do not
need a trained model) is converted with the converter's sparsity optimisation, float32 and
full-integer int8 (calibrated on 64 random inputs), with 90% of one layer's blocks zeroed.
On ai-edge-litert 2.3 (``prunekit.metrics.litert.kernel_paths``, default interpreter):

1. ``positions``: the layer whose weight is stored sparse (fc1, fc2 or the logits, 1x4 float32;
   fc1 1x16 int8), and the kernel each FULLY_CONNECTED op then runs;
2. ``control``: the flatbuffer rewritten so XNNPACK must refuse fc1 on its own (its bias's
   per-channel scales set to 0: XNNPACK validates them, the builtin int8 kernel does not read
   them): in the dense int8 file XNNPACK then takes fc2 and the logits (partial delegation
   works); in the file with fc1 stored sparse it still takes nothing, so the refusal is of the
   whole file, not of fc1's node (``outputs_unchanged``: the edited file's outputs equal the
   unedited one's; in the dense file fc1 moves from XNNPACK to the builtin kernel, whose int8
   rounding differs slightly);
3. ``timing`` (interleaved pairs, 1 thread, batch 1 and 32): the int8 file with fc1 in 1x16
   blocks and fc2 and the logits pruned unstructured (stored sparse behind DENSIFY) against the
   same with fc2 and the logits dense: how they are stored costs nothing; and that file's fc1
   on the builtin sparse kernel against the dense int8 file, both on builtin kernels.

Writes ``litert_xnnpack_sparse_probe.json`` next to this file. Run from the repository root::

    .venv/bin/python bench/results/raw/experiments/litert_xnnpack_sparse_probe.py
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import flatbuffers
import keras
import numpy as np
import tensorflow as tf
from ai_edge_litert import schema_py_generated as schema

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from prunekit.metrics.litert import TimedInterpreter, kernel_paths, run
from prunekit.metrics.timing import TimingConfig, interleaved_speedup, timing_context

LAYERS = ("fc1", "fc2", "logits")
TIMING = TimingConfig(warmup=3, min_pairs=21, max_pairs=2000, budget_s=3.0)
OUT = Path(__file__).with_suffix(".json")


def lenet(masks: dict[str, Callable[[tuple[int, ...]], np.ndarray]]) -> keras.Model:
    """LeNet-300-100, random weights and biases (seed 0), ``masks[layer](shape)`` applied."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(300, activation="relu", name="fc1"),
            keras.layers.Dense(100, activation="relu", name="fc2"),
            keras.layers.Dense(10, name="logits"),
        ]
    )
    rng = np.random.default_rng(0)
    for layer in model.layers:
        kernel, bias = layer.get_weights()
        if layer.name in masks:
            kernel = kernel * masks[layer.name](kernel.shape)
        layer.set_weights([kernel, rng.normal(scale=0.1, size=bias.shape).astype("float32")])
    return model


def blocks(k: int, sparsity: float = 0.9) -> Callable[[tuple[int, ...]], np.ndarray]:
    """A mask zeroing a random ``sparsity`` of the 1 x k blocks along the inputs."""

    def mask(shape: tuple[int, ...]) -> np.ndarray:
        rng = np.random.default_rng(k)
        keep = rng.random((shape[0] // k, shape[1])) >= sparsity
        return np.repeat(keep, k, axis=0).astype("float32")

    return mask


def convert(model: keras.Model, int8: bool, sparse: bool = True) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    optimisations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else []
    if int8:
        samples = np.random.default_rng(1).random((64, 1, 784), dtype=np.float32)
        converter.optimizations = [tf.lite.Optimize.DEFAULT, *optimisations]
        converter.representative_dataset = lambda: ([s] for s in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    else:
        converter.optimizations = optimisations
    return bytes(converter.convert())


def fc_kernels(content: bytes) -> list[str]:
    return [
        op["kernel"] + ("+sparse" if op["sparse_weights"] else "")
        for op in kernel_paths(content)["ops"]
        if op["op"] == "FULLY_CONNECTED"
    ]


def zero_first_bias_scales(content: bytes) -> bytes:
    """The file with the first FULLY_CONNECTED's bias scales set to 0 (XNNPACK refuses it)."""
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))
    graph = model.subgraphs[0]
    fc = next(op for op in graph.operators if len(op.inputs) == 3 and op.inputs[2] >= 0)
    bias = graph.tensors[fc.inputs[2]]
    bias.quantization.scale = np.zeros(len(bias.quantization.scale), np.float32)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def speedup(a: bytes, b: bytes, xnnpack: bool) -> dict[str, Any]:
    """``b`` over ``a``, interleaved, 1 thread, batch 1 and 32 (both sides alike)."""
    out = {}
    for batch in (1, 32):
        side_a = TimedInterpreter(a, 1, batch, xnnpack=xnnpack)
        side_b = TimedInterpreter(b, 1, batch, xnnpack=xnnpack)
        context = timing_context(runtime="litert", num_threads=1, batch=batch)
        s = interleaved_speedup(side_a, side_b, TIMING, context)
        out[f"batch_{batch}"] = {
            "median": round(s.median, 3),
            "ci95": [round(v, 3) for v in s.ci95],
            "load_avg_1m": [s.context["load_avg_1m_start"], s.context["load_avg_1m_end"]],
        }
    return out


def main() -> None:
    positions = {"float32 dense": fc_kernels(convert(lenet({}), int8=False, sparse=False))}
    for layer in LAYERS:
        content = convert(lenet({layer: blocks(4)}), int8=False)
        positions[f"float32, {layer} 1x4 stored sparse"] = fc_kernels(content)
    dense_int8 = convert(lenet({}), int8=True, sparse=False)
    fc1_sparse = convert(lenet({"fc1": blocks(16)}), int8=True)
    positions["int8 dense"] = fc_kernels(dense_int8)
    positions["int8, fc1 1x16 stored sparse"] = fc_kernels(fc1_sparse)

    x = np.random.default_rng(2).random((256, 784), dtype=np.float32)
    control = {}
    for label, content in (("int8 dense", dense_int8), ("int8, fc1 sparse", fc1_sparse)):
        edited = zero_first_bias_scales(content)
        same = bool(np.array_equal(run(content, x), run(edited, x)))
        control[f"{label}, fc1 bias scales 0"] = {
            "fc_kernels": fc_kernels(edited),
            "outputs_unchanged": same,
        }

    preset = convert(lenet({"fc1": blocks(16), "fc2": blocks(1), "logits": blocks(1)}), int8=True)
    timing = {
        "fc2+logits pruned, stored sparse behind DENSIFY, over the same unpruned (default "
        "interpreter)": speedup(fc1_sparse, preset, xnnpack=True),
        "fc1 1x16 sparse int8 over dense int8, both on builtin kernels": speedup(
            dense_int8, fc1_sparse, xnnpack=False
        ),
    }
    result = {"positions": positions, "control": control, "timing": timing}
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

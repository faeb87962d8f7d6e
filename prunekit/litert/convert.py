"""Converting a model to a LiteRT flatbuffer: float32 (sparse-aware) or int8.

The model's forward pass is traced with an open batch dimension (so the interpreter can be
resized to any batch), its variables frozen into constants, and handed to
``tf.lite.TFLiteConverter``:

- ``tflite``: float32 with ``Optimize.EXPERIMENTAL_SPARSITY``: a weight with enough zeros
  is stored in a sparse (CSR / block) layout, which the builtin FULLY_CONNECTED kernels run
  sparse (1x4 blocks for float32, 1x16 for int8);
- ``tflite_int8``: full-integer quantisation (``Optimize.DEFAULT`` + sparsity, int8 ops,
  int8 input and output) calibrated on samples of the job's training split; without samples,
  dynamic-range quantisation (int8 weights, float activations), with a note saying so;
- the dense reference: plain float32, no optimisation flag, so every ratio is against what a
  user would get from converting the original model.

A model the converter refuses fails only that conversion: :class:`Conversion` records the
error and names the op(s) it could not convert; nothing raises.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from prunekit.model import LoadedModel
from prunekit.spec import LiteRTFormat

DENSE_FLOAT = "dense_float32"  # the reference: the original model, plain float32
FILENAMES: dict[str, str] = {"tflite": "model.tflite", "tflite_int8": "model_int8.tflite"}
CALIBRATION_SAMPLES = 128  # training samples the int8 ranges are calibrated on

# how the converter names an op it cannot lower to a LiteRT builtin
_OP_PATTERNS = (
    re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op"),
    re.compile(r"'tf\.(\w+)' op is not supported"),
    re.compile(r"^\s*tf\.(\w+)\(", re.MULTILINE),
    re.compile(r"(?:Custom|Flex) ops: ([\w, ]+)"),
)


@dataclass
class Conversion:
    """The outcome of one conversion: the flatbuffer, or why there is none."""

    format: str  # "tflite", "tflite_int8" or DENSE_FLOAT
    content: bytes | None = None
    quantization: Literal["none", "full_integer", "dynamic_range"] = "none"
    sparse_storage: bool = False  # converted with EXPERIMENTAL_SPARSITY
    seconds: float = 0.0
    note: str | None = None
    error: str | None = None
    unsupported_ops: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.content is not None

    def write(self, path: Path) -> Path:
        """Write the flatbuffer to ``path`` (the conversion must have succeeded)."""
        if self.content is None:
            raise ValueError(f"the {self.format} conversion failed: {self.error}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.content)
        return path


def unsupported_ops(message: str) -> list[str]:
    """The TensorFlow op names a converter error says it could not convert (in order)."""
    names: dict[str, None] = {}
    for pattern in _OP_PATTERNS:
        for match in pattern.finditer(message):
            for name in match.group(1).split(","):
                name = name.strip().removeprefix("Flex")
                if name:
                    names.setdefault(name, None)
    return list(names)


def _error_summary(message: str) -> str:
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    return (lines[0] if lines else "conversion failed")[:300]


def frozen_function(
    model: LoadedModel, sample_shape: list[int], dtype: str = "float32"
) -> tf.types.experimental.ConcreteFunction:
    """The model's forward pass on ``(batch, *sample_shape)`` inputs, variables frozen.

    The batch dimension stays open unless the model's signature fixes it.
    """
    declared = model.primary_signature().inputs[0].shape
    batch = declared[0] if declared else None
    spec = tf.TensorSpec([batch, *sample_shape], tf.as_dtype(dtype))
    fn = tf.function(lambda x: model.call(x, training=False))
    return convert_variables_to_constants_v2(fn.get_concrete_function(spec))


def _calibration(samples: np.ndarray) -> Iterator[list[np.ndarray]]:
    for row in samples:
        yield [row[None].astype(np.float32)]


def calibration_samples(
    x_train: np.ndarray, n: int = CALIBRATION_SAMPLES, seed: int = 0
) -> np.ndarray:
    """A seeded random subset of ``n`` training inputs (all of them when fewer)."""
    if len(x_train) <= n:
        return np.asarray(x_train)
    idx = np.sort(np.random.default_rng(seed).choice(len(x_train), size=n, replace=False))
    return np.asarray(x_train[idx])


def convert(
    model: LoadedModel,
    fmt: LiteRTFormat | str,
    sample_shape: list[int],
    dtype: str = "float32",
    calibration: np.ndarray | None = None,
    sparse: bool = True,
) -> Conversion:
    """Convert ``model`` to ``fmt`` ("tflite", "tflite_int8" or :data:`DENSE_FLOAT`).

    ``calibration`` (training inputs) makes ``tflite_int8`` full-integer; without it (or
    for a non-float input) the int8 export is dynamic-range quantised. ``sparse=False``
    leaves out ``EXPERIMENTAL_SPARSITY`` (every weight stored dense). Never raises for a
    model the converter refuses: the failure is in the returned record.
    """
    if fmt not in (*FILENAMES, DENSE_FLOAT):
        raise ValueError(f"unknown LiteRT format {fmt!r}")
    started = time.perf_counter()
    result = Conversion(format=str(fmt), sparse_storage=sparse and fmt != DENSE_FLOAT)
    sparsity = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if result.sparse_storage else []
    try:
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [frozen_function(model, sample_shape, dtype)]
        )
        if fmt == "tflite":
            converter.optimizations = sparsity
        elif fmt == "tflite_int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT, *sparsity]
            if calibration is not None and len(calibration) and tf.as_dtype(dtype).is_floating:
                samples = np.asarray(calibration)
                converter.representative_dataset = lambda: _calibration(samples)
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
                result.quantization = "full_integer"
                result.note = (
                    f"full-integer int8 quantisation, activation ranges calibrated on "
                    f"{len(samples)} training samples; input and output are int8 (use the "
                    "tensors' scale and zero point)"
                )
            else:
                result.quantization = "dynamic_range"
                why = (
                    "the job has no dataset to calibrate activation ranges on"
                    if calibration is None or not len(calibration)
                    else f"the model's input is {dtype}, not float"
                )
                result.note = (
                    f"dynamic-range quantisation (int8 weights, float32 activations): {why}"
                )
        result.content = bytes(converter.convert())
    except Exception as exc:  # the converter's own errors: ConverterError and friends
        _record_failure(result, exc)
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _record_failure(result: Conversion, exc: Exception) -> None:
    message = str(exc)
    ops = unsupported_ops(message)
    result.unsupported_ops = ops
    result.quantization = "none"
    result.note = None
    if ops:
        result.error = (
            f"the LiteRT converter cannot convert op(s) {', '.join(ops)}: they have no LiteRT "
            "builtin kernel (they would need the TensorFlow Flex delegate, SELECT_TF_OPS, "
            "which the LiteRT interpreter does not ship)"
        )
    else:
        summary = _error_summary(message)
        result.error = f"the LiteRT converter failed: {type(exc).__name__}: {summary}"

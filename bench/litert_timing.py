"""The bench's one LiteRT entry point for Keras models: the service's own conversion and
interpreter (``prunekit.litert.convert``, ``prunekit.metrics.litert``), as a callable that
runs one batch, ready to be timed."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from prunekit.formats import ModelFormat
from prunekit.litert.convert import DENSE_FLOAT, convert
from prunekit.metrics.litert import load
from prunekit.model import LoadedModel


def litert_runner(
    model: Any, batch: int, num_threads: int | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """``model`` converted to a plain float32 ``.tflite`` as a job's dense reference is, in
    the LiteRT interpreter (XNNPACK, the default delegate) with its input resized to
    ``batch``; the call runs one batch and copies the output out. ``num_threads`` defaults
    to every logical CPU (TensorFlow's default too)."""
    shape = [int(d) for d in model.inputs[0].shape[1:]]
    conversion = convert(LoadedModel(ModelFormat.KERAS, keras_model=model), DENSE_FLOAT, shape)
    if conversion.content is None:
        raise RuntimeError(f"LiteRT conversion failed: {conversion.error}")
    interp = load(conversion.content, num_threads or os.cpu_count() or 1, batch)
    in_idx = interp.get_input_details()[0]["index"]
    out_idx = interp.get_output_details()[0]["index"]

    def run(x: np.ndarray) -> np.ndarray:
        interp.set_tensor(in_idx, x)
        interp.invoke()
        return interp.get_tensor(out_idx)

    return run

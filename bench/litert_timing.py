"""The bench's one LiteRT entry point: a Keras model as a float32 ``.tflite`` in the LiteRT
interpreter (XNNPACK, the default delegate), ready to be timed.

Kept to this one function on purpose, so that the service's shared LiteRT module can take
its place.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from typing import Any

import numpy as np


def litert_runner(
    model: Any, batch: int, num_threads: int | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """Convert ``model`` (``tf.lite.TFLiteConverter.from_keras_model``, float32), load it in
    ``ai_edge_litert``'s interpreter with its input resized to ``batch`` and return a call
    that runs one batch and copies the output out. ``num_threads`` defaults to every
    logical CPU (TensorFlow's default too)."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    with contextlib.redirect_stdout(io.StringIO()):  # Keras' export prints its signatures
        flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    interp = Interpreter(model_content=flatbuffer, num_threads=num_threads or os.cpu_count())
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], [batch, *inp["shape"][1:]])
    interp.allocate_tensors()
    in_idx = inp["index"]
    out_idx = interp.get_output_details()[0]["index"]

    def run(x: np.ndarray) -> np.ndarray:
        interp.set_tensor(in_idx, x)
        interp.invoke()
        return interp.get_tensor(out_idx)

    return run

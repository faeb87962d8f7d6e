"""Which loss a job trains and evaluates with.

The model's compiled loss when it has one; otherwise inferred from labels and outputs:
integer labels + several outputs -> sparse categorical cross-entropy (logits unless the
outputs already are probabilities), one-hot labels -> categorical, one sigmoid-like output
with 0/1 labels -> binary cross-entropy, float targets -> mean squared error. The job spec
can override it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

# a Keras loss object or function: (targets, outputs) -> the batch's mean loss
LossFn = Callable[[Any, Any], Any]


class LossName(StrEnum):
    AUTO = "auto"
    SPARSE_CATEGORICAL = "sparse_categorical_crossentropy"
    CATEGORICAL = "categorical_crossentropy"
    BINARY = "binary_crossentropy"
    MSE = "mean_squared_error"


CLASSIFICATION = {LossName.SPARSE_CATEGORICAL, LossName.CATEGORICAL, LossName.BINARY}


@dataclass(frozen=True)
class LossSpec:
    name: LossName
    from_logits: bool = False

    @property
    def is_classification(self) -> bool:
        return self.name in CLASSIFICATION


def _are_probabilities(outputs: np.ndarray) -> bool:
    if outputs.size == 0 or outputs.min() < 0 or outputs.max() > 1:
        return False
    if outputs.ndim >= 2 and outputs.shape[-1] > 1:
        return bool(np.allclose(outputs.sum(axis=-1), 1.0, atol=1e-3))
    return True


def _integral(y: np.ndarray) -> bool:
    return y.dtype.kind in "biu" or bool(np.all(np.equal(np.mod(y, 1), 0)))


def infer_loss(y: np.ndarray, outputs: np.ndarray) -> LossSpec:
    """Guess the loss from labels ``y`` and the model's outputs on a few samples."""
    out_dim = outputs.shape[-1] if outputs.ndim >= 2 else 1
    probs = _are_probabilities(outputs)
    y_flat_ok = y.ndim == 1 or (y.ndim == 2 and y.shape[-1] == 1)
    if y_flat_ok and _integral(y) and out_dim > 1:
        return LossSpec(LossName.SPARSE_CATEGORICAL, from_logits=not probs)
    if y.ndim == 2 and y.shape[-1] == out_dim > 1 and set(np.unique(y)) <= {0, 1}:
        return LossSpec(LossName.CATEGORICAL, from_logits=not probs)
    if out_dim == 1 and y_flat_ok and set(np.unique(y)) <= {0, 1}:
        return LossSpec(LossName.BINARY, from_logits=not probs)
    return LossSpec(LossName.MSE)


def from_keras_compiled(loss: object) -> LossSpec | None:
    """The LossSpec matching a compiled Keras loss (a string or a loss object), if known."""
    if loss is None:
        return None
    if isinstance(loss, str):
        name, from_logits = loss, False
    else:
        cfg: dict[str, Any] = getattr(loss, "get_config", dict)()
        name = cfg.get("name") or type(loss).__name__
        from_logits = bool(cfg.get("from_logits", False))
    key = name.lower().replace("_", "")
    table = {
        "sparsecategoricalcrossentropy": LossName.SPARSE_CATEGORICAL,
        "categoricalcrossentropy": LossName.CATEGORICAL,
        "binarycrossentropy": LossName.BINARY,
        "meansquarederror": LossName.MSE,
        "mse": LossName.MSE,
    }
    return LossSpec(table[key], from_logits) if key in table else None


def resolve_loss(
    requested: LossName | str, compiled: object | None, y: np.ndarray, outputs: np.ndarray
) -> LossSpec:
    """The spec's loss if given, else the model's compiled loss, else one inferred."""
    requested = LossName(requested)
    if requested is not LossName.AUTO:
        if requested in (LossName.SPARSE_CATEGORICAL, LossName.CATEGORICAL, LossName.BINARY):
            return LossSpec(requested, from_logits=not _are_probabilities(outputs))
        return LossSpec(requested)
    return from_keras_compiled(compiled) or infer_loss(y, outputs)


def loss_targets(spec: LossSpec, y: np.ndarray) -> np.ndarray:
    """The engine's one label normaliser: ``y`` as the Keras loss of ``spec`` expects it, in
    training and evaluation alike. Sparse labels become a 1-D int32 vector (the first column
    of a 2-D array); other targets float32, a 1-D binary or regression target a column, to
    match a one-unit output."""
    y = np.asarray(y)
    if spec.name is LossName.SPARSE_CATEGORICAL:
        flat = y.reshape(len(y), -1)[:, 0] if y.ndim > 1 else y
        return flat.astype("int32")
    if spec.name in (LossName.BINARY, LossName.MSE) and y.ndim == 1:
        y = y[:, None]
    return y.astype("float32")


def keras_loss(spec: LossSpec) -> LossFn:
    """A Keras loss object for ``spec`` (imports Keras on first use)."""
    import keras

    fn: LossFn
    if spec.name is LossName.SPARSE_CATEGORICAL:
        fn = keras.losses.SparseCategoricalCrossentropy(from_logits=spec.from_logits)
    elif spec.name is LossName.CATEGORICAL:
        fn = keras.losses.CategoricalCrossentropy(from_logits=spec.from_logits)
    elif spec.name is LossName.BINARY:
        fn = keras.losses.BinaryCrossentropy(from_logits=spec.from_logits)
    else:
        fn = keras.losses.MeanSquaredError()
    return fn


def training_loss(spec: LossSpec, label_smoothing: float = 0.0) -> LossFn:
    """The loss a job trains with: :func:`keras_loss`, with ``label_smoothing`` (Szegedy et
    al. 2016) mixing each target with the uniform distribution over the classes (binary:
    towards 0.5). Evaluation keeps the plain loss. Integer labels are one-hot encoded to the
    output's width, since Keras' sparse cross-entropy has no smoothing."""
    if not label_smoothing:
        return keras_loss(spec)
    if not spec.is_classification:
        from prunekit.errors import SpecError

        raise SpecError(
            "fine_tune.label_smoothing needs a classification loss; this job's loss is "
            f"{spec.name.value} (set label_smoothing to 0 or choose a classification loss)"
        )
    import keras

    if spec.name is LossName.BINARY:
        binary: LossFn = keras.losses.BinaryCrossentropy(
            from_logits=spec.from_logits, label_smoothing=label_smoothing
        )
        return binary
    cce: LossFn = keras.losses.CategoricalCrossentropy(
        from_logits=spec.from_logits, label_smoothing=label_smoothing
    )
    if spec.name is LossName.CATEGORICAL:
        return cce

    def smoothed_sparse(y: Any, out: Any) -> Any:
        ops = keras.ops
        classes = ops.shape(out)[-1]
        one_hot = ops.one_hot(ops.reshape(ops.cast(y, "int32"), (-1,)), classes)
        return cce(ops.cast(one_hot, out.dtype), out)

    return smoothed_sparse

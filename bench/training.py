"""Training/evaluation helpers that take the keras module as a parameter.

Used unchanged by the Keras 3 side (``train_dense``, later prunekit's strategies) and by
the tf_keras side (``tfmot/run_tfmot``), so compile settings and metrics cannot drift apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench import metrics, weights_io

KerasModule = Any
Model = Any

EVAL_BATCH = 1000


def make_optimizer(
    keras: KerasModule,
    name: str,
    lr: float,
    momentum: float = 0.9,
    schedule: str = "constant",
    total_steps: int | None = None,
) -> Any:
    """Adam or SGD+momentum; ``schedule="cosine"`` decays ``lr`` to 0 over ``total_steps``."""
    if schedule == "cosine":
        if not total_steps:
            raise ValueError("cosine schedule needs total_steps")
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=total_steps)
    elif schedule != "constant":
        raise ValueError(f"unknown lr schedule {schedule!r}; expected constant or cosine")
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=momentum)
    raise ValueError(f"unknown optimizer {name!r}; expected adam or sgd")


def dense_optimizer(keras: KerasModule, cfg: Any, n_train: int) -> Any:
    """The optimizer for dense pre-training described by a ``RunConfig``."""
    steps = -(-n_train // cfg.batch_size) * cfg.dense_epochs
    return make_optimizer(keras, cfg.optimizer, cfg.lr, cfg.momentum, cfg.lr_schedule, steps)


def compile_model(keras: KerasModule, model: Model, optimizer: Any) -> None:
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def predict_labels(model: Model, x: np.ndarray) -> np.ndarray:
    logits = model.predict(x, batch_size=EVAL_BATCH, verbose=0)
    return np.asarray(logits).argmax(axis=-1)


def evaluate(model: Model, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Accuracy and macro-F1 computed in numpy from the model's argmax predictions."""
    pred = predict_labels(model, x)
    return {
        "accuracy": metrics.accuracy(y, pred),
        "macro_f1": metrics.macro_f1(y, pred, num_classes=10),
        "predictions": pred,
    }


def size_and_sparsity(model: Model) -> dict[str, Any]:
    arrays = weights_io.model_arrays(model)
    report = weights_io.sparsity_report(arrays)
    report["compressed_bytes"] = weights_io.compressed_bytes(arrays)
    return report

"""Training for structured strategies: BN-gamma sparsity training and plain fine-tuning.

Both run the engine's one loop, :meth:`prunekit.training.Trainer.fit`, over a Keras model:
shuffled mini-batches, a compiled ``tf.function`` step, BatchNormalization in training mode
(its moving statistics follow the data), the model's own losses, progress and cancellation
checks between batches. ``fine_tune`` (optimizer, schedule, batch size) means the same as in
every other strategy.

Sparsity training is Liu et al. 2017 ("Learning Efficient Convolutional Networks through
Network Slimming"): the loss gets ``lambda * sum |gamma|`` over the chosen BatchNorm scales,
i.e. the subgradient ``lambda * sign(gamma)`` is added to each gamma's gradient before the
optimizer step. With ``l1_lambda == 0`` the loop is an ordinary fine-tune.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from prunekit.data import Split
from prunekit.distillation import Distillation
from prunekit.formats import ModelFormat
from prunekit.losses import LossSpec
from prunekit.model import LoadedModel, as_tf_variable
from prunekit.structured.graph import DependencyGraph
from prunekit.training import Progress, TrainConfig, Trainer


@dataclass
class TrainReport:
    epoch_losses: list[float]
    steps: int
    seconds: float
    # the rate the schedule had reached when the run ended (0 after a full cosine decay)
    final_learning_rate: float | None = None


def prunable_gammas(graph: DependencyGraph) -> list[Any]:
    """The BatchNormalization scale variables whose channels some prunable group owns.

    Scales of BNs in blocked groups (e.g. the last block feeding a model output) are not
    penalised: shrinking them would cost accuracy without removing any channel.
    """
    out: list[Any] = []
    seen: set[int] = set()
    for grp in graph.prunable_groups:
        for m in grp.members:
            if m.kind != "gamma":
                continue
            var = graph.layers[m.layer].weights[m.weight_index]
            if id(var) not in seen:
                seen.add(id(var))
                out.append(var)
    return out


def gamma_summary(gammas: Sequence[Any], threshold: float = 1e-2) -> dict[str, float | int]:
    """Sum of |gamma| and how many scales are below ``threshold`` (after sparsity training
    most should be)."""
    values = (
        np.concatenate([np.abs(np.asarray(keras.ops.convert_to_numpy(g))).ravel() for g in gammas])
        if gammas
        else np.zeros(0)
    )
    return {
        "channels": int(values.size),
        "sum_abs": float(values.sum()),
        "mean_abs": float(values.mean()) if values.size else 0.0,
        "below_threshold": int((values < threshold).sum()),
        "threshold": threshold,
    }


def keras_trainer(
    model: keras.Model,
    loss: LossSpec,
    settings: TrainConfig,
    *,
    l1_lambda: float = 0.0,
    gammas: Sequence[Any] = (),
    seed: int = 0,
    progress: Progress | None = None,
    check_cancelled: Callable[[], None] | None = None,
    distill: Distillation | None = None,
) -> Trainer:
    """The engine's :class:`~prunekit.training.Trainer` over every trainable variable of a
    Keras ``model`` (no masks: the structured strategies change the architecture instead).
    With ``l1_lambda > 0`` the loss gets ``lambda * sum |gamma|`` over ``gammas``, whose
    subgradient ``lambda * sign(gamma)`` is what sparsity training adds to each scale's
    gradient; the epoch losses the trainer reports leave that penalty out."""
    penalty: Callable[[], tf.Tensor] | None = None
    if l1_lambda > 0 and gammas:
        scales = [as_tf_variable(g) for g in gammas]
        lam = tf.constant(float(l1_lambda), tf.float32)

        def penalty() -> tf.Tensor:
            return lam * tf.add_n([tf.reduce_sum(tf.abs(g)) for g in scales])

    return Trainer(
        LoadedModel(ModelFormat.KERAS, keras_model=model),
        [],
        loss,
        settings,
        seed=seed,
        progress=progress,
        check_cancelled=check_cancelled,
        distill=distill,
        penalty=penalty,
    )


def train(
    trainer: Trainer,
    x: np.ndarray,
    y: np.ndarray,
    *,
    span: tuple[float, float] = (0.0, 1.0),
    label: str = "fine-tune",
) -> TrainReport:
    """``trainer.fit`` over ``(x, y)`` for its configured epochs, as a :class:`TrainReport`
    (with the rate the schedule reached: 0 after a full cosine decay)."""
    epochs = trainer.config.epochs
    if epochs <= 0 or len(x) == 0:
        return TrainReport([], 0, 0.0)
    started = time.perf_counter()
    losses = trainer.fit(Split(x, y), epochs, span=span, label=label)
    return TrainReport(
        losses,
        trainer.global_step,
        time.perf_counter() - started,
        trainer.current_learning_rate(),
    )

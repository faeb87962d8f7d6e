"""Training for structured strategies: BN-gamma sparsity training and plain fine-tuning.

Both run the same loop over a Keras model (TensorFlow backend): shuffled mini-batches, a
compiled ``tf.function`` step, BatchNormalization in training mode (its moving statistics
follow the data), progress and cancellation checks between batches. Settings, optimizers and
learning-rate schedules are :mod:`prunekit.training`'s (``TrainConfig``, ``make_optimizer``),
so ``fine_tune`` means the same in every strategy.

Sparsity training is Liu et al. 2017 ("Learning Efficient Convolutional Networks through
Network Slimming"): the loss gets ``lambda * sum |gamma|`` over the chosen BatchNorm scales,
i.e. the subgradient ``lambda * sign(gamma)`` is added to each gamma's gradient before the
optimizer step. With ``l1_lambda == 0`` the loop is an ordinary fine-tune.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from prunekit.distillation import Distillation
from prunekit.structured.graph import DependencyGraph
from prunekit.training import TrainConfig, check_names, make_optimizer

Progress = Callable[..., None]


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


def train(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    loss: Callable[[Any, Any], Any],
    settings: TrainConfig,
    *,
    l1_lambda: float = 0.0,
    gammas: Sequence[Any] = (),
    seed: int = 0,
    progress: Progress | None = None,
    check_cancelled: Callable[[], None] | None = None,
    distill: Distillation | None = None,
) -> TrainReport:
    """Train ``model`` in place on ``(x, y)``; with ``l1_lambda > 0`` add ``lambda*sign(g)``
    to the gradient of every variable in ``gammas``. ``settings.schedule`` "cosine" decays the
    rate to 0 over the whole run (every batch, the last partial one included).

    ``progress(fraction, epoch=, step=, loss=)`` is called after every batch (``fraction`` in
    0..1 over the whole run); ``check_cancelled()`` between batches. ``distill`` blends in
    the teacher's outputs (:mod:`prunekit.distillation`).
    """
    check_names(settings.optimizer, settings.schedule)
    n = len(x)
    started = time.perf_counter()
    if settings.epochs <= 0 or n == 0:
        return TrainReport([], 0, 0.0)
    batch = max(1, min(settings.batch_size, n))
    per_epoch = math.ceil(n / batch)
    total = per_epoch * settings.epochs
    optimizer = make_optimizer(
        settings.optimizer, settings.learning_rate, settings.schedule, decay_steps=total
    )
    variables = list(model.trainable_variables)
    gamma_ids = {id(g) for g in gammas}
    penalised = [i for i, v in enumerate(variables) if id(v) in gamma_ids]
    lam = tf.constant(float(l1_lambda), tf.float32)
    as_list = isinstance(model.input, list)  # models rebuilt from Keras 2 configs keep [input]

    @tf.function(reduce_retracing=True)
    def step(xb: tf.Tensor, yb: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            out = model([xb] if as_list else xb, training=True)
            value = keras.ops.mean(loss(yb, out))
            if distill is not None:
                value = distill(xb, out, value)
            if model.losses:
                value = value + keras.ops.sum(model.losses)
        grads = tape.gradient(value, variables)
        if l1_lambda > 0:
            for i in penalised:
                grads[i] = grads[i] + lam * tf.sign(variables[i].value)
        optimizer.apply_gradients(
            [(g, v) for g, v in zip(grads, variables, strict=True) if g is not None]
        )
        return value

    rng = np.random.default_rng(seed)
    losses: list[float] = []
    done = 0
    for epoch in range(settings.epochs):
        order = rng.permutation(n)
        running, seen = 0.0, 0
        for b in range(per_epoch):
            idx = np.sort(order[b * batch : (b + 1) * batch])
            value = float(step(tf.constant(x[idx]), tf.constant(y[idx])))
            running += value * len(idx)
            seen += len(idx)
            done += 1
            if progress is not None:
                progress(done / total, epoch=epoch + 1, step=b + 1, loss=round(value, 5))
            if check_cancelled is not None:
                check_cancelled()
        losses.append(running / max(seen, 1))
    final_rate = float(np.asarray(optimizer.learning_rate))
    return TrainReport(losses, done, time.perf_counter() - started, final_rate)

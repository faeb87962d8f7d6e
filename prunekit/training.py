"""The engine's one training loop, for every strategy, unstructured and structured.

:meth:`Trainer.fit` is the loop: seeded shuffles, mini-batches (the last, partial one
included), progress and cancellation checks, the learning-rate schedule over the whole run,
the epoch loss as the mean over samples. What one batch does is the trainer's compiled step
(``tf.function``), the pluggable part: :class:`Trainer`'s is masked training (gradients of
pruned weights are zeroed and the weights multiplied by their constant mask after every
update, so they stay exactly zero; optionally an L1 proximal step, soft threshold
``lr * lambda``, after each update; optionally a ``penalty`` term added to the loss, as
slimming's sparsity training adds ``lambda * sum |gamma|``). A strategy that trains
differently subclasses :class:`Trainer` beside itself and overrides ``_build_step``
(``prunekit.strategies.gradual_trainer.ShadowTrainer``,
``prunekit.strategies.l0_trainer.HardConcreteTrainer``); strategy modules import this module
lazily inside ``run``, so listing strategies never imports TensorFlow.

The same code trains ``.keras`` models (``model(x, training=True)``: BatchNorm in training
mode) and generic SavedModels through their restored signature (gradients reach the captured
variables; BatchNorm statistics stay frozen there).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import keras
import numpy as np
import tensorflow as tf

from prunekit.data import Split
from prunekit.distillation import Distillation
from prunekit.errors import SpecError
from prunekit.evaluation import model_inputs
from prunekit.losses import LossSpec, loss_targets, training_loss
from prunekit.model import LoadedModel, Weight, as_tf_variable

Progress = Callable[..., None]
F = TypeVar("F", bound=Callable[..., Any])


def compiled(fn: F) -> F:
    """``fn`` as a ``tf.function`` (one trace for the full batches, one for the last, smaller
    one: ``reduce_retracing``), typed as ``fn`` (TensorFlow ships no type stubs)."""
    return cast(F, tf.function(fn, reduce_retracing=True))


SCHEDULES = ("constant", "cosine")

# The one optimizer table of every strategy, unstructured and structured: what
# ``fine_tune.optimizer`` means (its names are the spec's, ``prunekit.spec.FineTune``).
OPTIMIZERS: dict[str, Callable[[Any], keras.optimizers.Optimizer]] = {
    "adam": lambda rate: keras.optimizers.Adam(rate),
    "adamw": lambda rate: keras.optimizers.AdamW(rate),
    "rmsprop": lambda rate: keras.optimizers.RMSprop(rate),
    "sgd": lambda rate: keras.optimizers.SGD(rate),  # plain: no momentum
}


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    # "cosine": the rate decays from ``learning_rate`` to 0 over ``epochs`` epochs of the
    # data the trainer first fits on (a trainer fed in pieces, e.g. one epoch per ``fit``,
    # still decays once over the whole run).
    schedule: str = "constant"
    label_smoothing: float = 0.0  # classification losses only (losses.training_loss)


def check_names(optimizer: str, schedule: str) -> None:
    """Raise :class:`SpecError` for an optimizer or schedule name no trainer knows."""
    if optimizer not in OPTIMIZERS:
        raise SpecError(f"unknown optimizer {optimizer!r}; use {', '.join(sorted(OPTIMIZERS))}")
    if schedule not in SCHEDULES:
        raise SpecError(
            f"unknown learning-rate schedule {schedule!r}; use {' or '.join(SCHEDULES)}"
        )


def learning_rate_for(
    learning_rate: float, schedule: str = "constant", decay_steps: int | None = None
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """``learning_rate`` itself, or a ``CosineDecay`` from it to 0 over ``decay_steps``."""
    if schedule == "constant":
        return learning_rate
    if schedule == "cosine":
        if decay_steps is None or decay_steps < 1:
            raise SpecError("a cosine learning-rate schedule needs the run's total steps (>= 1)")
        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=decay_steps)
    raise SpecError(f"unknown learning-rate schedule {schedule!r}; use constant or cosine")


def make_optimizer(
    name: str,
    learning_rate: float,
    schedule: str = "constant",
    decay_steps: int | None = None,
) -> keras.optimizers.Optimizer:
    """The named optimizer (:data:`OPTIMIZERS`) at ``learning_rate``, constant or cosine
    (:func:`learning_rate_for`)."""
    check_names(name, schedule)
    return OPTIMIZERS[name](learning_rate_for(learning_rate, schedule, decay_steps))


def trainable_variables(model: LoadedModel) -> list[tf.Variable]:
    if model.trains_keras_model and model.keras_model is not None:
        return [as_tf_variable(v) for v in model.keras_model.trainable_weights]
    return [w.tf_variable for w in model.weights() if w.trainable]


class Trainer:
    """Masked training of ``model``; masks default to all-ones (plain training)."""

    def __init__(
        self,
        model: LoadedModel,
        prunable: Sequence[Weight],
        loss: LossSpec,
        config: TrainConfig,
        *,
        seed: int = 0,
        masks: Mapping[str, np.ndarray] | None = None,
        l1: float = 0.0,
        progress: Progress | None = None,
        check_cancelled: Callable[[], None] | None = None,
        total_steps: int | None = None,
        distill: Distillation | None = None,
        penalty: Callable[[], tf.Tensor] | None = None,
    ) -> None:
        self.model = model
        self.distill = distill
        self.loss = loss
        self.loss_fn = training_loss(loss, config.label_smoothing)
        self.config = config
        self.names = [w.name for w in prunable]
        self.pvars = [w.tf_variable for w in prunable]
        ids = {id(v) for v in self.pvars}
        self.others = [v for v in trainable_variables(model) if id(v) not in ids]
        self.mask_vars = [
            tf.Variable(tf.ones(v.shape, v.dtype), trainable=False) for v in self.pvars
        ]
        self.l1 = float(l1)
        # a regulariser added to the loss each step (inside the compiled step)
        self.penalty = penalty
        # Built on first use: a cosine schedule needs the run's total steps, which ``fit``
        # knows (``total_steps`` sets them up front).
        self.total_steps = total_steps
        self._optimizer: keras.optimizers.Optimizer | None = None
        check_names(config.optimizer, config.schedule)  # fail before any data is read
        self.rng = np.random.default_rng(seed)
        self.global_step = 0
        self._progress = progress
        self._check_cancelled = check_cancelled
        self._step: Any = None
        self._grad_fn: Any = None
        if masks is not None:
            self.set_masks(masks)

    # ------------------------------------------------------------- optimizer
    @property
    def optimizer(self) -> keras.optimizers.Optimizer:
        """The optimizer; with a cosine schedule it decays over ``total_steps``."""
        if self._optimizer is None:
            c = self.config
            self._optimizer = make_optimizer(
                c.optimizer, c.learning_rate, c.schedule, self.total_steps
            )
        return self._optimizer

    def restart_schedule(self) -> None:
        """From the next ``fit`` on: a fresh optimizer whose learning-rate schedule spans
        that call (``total_steps`` of it), as iterative pruning restarts after each round."""
        self._optimizer = None
        self._step = None
        self.total_steps = None

    def current_learning_rate(self) -> float:
        """The rate the next optimizer step uses (the schedule at the current iteration)."""
        return float(np.asarray(self.optimizer.learning_rate))

    # ------------------------------------------------------------------ masks
    def set_masks(self, masks: Mapping[str, np.ndarray]) -> None:
        """Use ``masks`` from now on (missing names: keep everything) and apply them."""
        for name, var, mvar in zip(self.names, self.pvars, self.mask_vars, strict=True):
            m = masks.get(name)
            value = np.ones(mvar.shape, mvar.dtype.as_numpy_dtype) if m is None else m
            mvar.assign(np.asarray(value, dtype=mvar.dtype.as_numpy_dtype))
            var.assign(var * mvar)

    def masks(self) -> dict[str, np.ndarray]:
        return {n: m.numpy() != 0 for n, m in zip(self.names, self.mask_vars, strict=True)}

    def weights(self) -> dict[str, np.ndarray]:
        """The prunable weights as the model holds them now."""
        return {n: v.numpy() for n, v in zip(self.names, self.pvars, strict=True)}

    # -------------------------------------------------------------- the step
    def _forward_loss(self, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        """The batch's training loss: the task loss (or its blend with the teacher's outputs
        under distillation) plus the model's own losses (Keras regularisers)."""
        out = self.model.call(x, training=True)
        loss = self.loss_fn(y, out)
        if self.distill is not None:
            loss = self.distill(x, out, loss)
        keras_model = self.model.keras_model if self.model.trains_keras_model else None
        own = keras_model.losses if keras_model is not None else []
        if own:
            loss = loss + tf.add_n([tf.cast(v, loss.dtype) for v in own])
        return loss

    def _build_step(self) -> Any:
        pvars, others, masks = self.pvars, self.others, self.mask_vars
        n_p = len(pvars)
        variables = [*pvars, *others]
        l1 = self.l1
        optimizer = self.optimizer

        penalty = self.penalty

        @compiled
        def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                loss = self._forward_loss(x, y)
                objective = loss if penalty is None else loss + penalty()
            grads = tape.gradient(objective, variables)
            pairs = []
            for i, (g, v) in enumerate(zip(grads, variables, strict=True)):
                if g is None:
                    continue
                if i < n_p:
                    g = tf.convert_to_tensor(g) * masks[i]
                pairs.append((g, v))
            # soft threshold lr * lambda, with the rate of this very update (schedules)
            lr = optimizer.learning_rate if l1 > 0 else None
            optimizer.apply_gradients(pairs)
            for v, m in zip(pvars, masks, strict=True):
                if lr is not None:
                    threshold = l1 * tf.cast(lr, v.dtype)
                    v.assign(tf.sign(v) * tf.nn.relu(tf.abs(v) - threshold) * m)
                else:
                    v.assign(v * m)
            return loss

        return step

    def compiled_step(self) -> Any:
        """The compiled step, ``(x, y) tensors -> loss``: what ``fit`` runs per batch."""
        if self._step is None:
            self._step = self._build_step()
        return self._step

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(self.compiled_step()(tf.constant(x), tf.constant(y)))

    # ------------------------------------------------------------------ loop
    def fit(
        self,
        data: Split,
        epochs: int,
        *,
        span: tuple[float, float] = (0.0, 1.0),
        on_step: Callable[[int], None] | None = None,
        label: str = "fine-tune",
    ) -> list[float]:
        """Train ``epochs`` epochs over ``data``, shuffled with the seed, in batches of
        ``config.batch_size`` (the last, smaller one included: every sample is seen once an
        epoch); returns each epoch's loss, the mean over its samples (batches weighted by
        size). ``on_step(global_step)`` runs after every step. ``span`` is the part of the
        trainer's progress range this call covers."""
        x, y = model_inputs(data.x), loss_targets(self.loss, data.y)
        n = len(x)
        bs = max(1, min(self.config.batch_size, n))
        steps = math.ceil(n / bs)
        total = max(1, epochs * steps)
        if self.total_steps is None and self._optimizer is None:
            # the whole run: ``config.epochs`` epochs, even when fed one epoch per call
            self.total_steps = max(1, max(epochs, self.config.epochs) * steps)
        history: list[float] = []
        done = 0
        for epoch in range(epochs):
            perm = self.rng.permutation(n)
            running, seen = 0.0, 0
            for i in range(steps):
                if self._check_cancelled is not None:
                    self._check_cancelled()
                idx = np.sort(perm[i * bs : (i + 1) * bs])
                loss = self.train_step(x[idx], y[idx])
                running += loss * len(idx)
                seen += len(idx)
                self.global_step += 1
                done += 1
                if on_step is not None:
                    on_step(self.global_step)
                if self._progress is not None:
                    frac = span[0] + (span[1] - span[0]) * done / total
                    self._progress(
                        frac, stage=label, epoch=epoch + 1, step=i + 1, loss=round(loss, 5)
                    )
            history.append(running / seen if seen else math.nan)
        return history

    # ---------------------------------------------------------- saliencies
    def taylor_scores(self, data: Split, batches: int) -> dict[str, np.ndarray]:
        """First-order Taylor contribution ``sum_b |w * dL_b/dw|`` over ``batches`` batches."""
        if self._grad_fn is None:
            pvars = self.pvars

            @compiled
            def grads(x: tf.Tensor, y: tf.Tensor) -> list[tf.Tensor]:
                with tf.GradientTape() as tape:
                    loss = self._forward_loss(x, y)
                return [tf.convert_to_tensor(g) for g in tape.gradient(loss, pvars)]

            self._grad_fn = grads
        x, y = model_inputs(data.x), loss_targets(self.loss, data.y)
        n = len(x)
        bs = max(1, min(self.config.batch_size, n))
        perm = self.rng.permutation(n)
        scores = {
            name: np.zeros(v.shape, "float64")
            for name, v in zip(self.names, self.pvars, strict=True)
        }
        for b in range(max(1, min(batches, n // bs))):
            if self._check_cancelled is not None:
                self._check_cancelled()
            idx = np.sort(perm[b * bs : (b + 1) * bs])
            gs = self._grad_fn(tf.constant(x[idx]), tf.constant(y[idx]))
            for name, v, g in zip(self.names, self.pvars, gs, strict=True):
                scores[name] += np.abs(v.numpy().astype("float64") * g.numpy())
        return scores

"""Training under masks: fine-tuning, sparse optimisation and gated training.

Everything that runs TensorFlow for the strategies lives here, so strategy modules import it
lazily inside ``run``. One compiled step (``tf.function``) per trainer:

* :class:`Trainer` — masked training: gradients of pruned weights are zeroed and the weights
  are multiplied by their (constant) mask after every optimizer update, so they stay exactly
  zero. Optionally an L1 proximal step (soft threshold ``lr * lambda``) after each update.
* :class:`ShadowTrainer` — dynamic network surgery: the model holds ``theta * mask``, dense
  shadow weights ``theta`` keep receiving the gradient, so pruned weights can come back.
* :class:`HardConcreteTrainer` — L0 regularisation with hard-concrete gates (Louizos et al.
  2018): the model holds ``theta * z`` with ``z`` sampled each step; gates and weights are
  trained with the expected-L0 penalty.

The same code trains ``.keras`` models (``model(x, training=True)``: BatchNorm in training
mode) and generic SavedModels through their restored signature (gradients reach the captured
variables; BatchNorm statistics stay frozen there).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from prunekit.data import Split
from prunekit.distillation import Distillation
from prunekit.errors import SpecError
from prunekit.losses import LossName, LossSpec, training_loss
from prunekit.model import LoadedModel, Weight, as_tf_variable

Progress = Callable[..., None]


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
    if model.keras_model is not None:
        return [as_tf_variable(v) for v in model.keras_model.trainable_weights]
    return [w.tf_variable for w in model.weights() if w.trainable]


def labels_for(loss: LossSpec, y: np.ndarray) -> np.ndarray:
    if loss.name is LossName.SPARSE_CATEGORICAL:
        return y.reshape(len(y), -1)[:, 0].astype("int32") if y.ndim > 1 else y.astype("int32")
    return y.astype("float32")


def inputs_for(x: np.ndarray) -> np.ndarray:
    return x if x.dtype.kind == "f" else x.astype("float32")


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
        out = self.model.call(x, training=True)
        task = self.loss_fn(y, out)
        if self.distill is None:
            return task
        return self.distill(x, out, task)

    def _build_step(self) -> Any:
        pvars, others, masks = self.pvars, self.others, self.mask_vars
        n_p = len(pvars)
        variables = [*pvars, *others]
        l1 = self.l1
        optimizer = self.optimizer

        @tf.function
        def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                loss = self._forward_loss(x, y)
            grads = tape.gradient(loss, variables)
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
        """Train ``epochs`` epochs over ``data`` (shuffled with the seed, last partial batch
        dropped); returns the mean loss of each epoch. ``on_step(global_step)`` runs after
        every step."""
        x, y = inputs_for(data.x), labels_for(self.loss, data.y)
        n = len(x)
        bs = max(1, min(self.config.batch_size, n))
        steps = n // bs
        total = max(1, epochs * steps)
        if self.total_steps is None and self._optimizer is None:
            # the whole run: ``config.epochs`` epochs, even when fed one epoch per call
            self.total_steps = max(1, max(epochs, self.config.epochs) * steps)
        history: list[float] = []
        done = 0
        for epoch in range(epochs):
            perm = self.rng.permutation(n)
            losses = []
            for i in range(steps):
                if self._check_cancelled is not None:
                    self._check_cancelled()
                idx = np.sort(perm[i * bs : (i + 1) * bs])
                loss = self.train_step(x[idx], y[idx])
                losses.append(loss)
                self.global_step += 1
                done += 1
                if on_step is not None:
                    on_step(self.global_step)
                if self._progress is not None:
                    frac = span[0] + (span[1] - span[0]) * done / total
                    self._progress(
                        frac, stage=label, epoch=epoch + 1, step=i + 1, loss=round(loss, 5)
                    )
            history.append(float(np.mean(losses)) if losses else math.nan)
        return history

    # ---------------------------------------------------------- saliencies
    def taylor_scores(self, data: Split, batches: int) -> dict[str, np.ndarray]:
        """First-order Taylor contribution ``sum_b |w * dL_b/dw|`` over ``batches`` batches."""
        if self._grad_fn is None:
            pvars = self.pvars

            @tf.function
            def grads(x: tf.Tensor, y: tf.Tensor) -> list[tf.Tensor]:
                with tf.GradientTape() as tape:
                    loss = self._forward_loss(x, y)
                return [tf.convert_to_tensor(g) for g in tape.gradient(loss, pvars)]

            self._grad_fn = grads
        x, y = inputs_for(data.x), labels_for(self.loss, data.y)
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


class ShadowTrainer(Trainer):
    """Dynamic network surgery: dense shadow weights ``theta`` are updated with the gradient
    taken at ``theta * mask``; the mask is recomputed from ``|theta|`` by the caller.

    Kept weights take the optimizer's update. Pruned ones take a plain gradient step,
    ``theta -= lr * g``, as in Guo et al. (2016), who trained with SGD: an adaptive optimizer
    (Adam, RMSprop) moves every weight by about ``lr`` per step whatever its gradient, so a
    pruned weight's shadow would grow with time rather than with importance, and the
    magnitude mask would bring back noise (LeNet-300-100 fell from 98% to 71% at 95%
    sparsity with Adam's update on the pruned shadows).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shadow = [tf.Variable(v.read_value(), trainable=False) for v in self.pvars]

    def set_masks(self, masks: Mapping[str, np.ndarray]) -> None:
        for name, var, mvar, theta in zip(
            self.names, self.pvars, self.mask_vars, self._shadow_or_self(), strict=True
        ):
            m = masks.get(name)
            value = np.ones(mvar.shape, mvar.dtype.as_numpy_dtype) if m is None else m
            mvar.assign(np.asarray(value, dtype=mvar.dtype.as_numpy_dtype))
            var.assign(theta * mvar)

    def _shadow_or_self(self) -> list[tf.Variable]:
        return getattr(self, "shadow", self.pvars)

    def shadow_weights(self) -> dict[str, np.ndarray]:
        return {n: t.numpy() for n, t in zip(self.names, self.shadow, strict=True)}

    def _build_step(self) -> Any:
        pvars, others, masks, shadow = self.pvars, self.others, self.mask_vars, self.shadow
        n_p = len(pvars)
        variables = [*pvars, *others]
        targets = [*shadow, *others]

        optimizer = self.optimizer

        @tf.function
        def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
            for v, t, m in zip(pvars, shadow, masks, strict=True):
                v.assign(t * m)
            with tf.GradientTape() as tape:
                loss = self._forward_loss(x, y)
            grads = tape.gradient(loss, variables)
            pairs, plain = [], []
            for i, (g, t) in enumerate(zip(grads, targets, strict=True)):
                if g is None:
                    continue
                if i < n_p:
                    g = tf.convert_to_tensor(g)
                    plain.append((g * (1 - masks[i]), t))  # pruned: plain gradient step
                    g = g * masks[i]  # kept: the optimizer's step
                pairs.append((g, t))
            lr = optimizer.learning_rate  # this step's rate, read before the step (schedules)
            optimizer.apply_gradients(pairs)
            for g, t in plain:
                t.assign_sub(tf.cast(lr, t.dtype) * g)
            for v, t, m in zip(pvars, shadow, masks, strict=True):
                v.assign(t * m)
            return loss

        return step


@dataclass(frozen=True)
class HardConcrete:
    """Hard-concrete distribution constants (Louizos et al. 2018, eq. 10-12)."""

    beta: float = 2.0 / 3.0
    gamma: float = -0.1
    zeta: float = 1.1

    def sample(self, log_alpha: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
        s = tf.sigmoid((tf.math.log(u) - tf.math.log(1.0 - u) + log_alpha) / self.beta)
        return tf.clip_by_value(s * (self.zeta - self.gamma) + self.gamma, 0.0, 1.0)

    def deterministic(self, log_alpha: np.ndarray) -> np.ndarray:
        s = 1.0 / (1.0 + np.exp(-log_alpha))
        return np.clip(s * (self.zeta - self.gamma) + self.gamma, 0.0, 1.0)

    def prob_nonzero(self, log_alpha: Any) -> Any:
        """P(z != 0) = sigmoid(log_alpha - beta * log(-gamma / zeta))."""
        shift = self.beta * math.log(-self.gamma / self.zeta)
        if isinstance(log_alpha, np.ndarray):
            return 1.0 / (1.0 + np.exp(-(log_alpha - shift)))
        return tf.sigmoid(log_alpha - shift)


class HardConcreteTrainer(Trainer):
    """Weights ``theta`` and gates ``log_alpha`` trained with ``loss + lam * E[L0] / n``.

    ``per_unit`` gates one whole output unit (last kernel axis) with one gate; otherwise every
    weight has its own gate. ``E[L0]`` counts expected non-zero *weights* either way.
    """

    def __init__(
        self,
        *args: Any,
        lam: float,
        per_unit: bool = False,
        init_keep: float = 0.9,
        gate_learning_rate: float = 0.05,
        gate_seed: int = 0,
        dist: HardConcrete | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.dist = dist or HardConcrete()
        self.lam = float(lam)
        self.per_unit = per_unit
        self.theta = [tf.Variable(v.read_value(), trainable=False) for v in self.pvars]
        rng = np.random.default_rng(gate_seed)
        mean = math.log(init_keep) - math.log(1.0 - init_keep)
        self.log_alpha = [
            tf.Variable(
                rng.normal(mean, 0.01, size=(v.shape[-1],) if per_unit else tuple(v.shape)),
                dtype=tf.float32,
                trainable=False,
            )
            for v in self.pvars
        ]
        # weights covered by one gate (so E[L0] counts weights)
        self.cover = [float(np.prod(v.shape[:-1])) if per_unit else 1.0 for v in self.pvars]
        self.total = float(sum(int(np.prod(v.shape)) for v in self.pvars))
        self.gate_optimizer = keras.optimizers.Adam(gate_learning_rate)
        self.noise = tf.random.Generator.from_seed(gate_seed)

    def expected_l0(self) -> float:
        """Expected number of non-zero weights under the current gates."""
        return float(
            sum(
                c * float(np.sum(self.dist.prob_nonzero(la.numpy())))
                for c, la in zip(self.cover, self.log_alpha, strict=True)
            )
        )

    def gates(self) -> dict[str, np.ndarray]:
        """Deterministic test-time gates, broadcast to each kernel's shape."""
        out = {}
        for name, la, t in zip(self.names, self.log_alpha, self.theta, strict=True):
            out[name] = np.broadcast_to(self.dist.deterministic(la.numpy()), t.shape).copy()
        return out

    def theta_weights(self) -> dict[str, np.ndarray]:
        return {n: t.numpy() for n, t in zip(self.names, self.theta, strict=True)}

    def _build_step(self) -> Any:
        pvars, others, theta, las = self.pvars, self.others, self.theta, self.log_alpha
        n_p = len(pvars)
        variables = [*pvars, *others]
        dist, lam, total, cover = self.dist, self.lam, self.total, self.cover

        @tf.function
        def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as gate_tape:
                gate_tape.watch(las)
                zs = [dist.sample(la, self.noise.uniform(la.shape, 1e-6, 1.0 - 1e-6)) for la in las]
                penalty = (
                    lam
                    * tf.add_n(
                        [
                            c * tf.reduce_sum(dist.prob_nonzero(la))
                            for c, la in zip(cover, las, strict=True)
                        ]
                    )
                    / total
                )
            for v, t, z in zip(pvars, theta, zs, strict=True):
                v.assign(t * tf.cast(z, t.dtype))
            with tf.GradientTape() as tape:
                loss = self._forward_loss(x, y)
            grads = tape.gradient(loss, variables)
            g_theta, g_z = [], []
            for i in range(n_p):
                g = tf.convert_to_tensor(grads[i])
                z = tf.cast(zs[i], g.dtype)
                g_theta.append(g * z)
                gz = g * theta[i]
                if self.per_unit:
                    gz = tf.reduce_sum(gz, axis=list(range(len(gz.shape) - 1)))
                g_z.append(tf.cast(gz, tf.float32))
            g_la = gate_tape.gradient(
                [*zs, penalty], las, output_gradients=[*g_z, tf.ones_like(penalty)]
            )
            pairs = list(zip(g_theta, theta, strict=True))
            pairs += [(g, v) for g, v in zip(grads[n_p:], others, strict=True) if g is not None]
            self.optimizer.apply_gradients(pairs)
            self.gate_optimizer.apply_gradients(zip(g_la, las, strict=True))
            return loss + penalty

        return step

    def finalize(self) -> dict[str, np.ndarray]:
        """Put ``theta * deterministic gate`` into the model; return those weights."""
        gates = self.gates()
        out = {}
        for name, v, t in zip(self.names, self.pvars, self.theta, strict=True):
            w = t.numpy() * gates[name].astype(t.dtype.as_numpy_dtype)
            v.assign(w)
            out[name] = w
        return out

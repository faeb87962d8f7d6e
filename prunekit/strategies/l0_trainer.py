"""The ``l0`` strategy's trainer: L0 regularisation with hard-concrete gates (Louizos et al. 2018).

The model holds ``theta * z`` with ``z`` sampled each step; gates and weights are trained with
the expected-L0 penalty. Imported by :mod:`prunekit.strategies.l0` inside ``run`` (it needs
TensorFlow).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from prunekit.training import Trainer, compiled


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
        return np.asarray(np.clip(s * (self.zeta - self.gamma) + self.gamma, 0.0, 1.0))

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

        @compiled
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

"""The ``gradual`` strategy's trainer for ``regrow``: dynamic network surgery (Guo et al. 2016).

The model holds ``theta * mask``; dense shadow weights ``theta`` keep receiving the gradient,
so pruned weights can come back when the caller recomputes the mask from ``|theta|``. Imported
by :mod:`prunekit.strategies.gradual` inside ``run`` (it needs TensorFlow).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from prunekit.training import Trainer, compiled


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

        @compiled
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

"""Knowledge distillation during recovery: the model as uploaded teaches its pruned self.

Hinton et al. 2015: besides the task loss on the labels, the pruned model (student) is
trained to match the outputs of the original model (teacher) on the same batch. The loss is

    (1 - alpha) * task(y, student) + alpha * kd(teacher, student)

with, for classifiers, ``kd = T^2 * KL(softmax(z_t / T) || softmax(z_s / T))`` over the
logits ``z`` (the log of the outputs when the model ends in a softmax, which equals the
logits up to a per-sample constant that softmax ignores). ``T^2`` keeps the gradient scale
independent of the temperature. A binary classifier's single output is treated as the two
logits ``(0, z)``; a regression model matches the teacher's outputs in mean squared error.

The teacher runs in inference mode and gets no gradient: one more forward pass per training
step and one more copy of the weights in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from prunekit.losses import LossName, LossSpec

Teacher = Callable[[Any], Any]
EPS = 1e-7


def _logits(out: tf.Tensor, loss: LossSpec) -> tf.Tensor:
    out = tf.cast(out, tf.float32)
    if loss.name is LossName.BINARY:
        z = tf.reshape(out, [tf.shape(out)[0], -1])[:, :1]
        if not loss.from_logits:  # a probability p: its logit log(p / (1 - p))
            p = tf.clip_by_value(z, EPS, 1.0 - EPS)
            z = tf.math.log(p) - tf.math.log(1.0 - p)
        return tf.concat([tf.zeros_like(z), z], axis=-1)
    if loss.from_logits:
        return out
    return tf.math.log(tf.clip_by_value(out, EPS, 1.0))


def kd_loss(loss: LossSpec, teacher_out: Any, student_out: Any, temperature: float) -> tf.Tensor:
    """The distillation term (a scalar): temperature-scaled KL for classifiers, MSE else."""
    teacher_out = tf.stop_gradient(tf.cast(teacher_out, tf.float32))
    student_out = tf.cast(student_out, tf.float32)
    if not loss.is_classification:
        return tf.reduce_mean(tf.square(student_out - teacher_out))
    t = float(temperature)
    log_p_t = tf.nn.log_softmax(_logits(teacher_out, loss) / t, axis=-1)
    log_p_s = tf.nn.log_softmax(_logits(student_out, loss) / t, axis=-1)
    kl = tf.reduce_sum(tf.exp(log_p_t) * (log_p_t - log_p_s), axis=-1)
    return (t * t) * tf.reduce_mean(kl)


def blend(
    task: Any, loss: LossSpec, teacher_out: Any, student_out: Any, alpha: float, temperature: float
) -> tf.Tensor:
    """``(1 - alpha) * task + alpha * kd``."""
    kd = kd_loss(loss, teacher_out, student_out, temperature)
    return (1.0 - alpha) * tf.cast(task, tf.float32) + alpha * kd


class Distillation:
    """A teacher and how much to listen to it; calling it gives the blended loss of a batch."""

    def __init__(self, teacher: Teacher, loss: LossSpec, alpha: float, temperature: float):
        self.teacher = teacher
        self.loss = loss
        self.alpha = float(alpha)
        self.temperature = float(temperature)

    def __call__(self, x: Any, student_out: Any, task: Any) -> tf.Tensor:
        teacher_out = self.teacher(x)
        return blend(task, self.loss, teacher_out, student_out, self.alpha, self.temperature)

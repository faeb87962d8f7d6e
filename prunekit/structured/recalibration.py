"""BatchNorm recalibration: re-estimate moving statistics on the data after a cut.

After channels are removed, a BatchNormalization layer downstream of the cut sees inputs
whose distribution changed (fewer summands in every convolution), but its moving mean and
variance still describe the dense model. Keras' default momentum (0.99) makes fine-tuning
fix that only slowly. Li et al. 2020 (EagleEye, "adaptive batch normalization") re-estimate
the statistics on a few training batches instead: cheap, label-free, and it recovers much of
the accuracy a cut seems to lose.

:func:`recalibrate_batchnorm` runs the model in training mode (so every BatchNorm normalises
with the batch's own statistics and the layers below see what they will see in training)
over ``max_samples`` training inputs. Each trainable BatchNormalization layer's momentum is
set to 0 for the pass, so after a batch its moving statistics hold exactly that batch's mean
and (biased) variance of its input; those are read back after every batch and pooled, weighted
by batch size, into the mean and variance over all the samples seen:

    mean = sum_b n_b * mean_b / N
    var  = sum_b n_b * (var_b + (mean_b - mean)^2) / N

(the law of total variance: the exact population variance of the inputs, not an average of
batch variances). Nothing else changes: trainable weights are restored if a layer updated
any in training mode (none of Keras' built-in layers do), momenta are restored, and a frozen
BatchNorm (``trainable=False``, which Keras runs in inference mode) keeps its statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

DEFAULT_SAMPLES = 2048  # training inputs pooled per recalibration (EagleEye: a few batches)


@dataclass(frozen=True)
class RecalibrationReport:
    layers: int  # BatchNorm layers whose statistics were re-estimated
    frozen: int  # BatchNorm layers left as they were (trainable=False)
    samples: int
    batches: int


def batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer of ``model``, nested models included, once each."""
    found: list[keras.layers.BatchNormalization] = []
    seen: set[int] = set()

    def walk(layer: keras.layers.Layer) -> None:
        if id(layer) in seen:
            return
        seen.add(id(layer))
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        for sub in getattr(layer, "layers", None) or []:
            walk(sub)

    walk(model)
    return found


def recalibrate_batchnorm(
    model: keras.Model,
    x: np.ndarray,
    *,
    batch_size: int = 128,
    max_samples: int = DEFAULT_SAMPLES,
    check_cancelled: Callable[[], None] | None = None,
) -> RecalibrationReport:
    """Set every trainable BatchNorm's moving mean/variance of ``model`` (in place) to the
    statistics of its input over the first ``max_samples`` rows of ``x``."""
    bns = [bn for bn in batchnorm_layers(model) if bn.trainable]
    frozen = len(batchnorm_layers(model)) - len(bns)
    n = min(len(x), max_samples)
    if not bns or n == 0:
        return RecalibrationReport(0, frozen, 0, 0)
    batch = max(1, min(batch_size, n))
    momenta = [bn.momentum for bn in bns]
    saved = [np.asarray(keras.ops.convert_to_numpy(v)) for v in model.trainable_variables]
    as_list = isinstance(model.input, list)
    sums_mean = [np.zeros(bn.moving_mean.shape, np.float64) for bn in bns]
    sums_sq = [np.zeros(bn.moving_mean.shape, np.float64) for bn in bns]
    batches = 0
    try:
        for bn in bns:
            bn.momentum = 0.0
        for start in range(0, n, batch):
            xb = np.asarray(x[start : min(start + batch, n)], dtype="float32")
            # eager: a few dozen batches cost less than tracing a graph for a model that
            # is rebuilt at every cut
            model([xb] if as_list else xb, training=True)
            for i, bn in enumerate(bns):
                m = np.asarray(keras.ops.convert_to_numpy(bn.moving_mean), np.float64)
                v = np.asarray(keras.ops.convert_to_numpy(bn.moving_variance), np.float64)
                # pooled E[x] and E[x^2]: var = E[x^2] - E[x]^2 (law of total variance)
                sums_mean[i] += len(xb) * m
                sums_sq[i] += len(xb) * (v + m * m)
            batches += 1
            if check_cancelled is not None:
                check_cancelled()
    finally:
        for bn, momentum in zip(bns, momenta, strict=True):
            bn.momentum = momentum
        for var, value in zip(model.trainable_variables, saved, strict=True):
            var.assign(value)
    for i, bn in enumerate(bns):
        mean = sums_mean[i] / n
        var = np.maximum(sums_sq[i] / n - mean * mean, 0.0)
        bn.moving_mean.assign(mean.astype(bn.moving_mean.dtype))
        bn.moving_variance.assign(var.astype(bn.moving_variance.dtype))
    return RecalibrationReport(len(bns), frozen, n, batches)

"""BatchNorm recalibration (prunekit.structured.recalibration) on hand-checkable cases."""

from __future__ import annotations

import keras
import numpy as np

from prunekit.structured.recalibration import batchnorm_layers, recalibrate_batchnorm


def _dense_bn(momentum: float = 0.99) -> keras.Model:
    """x -> Dense(2) with kernel [[1, 0], [0, 2]], bias 0 -> BatchNorm: the BN's input is
    (x0, 2 * x1), whose statistics can be computed by hand."""
    inp = keras.Input((2,))
    h = keras.layers.Dense(2, name="fc")(inp)
    out = keras.layers.BatchNormalization(momentum=momentum, name="bn")(h)
    model = keras.Model(inp, out)
    model.get_layer("fc").set_weights([np.array([[1.0, 0.0], [0.0, 2.0]]), np.zeros(2)])
    return model


def test_statistics_become_the_datas_own() -> None:
    model = _dense_bn()
    bn = model.get_layer("bn")
    # moving statistics start at the dense model's (0, 1): stale for this data
    x = np.array([[1.0, 1.0], [3.0, 2.0], [5.0, 3.0], [7.0, 6.0], [9.0, 8.0]], "float32")
    # input of the BN: column 0 = 1,3,5,7,9 (mean 5, var 8); column 1 = 2,4,6,12,16
    # (mean 8, var (36+16+4+16+64)/5 = 27.2)
    report = recalibrate_batchnorm(model, x, batch_size=2)  # batches of 2, 2 and 1
    assert report.layers == 1 and report.samples == 5 and report.batches == 3
    np.testing.assert_allclose(bn.moving_mean.numpy(), [5.0, 8.0], rtol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), [8.0, 27.2], rtol=1e-5)
    assert bn.momentum == 0.99  # restored
    # the weights are untouched
    np.testing.assert_array_equal(model.get_layer("fc").get_weights()[0], [[1, 0], [0, 2]])


def test_max_samples_and_frozen_layers() -> None:
    model = _dense_bn()
    x = np.array([[1.0, 0.0], [3.0, 0.0], [100.0, 0.0]], "float32")
    recalibrate_batchnorm(model, x, max_samples=2)
    np.testing.assert_allclose(model.get_layer("bn").moving_mean.numpy(), [2.0, 0.0])
    np.testing.assert_allclose(model.get_layer("bn").moving_variance.numpy(), [1.0, 0.0])

    frozen = _dense_bn()
    frozen.get_layer("bn").trainable = False
    report = recalibrate_batchnorm(frozen, x)
    assert report.layers == 0 and report.frozen == 1
    np.testing.assert_array_equal(frozen.get_layer("bn").moving_mean.numpy(), [0.0, 0.0])


def test_nested_batchnorm_found_once() -> None:
    inner = _dense_bn()
    inp = keras.Input((2,))
    outer = keras.Model(inp, inner(inner(inp)))  # a shared nested model: one BN object
    assert [bn.name for bn in batchnorm_layers(outer)] == ["bn"]

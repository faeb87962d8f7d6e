"""bench/structured_vgg.py: whether re-runs of the latency measurement agree."""

from __future__ import annotations

from bench.structured_vgg import intervals_overlap


def _run(lo: float, hi: float) -> dict:
    return {"speedups_b32": {"filter_l1": {"litert": {"ci95": [lo, hi]}}}}


def test_intervals_overlap_needs_one_common_point() -> None:
    assert intervals_overlap([_run(3.1, 3.4), _run(3.3, 3.6), _run(3.2, 3.35)]) == {
        "filter_l1": {"litert": True}
    }
    # pairwise overlapping is not enough: 3.1-3.3 and 3.35-3.5 share nothing
    assert intervals_overlap([_run(3.1, 3.3), _run(3.2, 3.5), _run(3.35, 3.5)]) == {
        "filter_l1": {"litert": False}
    }
    assert intervals_overlap([_run(2.0, 2.2)])["filter_l1"]["litert"] is True


def test_litert_runner_computes_what_the_keras_model_computes() -> None:
    """The timed LiteRT call runs the same model (BatchNorm folded) at the resized batch."""
    import keras
    import numpy as np

    from bench.litert_timing import litert_runner

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(keras.layers.MaxPooling2D()(h))
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(h)))
    rng = np.random.default_rng(0)
    bn = model.layers[2]
    bn.moving_mean.assign(rng.normal(size=8).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, 8).astype("float32"))
    x = rng.normal(size=(5, 8, 8, 1)).astype("float32")
    for threads in (1, None):
        run = litert_runner(model, 5, threads)
        np.testing.assert_allclose(run(x), np.asarray(model(x, training=False)), atol=1e-4)

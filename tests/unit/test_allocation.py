"""Layer budgets against hand-computed cases (prunekit.allocation), and their wiring into
an unstructured strategy's parameters and report."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from prunekit.allocation import (
    SensitivityCurve,
    allocate,
    erk_densities,
    lamp_scores,
    layer_report,
    sensitivity_sparsities,
)
from prunekit.strategies import parse_params

A = np.array([1.0, 2.0, 3.0, 4.0])
B = np.array([10.0, 20.0])


def kept(masks: dict[str, np.ndarray], name: str, values: np.ndarray) -> list[float]:
    return [float(v) for v in values[masks[name]]]


def test_uniform_prunes_the_same_fraction_of_each_tensor() -> None:
    masks = allocate({"a": A, "b": B}, 0.5, "uniform")
    assert kept(masks, "a", A) == [3.0, 4.0] and kept(masks, "b", B) == [20.0]


def test_global_prunes_below_one_threshold() -> None:
    masks = allocate({"a": A, "b": B}, 0.5, "global")  # 3 of 6: 1, 2, 3
    assert kept(masks, "a", A) == [4.0] and kept(masks, "b", B) == [10.0, 20.0]


def test_lamp_scores_and_masks_by_hand() -> None:
    # a: squares 1 4 9 16, suffix sums 30 29 25 16 -> 1/30, 4/29, 9/25, 1
    np.testing.assert_allclose(lamp_scores(A), [1 / 30, 4 / 29, 9 / 25, 1.0])
    # b: 100 400, suffix 500 400 -> 0.2, 1
    np.testing.assert_allclose(lamp_scores(B), [0.2, 1.0])
    # 3 lowest LAMP scores: a's 1 and 2, then b's 10 (0.2 < 9/25): unlike global magnitude
    masks = allocate({"a": A, "b": B}, 0.5, "lamp")
    assert kept(masks, "a", A) == [3.0, 4.0] and kept(masks, "b", B) == [20.0]
    # the largest weight of a tensor scores 1: at 4 of 6 each tensor keeps its largest
    masks = allocate({"a": A, "b": B}, 4 / 6, "lamp")
    assert kept(masks, "a", A) == [4.0] and kept(masks, "b", B) == [20.0]


def test_erk_densities_by_hand() -> None:
    # a (4, 2): size 8, sum/prod 6/8; b (2, 2): 4/4. keep 6 of 12: eps (0.75*8 + 4) = 6
    d = erk_densities({"a": (4, 2), "b": (2, 2)}, 0.5)
    assert d["a"] == pytest.approx(0.45) and d["b"] == pytest.approx(0.6)
    masks = allocate({"a": np.arange(1.0, 9.0).reshape(4, 2), "b": np.ones((2, 2))}, 0.5, "erk")
    assert int((~masks["a"]).sum()) == 4 and int((~masks["b"]).sum()) == 2  # 4.4, 1.6 rounded


def test_erk_caps_a_dense_tensor_and_solves_again() -> None:
    # b's density would be eps * 1 = 4.9 > 1: dense; then eps * 200 = 1000.4 - 4
    d = erk_densities({"a": (100, 100), "b": (2, 2)}, 0.9)
    assert d["b"] == 1.0
    assert d["a"] == pytest.approx((0.1 * 10004 - 4) / 10000)


def test_sensitivity_allocation_by_hand() -> None:
    # a: drop 0 at 0.5, 0.1 at 0.9; b: 0.2 at 0.5. 100 of 200 pruned when
    # (0.5 + 4 tau) + 2.5 tau = 1: tau = 1/13
    curves = {
        "a": SensitivityCurve([0.5, 0.9], [0.0, 0.1]),
        "b": SensitivityCurve([0.5, 0.9], [0.2, 0.4]),
    }
    s = sensitivity_sparsities({"a": 100, "b": 100}, curves, 0.5)
    assert s["a"] == pytest.approx(0.5 + 4 / 13) and s["b"] == pytest.approx(2.5 / 13)
    scores = {"a": np.arange(100.0), "b": np.arange(100.0)}
    masks = allocate(scores, 0.5, "sensitivity", curves)
    assert int((~masks["a"]).sum()) == 81 and int((~masks["b"]).sum()) == 19
    assert kept(masks, "b", scores["b"])[0] == 19.0  # the smallest go first
    report = layer_report(masks, "sensitivity")
    assert report["layers"]["a"] == {"size": 100, "pruned": 81, "sparsity": 0.81}  # type: ignore[index]


def test_sensitivity_allocation_below_the_free_ratios_scales_them_down() -> None:
    # no drop up to 0.5 (a) and 0.3 (b): 0.2 of all is reached before any tolerance, in
    # proportion to what each gives up for free: a 0.5 * 0.2 / 0.4, b 0.3 * 0.2 / 0.4
    curves = {
        "a": SensitivityCurve([0.5, 0.9], [0.0, 0.1]),
        "b": SensitivityCurve([0.3, 0.9], [0.0, 0.4]),
    }
    s = sensitivity_sparsities({"a": 100, "b": 100}, curves, 0.2)
    assert s["a"] == pytest.approx(0.25) and s["b"] == pytest.approx(0.15)


def test_sensitivity_curve_never_credits_pruning_more() -> None:
    c = SensitivityCurve([0.5, 0.7, 0.9], [0.1, 0.05, 0.3])  # noisy: 0.7 looks better
    assert c.max_ratio(0.08) == pytest.approx(0.4)  # 0.5 * 0.08 / 0.1, not 0.7
    assert c.max_ratio(0.1) == pytest.approx(0.7)


def test_allocation_is_a_parameter_of_unstructured_strategies() -> None:
    for name in ("magnitude", "random", "saliency", "gradual", "l1", "l0"):
        p = parse_params({"name": name, "sparsity": 0.5, "allocation": "erk"})
        assert p.allocation == "erk"  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="allocation"):
        parse_params({"name": "magnitude", "sparsity": 0.5, "allocation": "bogus"})
    with pytest.raises(ValidationError, match="block"):
        parse_params({"name": "magnitude", "sparsity": 0.5, "block": "1x4", "allocation": "lamp"})


def test_magnitude_with_lamp_reports_each_layer(tmp_path: object) -> None:
    from prunekit.formats import ModelFormat
    from prunekit.model import LoadedModel
    from prunekit.strategies import build
    from tests import tiny_models
    from tests.unit.strategy_helpers import context

    model = LoadedModel(format=ModelFormat.KERAS, keras_model=tiny_models.mlp(seed=0))
    ctx = context(model, {"name": "magnitude", "sparsity": 0.6, "allocation": "lamp"}, None)
    expected = allocate({w.name: np.abs(w.numpy()) for w in ctx.prunable}, 0.6, "lamp")
    build(parse_params(ctx.spec.strategy)).run(ctx)
    report = ctx.cache["allocation"]
    assert report["rule"] == "lamp"
    for w in ctx.prunable:
        assert np.array_equal(w.numpy() != 0, expected[w.name] & (w.numpy() != 0))
        row = report["layers"][w.name]
        assert row["pruned"] == int((~expected[w.name]).sum())
    total = sum(r["pruned"] for r in report["layers"].values())
    assert total == round(0.6 * sum(r["size"] for r in report["layers"].values()))

"""Mask maths against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from prunekit.masks import (
    count_to_prune,
    magnitude_masks,
    mask_sparsity,
    masks_from_scores,
    prune_smallest,
)


def test_count_is_round_of_s_times_n() -> None:
    assert count_to_prune(10, 0.8) == 8
    assert count_to_prune(176, 0.8) == 141  # 140.8 -> 141
    assert count_to_prune(9, 0.5) == round(4.5)  # Python's round: half to even
    assert count_to_prune(3, 0.0) == 0
    with pytest.raises(ValueError):
        count_to_prune(3, 1.5)


def test_prune_smallest_hand_case() -> None:
    scores = np.array([0.5, 0.1, 0.9, 0.3, 0.7])
    keep = prune_smallest(scores, 2)
    assert keep.tolist() == [True, False, True, False, True]


def test_ties_pruned_by_position_deterministically() -> None:
    scores = np.array([1.0, 0.2, 0.2, 0.2, 0.2, 3.0])
    keep = prune_smallest(scores, 3)
    # three of the four 0.2s go: the first three by position
    assert keep.tolist() == [True, False, False, False, True, True]
    assert np.array_equal(keep, prune_smallest(scores.copy(), 3))


def test_all_equal_scores_exact_count() -> None:
    keep = prune_smallest(np.zeros(100), 37)
    assert int((~keep).sum()) == 37
    assert not keep[:37].any() and keep[37:].all()


def test_global_scope_one_threshold_across_tensors() -> None:
    weights = {
        "a": np.array([[1.0, -2.0], [3.0, -4.0]]),
        "b": np.array([0.5, -0.25, 10.0, 0.1]),
    }
    masks = magnitude_masks(weights, 0.5, "global")
    # the 4 smallest |w| overall: 0.1, 0.25, 0.5, 1.0
    assert masks["a"].tolist() == [[False, True], [True, True]]
    assert masks["b"].tolist() == [False, False, True, False]
    assert mask_sparsity(masks) == 0.5


def test_layer_scope_same_sparsity_each() -> None:
    rng = np.random.default_rng(0)
    weights = {"a": rng.normal(size=(10, 10)), "b": rng.normal(size=(3, 7))}
    masks = magnitude_masks(weights, 0.8, "layer")
    assert int((~masks["a"]).sum()) == 80
    assert int((~masks["b"]).sum()) == round(0.8 * 21)
    # the kept ones are the largest in each tensor
    for name, w in weights.items():
        kept = np.abs(w[masks[name]])
        pruned = np.abs(w[~masks[name]])
        assert kept.min() >= pruned.max()


@pytest.mark.parametrize("s", [0.0, 0.1, 0.33, 0.5, 0.9, 0.95, 0.999])
def test_exact_count_global(s: float) -> None:
    rng = np.random.default_rng(1)
    scores = {"x": rng.normal(size=(17, 13)), "y": rng.normal(size=(301,))}
    masks = masks_from_scores({k: np.abs(v) for k, v in scores.items()}, s, "global")
    n = 17 * 13 + 301
    assert sum(int((~m).sum()) for m in masks.values()) == round(s * n)


def test_already_zero_weights_count_towards_sparsity() -> None:
    w = {"k": np.array([0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])}
    masks = magnitude_masks(w, 0.5)
    assert masks["k"].tolist() == [False] * 5 + [True] * 5

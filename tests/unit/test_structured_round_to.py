"""``round_to``: kept channel counts rounded up to SIMD-friendly multiples.

Checked by hand on small cases and, over many random score vectors, against the rules the
strategies promise: every kept width is a multiple of ``round_to`` (or the group's whole
width, when no multiple fits), no group is ever emptied, rounding keeps at most
``round_to - 1`` channels more per group than the ratio alone, and the channels it gives back
are the best-scored of those the ratio removed (so the unrounded selection is a subset).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from prunekit.strategies import parse_params
from prunekit.strategies.slimming import select_global_threshold
from prunekit.structured.selection import round_keep, select_channels
from tests.unit.test_structured_strategies import (
    BN1_GAMMAS,
    _run,
    _widths,
    conv_bn,
    slim_hand_gammas,
)


def test_round_keep_by_hand() -> None:
    assert round_keep(5, 10, 4) == 8
    assert round_keep(8, 10, 4) == 8
    assert round_keep(9, 10, 4) == 10  # 12 would be wider than the group: keep it whole
    assert round_keep(3, 6, 8) == 6
    assert round_keep(1, 64, 8) == 8  # never emptied, never below one step
    assert round_keep(7, 10, 1) == 7


def test_uniform_round_to_by_hand() -> None:
    scores = {0: np.arange(10.0), 1: np.arange(24.0)[::-1].copy(), 2: np.arange(6.0)}
    kept = select_channels(scores, 0.5, round_to=4)
    # group 0: floor(5) removed -> keep 5 -> 8: the 8 best are 2..9
    np.testing.assert_array_equal(kept[0], np.arange(2, 10))
    # group 1: keep 12, already a multiple: the 12 best are the first 12 (scores descend)
    np.testing.assert_array_equal(kept[1], np.arange(12))
    # group 2: keep 3 -> 4
    np.testing.assert_array_equal(kept[2], [2, 3, 4, 5])


def test_global_round_to_gives_back_the_best_removed() -> None:
    # normalised by the group mean: group 0 is (1..8) / 4.5, group 1 is all 1.0; 8 of 16
    # channels go: group 0's four below 1.0, then group 1's first four (ties: lower index)
    scores = {0: np.arange(1.0, 9.0), 1: np.full(8, 9.0)}
    plain = select_channels(scores, 0.5, scope="global")
    np.testing.assert_array_equal(plain[0], [4, 5, 6, 7])
    np.testing.assert_array_equal(plain[1], [4, 5, 6, 7])
    rounded = select_channels(scores, 0.5, scope="global", round_to=8)
    np.testing.assert_array_equal(rounded[0], np.arange(8))
    np.testing.assert_array_equal(rounded[1], np.arange(8))
    rounded = select_channels(scores, 0.5, scope="global", round_to=3)
    np.testing.assert_array_equal(rounded[0], [2, 3, 4, 5, 6, 7])  # keep 4 -> 6: 3, 4 back
    np.testing.assert_array_equal(rounded[1], [2, 3, 4, 5, 6, 7])  # the last two removed


def _check_rounding(
    base: dict[int, np.ndarray], rounded: dict[int, np.ndarray], sizes: dict[int, int], r: int
) -> None:
    for gid, size in sizes.items():
        k, k0 = len(rounded[gid]), len(base[gid])
        assert 1 <= k <= size
        assert k % r == 0 or k == size, (k, size, r)
        assert k0 <= k <= k0 + r - 1  # within one round_to step of the ratio's count
        assert set(base[gid].tolist()) <= set(rounded[gid].tolist())
        assert np.all(np.diff(rounded[gid]) > 0)


@pytest.mark.parametrize("round_to", [2, 4, 8, 16])
def test_round_to_rules_hold_on_random_scores(round_to: int) -> None:
    rng = np.random.default_rng(round_to)
    for trial in range(60):
        sizes = {g: int(rng.integers(1, 140)) for g in range(int(rng.integers(1, 6)))}
        scores = {g: rng.gamma(2.0, 1.0, n) for g, n in sizes.items()}
        ratio = float(rng.choice([0.0, 0.1, 0.25, 0.5, 0.6, 0.75, 0.9]))
        for scope in ("uniform", "global"):
            base = select_channels(scores, ratio, scope)  # type: ignore[arg-type]
            rounded = select_channels(scores, ratio, scope, round_to=round_to)  # type: ignore[arg-type]
            _check_rounding(base, rounded, sizes, round_to)
            if scope == "uniform":  # the ratio is met within one step per layer
                for gid, size in sizes.items():
                    removed = size - len(rounded[gid])
                    assert removed >= math.floor(ratio * size) - (round_to - 1), trial
        base = select_global_threshold(scores, ratio)
        rounded = select_global_threshold(scores, ratio, round_to=round_to)
        _check_rounding(base, rounded, sizes, round_to)


def test_round_to_is_validated() -> None:
    assert parse_params({"name": "filter", "ratio": 0.5, "round_to": 8}).round_to == 8  # type: ignore[attr-defined]
    for bad in (0, -8, 4096, "eight"):
        for name in ("filter", "slimming"):
            with pytest.raises(ValidationError) as err:
                parse_params({"name": name, "ratio": 0.5, "round_to": bad})
            assert err.value.errors()[0]["loc"] == ("round_to",)


def test_filter_round_to_widths() -> None:
    # conv0 8: floor(5.6) = 5 removed -> keep 3 -> 4; conv1 16: 11 removed -> keep 5 -> 8
    outcome, _ = _run(conv_bn(), {"name": "filter", "ratio": 0.7, "round_to": 4})
    assert _widths(outcome.model.keras_model) == [4, 8]  # type: ignore[union-attr]
    outcome, _ = _run(conv_bn(), {"name": "filter", "ratio": 0.7})
    assert _widths(outcome.model.keras_model) == [3, 5]  # type: ignore[union-attr]


def test_slimming_round_to_gives_back_the_largest_removed_gammas() -> None:
    # ratio 0.5 removes the 12 smallest of 24: bn0 {1, 3, 5} (keep 5) and bn1
    # {2, 0, 4, 6, 15, 14, 13, 3, 12} (keep 7). round_to 2: 5 -> 6 gives bn0's 0.03 back,
    # 7 -> 8 gives bn1's 0.35 (channel 12) back.
    outcome, _ = slim_hand_gammas(ratio=0.5, round_to=2)
    new = outcome.model.keras_model  # type: ignore[union-attr]
    assert _widths(new) == [6, 8]
    np.testing.assert_allclose(new.get_layer("bn0").gamma.numpy(), [0.9, 0.5, 0.8, 0.03, 0.7, 0.6])
    kept1 = [i for i in range(16) if i not in (2, 0, 4, 6, 15, 14, 13, 3)]
    np.testing.assert_allclose(new.get_layer("bn1").gamma.numpy(), [BN1_GAMMAS[i] for i in kept1])

"""bench/torchprune/widths.py: the Torch-Pruning side is pruned to prunekit's widths."""

from __future__ import annotations

import pytest

from bench.torchprune.widths import kept_width, tp_ratio
from prunekit.strategies.structured_common import channels_kept


@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.3, 0.5, 0.6, 0.7, 0.75, 0.9, 0.95])
def test_torch_pruning_keeps_prunekits_width(ratio: float) -> None:
    for size in range(1, 257):
        kept = channels_kept(size, ratio)
        assert kept_width(size, ratio) == kept
        # MetaPruner's own arithmetic: int(initial_channels * (1 - ratio)) are kept
        assert int(size * (1 - tp_ratio(size, ratio))) == kept, (size, ratio)


def test_the_plain_ratio_would_differ_at_0_7() -> None:
    """Why the per-layer ratio exists: Torch-Pruning's own rounding keeps 4 of 16."""
    assert int(16 * (1 - 0.7)) == 4
    assert kept_width(16, 0.7) == 5
    assert [kept_width(w, 0.3) for w in (16, 32, 64)] == [12, 23, 45]

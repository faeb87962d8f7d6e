"""Kept widths for the Torch-Pruning side, matched to prunekit's (no torch import here).

prunekit's uniform scope removes ``floor(ratio * size)`` channels of every group
(``prunekit.strategies.structured_common.channels_kept``); Torch-Pruning's ``MetaPruner``
keeps ``int(size * (1 - r))``, which at ratio 0.7 keeps 4 of 16 where prunekit keeps 5. The
benchmark hands Torch-Pruning a per-layer ratio that lands on prunekit's width, so both
sides' pruned models have the same shape.
"""

from __future__ import annotations

import math


def kept_width(size: int, ratio: float) -> int:
    """prunekit's rule: ``floor(ratio * size)`` channels go, at least one stays."""
    return max(size - math.floor(ratio * size), 1)


def tp_ratio(size: int, ratio: float) -> float:
    """The ratio ``r`` for which ``int(size * (1 - r)) == kept_width(size, ratio)``: aiming
    at ``kept + 0.5`` channels puts the product half a channel clear of either integer."""
    return 1.0 - (kept_width(size, ratio) + 0.5) / size

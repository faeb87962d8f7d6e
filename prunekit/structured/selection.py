"""Choose which channels of each group to keep.

Ties are broken deterministically: among equal scores the channel with the lower index is
removed first (and, for ``global``, the group with the lower id first).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import numpy as np

from prunekit.strategies.structured_common import channels_kept, min_keep, round_keep

Scope = Literal["uniform", "global"]


def _order(scores: np.ndarray) -> np.ndarray:
    """Channel indices from least to most important (ties: lower index first)."""
    return np.lexsort((np.arange(scores.size), scores))


def select_channels(
    scores: Mapping[int, np.ndarray],
    ratio: float,
    scope: Scope = "uniform",
    min_channels: int = 1,
    round_to: int = 1,
) -> dict[int, np.ndarray]:
    """Return ``{group id: sorted kept channel indices}``.

    Args:
        scores: per-group channel importance (higher = more important).
        ratio: fraction of channels to remove, ``0 <= ratio < 1``. ``uniform`` removes
            ``floor(ratio * size)`` channels of every group; ``global`` removes
            ``floor(ratio * total)`` channels overall, choosing the lowest scores after
            dividing each group's scores by the group's mean score.
        min_channels: never keep fewer channels than this in a group.
        round_to: round each group's kept count up to a multiple of this (hardware
            friendly widths), never above the original size (:func:`round_keep`); the
            channels given back are the best-scored of those the ratio removed.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    if scope not in ("uniform", "global"):
        raise ValueError(f"scope must be 'uniform' or 'global', got {scope!r}")
    if min_channels < 1 or round_to < 1:
        raise ValueError("min_channels and round_to must be >= 1")
    ids = sorted(scores)
    keep_counts: dict[int, int] = {}
    if scope == "uniform":
        for gid in ids:
            size = scores[gid].size
            keep_counts[gid] = channels_kept(size, ratio, min_channels, round_to)
        return {
            gid: np.sort(_order(scores[gid])[scores[gid].size - keep_counts[gid] :]) for gid in ids
        }

    total = sum(scores[g].size for g in ids)
    target = math.floor(ratio * total)
    entries: list[tuple[float, int, int]] = []
    for gid in ids:
        s = np.asarray(scores[gid], dtype=np.float64)
        mean = float(s.mean()) if s.size else 0.0
        norm = s / mean if mean > 0 else np.zeros_like(s)
        entries.extend((float(v), gid, int(c)) for c, v in enumerate(norm))
    entries.sort()
    removed: dict[int, list[int]] = {gid: [] for gid in ids}
    n_removed = 0
    for _, gid, c in entries:
        if n_removed >= target:
            break
        size = scores[gid].size
        if size - len(removed[gid]) <= min_keep(size, min_channels):
            continue
        removed[gid].append(c)
        n_removed += 1
    kept: dict[int, np.ndarray] = {}
    for gid in ids:
        size = scores[gid].size
        keep = round_keep(size - len(removed[gid]), size, round_to)
        rem = set(removed[gid])
        drop = [int(c) for c in _order(scores[gid]) if int(c) in rem][: size - keep]
        kept[gid] = np.setdiff1d(np.arange(size), np.asarray(drop, dtype=int))
    return kept

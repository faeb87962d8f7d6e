"""Mask maths: which weights to zero, exactly and deterministically.

Numpy only. A mask is a boolean array shaped like its weight, ``True`` where the weight is
kept. At sparsity ``s`` over ``n`` candidate weights exactly ``round(s * n)`` of them are
pruned. Selection is O(n) (``np.partition``, no full sort). Ties at the threshold are broken
by position: among equal scores the one earlier in the (concatenated, C-order) sequence is
pruned first, so the same input always gives the same mask.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

import numpy as np

Masks = dict[str, np.ndarray]


class Scope(StrEnum):
    GLOBAL = "global"  # one threshold across all prunable weights
    LAYER = "layer"  # the same sparsity in each weight tensor


def count_to_prune(n: int, sparsity: float) -> int:
    """How many of ``n`` weights sparsity ``sparsity`` removes: ``round(sparsity * n)``."""
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    return min(n, max(0, round(sparsity * n)))


def prune_smallest(scores: np.ndarray, k: int) -> np.ndarray:
    """Keep-mask over a flat ``scores`` array that prunes exactly the ``k`` smallest.

    Among equal scores at the threshold, lower indices are pruned first.
    """
    flat = np.asarray(scores).reshape(-1)
    n = flat.size
    keep = np.ones(n, dtype=bool)
    if k <= 0:
        return keep
    if k >= n:
        keep[:] = False
        return keep
    threshold = np.partition(flat, k - 1)[k - 1]
    below = flat < threshold
    keep[below] = False
    remaining = k - int(below.sum())
    if remaining > 0:
        ties = np.flatnonzero(flat == threshold)[:remaining]
        keep[ties] = False
    return keep


def masks_from_scores(
    scores: Mapping[str, np.ndarray], sparsity: float, scope: Scope | str = Scope.GLOBAL
) -> Masks:
    """Masks pruning the lowest-scoring fraction ``sparsity`` of weights.

    ``scope="global"`` ranks all weights together (one threshold); ``"layer"`` prunes the same
    fraction of every tensor. The order of ``scores`` defines tie-breaking across tensors.
    """
    scope = Scope(scope)
    if scope is Scope.LAYER:
        return {
            name: prune_smallest(s, count_to_prune(s.size, sparsity)).reshape(s.shape)
            for name, s in scores.items()
        }
    names = list(scores)
    if not names:
        return {}
    flat = np.concatenate([np.ravel(scores[n]) for n in names])
    keep = prune_smallest(flat, count_to_prune(flat.size, sparsity))
    out: Masks = {}
    offset = 0
    for name in names:
        shape = np.shape(scores[name])
        size = int(np.prod(shape, dtype=np.int64))
        out[name] = keep[offset : offset + size].reshape(shape)
        offset += size
    return out


def magnitude_masks(
    weights: Mapping[str, np.ndarray], sparsity: float, scope: Scope | str = Scope.GLOBAL
) -> Masks:
    """Masks that zero the smallest ``|w|``."""
    return masks_from_scores({n: np.abs(w) for n, w in weights.items()}, sparsity, scope)


def mask_sparsity(masks: Mapping[str, np.ndarray]) -> float:
    """Fraction of pruned entries over all masks."""
    total = sum(m.size for m in masks.values())
    if total == 0:
        return 0.0
    return float(sum(m.size - int(m.sum()) for m in masks.values()) / total)

"""Layer budgets: how a global sparsity target is shared out among the prunable tensors.

Numpy only. Every rule prunes exactly ``round(sparsity * N)`` of the ``N`` candidate
weights (up to rounding per tensor for the per-layer rules) and returns keep-masks like
:mod:`prunekit.masks`:

* ``uniform``: the same fraction of every tensor (the old ``scope: "layer"``).
* ``global``: one threshold over all scores (the old ``scope: "global"``; global magnitude
  when the scores are ``|w|``).
* ``lamp``: Lee et al., ICLR 2021. Within a tensor, sort scores ascending ``s_1 <= ... <=
  s_n``; weight ``i`` gets ``s_i^2 / sum_{j >= i} s_j^2`` (its squared score over the squared
  scores of every weight not smaller than it in the same tensor). One global threshold on
  these. The largest weight of every tensor scores 1, so no tensor is ever emptied.
* ``erk``: Erdos-Renyi-Kernel (Evci et al. 2020, RigL). Density of a tensor of shape
  ``(k_h, k_w, n_in, n_out)`` (Dense: ``(n_in, n_out)``) is ``eps * sum(shape) / prod(shape)``,
  ``eps`` chosen so the kept count matches the target; a tensor whose density would exceed 1
  stays dense and ``eps`` is solved again over the rest.
* ``sensitivity``: from one-shot per-layer sensitivity curves (:mod:`prunekit.sensitivity`):
  every tensor is pruned as far as its own curve stays within a common accuracy-drop
  tolerance ``tau``; ``tau`` is bisected until the kept count matches the target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum

import numpy as np

from prunekit.masks import Masks, Scope, count_to_prune, masks_from_scores, prune_smallest


class Allocation(StrEnum):
    UNIFORM = "uniform"
    GLOBAL = "global"
    LAMP = "lamp"
    ERK = "erk"
    SENSITIVITY = "sensitivity"


ALLOCATION_HELP = (
    "How the global sparsity is shared among layers. uniform: the same fraction of every "
    "weight tensor; global: one score threshold over all tensors; lamp: global threshold on "
    "LAMP scores w^2 / (sum of w^2 of the weights >= it in the same tensor) (Lee et al. 2021); "
    "erk: Erdos-Renyi-Kernel densities proportional to sum(shape)/prod(shape), dense tensors "
    "capped at 1 (Evci et al. 2020); sensitivity: one-shot per-layer sensitivity analysis on "
    "the validation split (needs a dataset), each layer pruned as far as its curve stays "
    "within a common accuracy-drop tolerance. null: follow `scope` (layer = uniform, "
    "global = global). The report's details.allocation lists what each tensor got."
)


class SensitivityCurve:
    """Accuracy drop of one tensor pruned alone at increasing ratios (``ratios[0]`` may be 0).

    The drop is made non-decreasing (a cumulative maximum: pruning more never counts as
    helping) and continued to ``(1.0, max(drops[-1], 1.0))``: pruning a whole tensor is
    taken as losing everything."""

    def __init__(self, ratios: Sequence[float], drops: Sequence[float]) -> None:
        if len(ratios) != len(drops) or not ratios:
            raise ValueError("a sensitivity curve needs as many drops as ratios, at least one")
        r = [0.0, *[float(x) for x in ratios]]
        d = [0.0, *[float(x) for x in drops]]
        if r[-1] < 1.0:
            r.append(1.0)
            d.append(max(d[-1], 1.0))
        order = np.argsort(r, kind="stable")
        self.ratios = np.asarray(r)[order]
        self.drops = np.maximum.accumulate(np.asarray(d)[order])

    def max_ratio(self, tau: float) -> float:
        """Largest ratio whose (linearly interpolated) drop is at most ``tau``."""
        r, d = self.ratios, self.drops
        best = 0.0
        for i in range(len(r)):
            if d[i] <= tau:
                best = float(r[i])
                continue
            lo_r, lo_d = float(r[i - 1]), float(d[i - 1])
            span = float(d[i]) - lo_d
            if span > 0 and tau > lo_d:
                best = lo_r + (float(r[i]) - lo_r) * (tau - lo_d) / span
            break
        return best


def lamp_scores(scores: np.ndarray) -> np.ndarray:
    """LAMP score of every entry of one tensor, shaped like it (see the module docstring).
    Ties keep their C order (a stable sort), so equal weights score by position."""
    flat = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(flat, kind="stable")
    sq = flat[order] ** 2
    suffix = np.cumsum(sq[::-1])[::-1]  # sum of squares of every entry at or after i
    lamp = np.divide(sq, suffix, out=np.zeros_like(sq), where=suffix > 0)
    out = np.empty_like(flat)
    out[order] = lamp
    return out.reshape(np.shape(scores))


def erk_densities(shapes: Mapping[str, Sequence[int]], sparsity: float) -> dict[str, float]:
    """Per-tensor density under ERK for a global ``sparsity`` (RigL's capped solve)."""
    sizes = {n: int(np.prod(s, dtype=np.int64)) for n, s in shapes.items()}
    raw = {n: float(sum(s)) / sizes[n] if sizes[n] else 0.0 for n, s in shapes.items()}
    total_keep = (1.0 - sparsity) * sum(sizes.values())
    dense: set[str] = set()
    while True:
        free = [n for n in shapes if n not in dense]
        budget = total_keep - sum(sizes[n] for n in dense)
        weight = sum(raw[n] * sizes[n] for n in free)
        eps = budget / weight if weight > 0 else 0.0
        over = [n for n in free if eps * raw[n] > 1.0]
        if not over:
            break
        dense.update(over)
    return {n: 1.0 if n in dense else max(0.0, eps * raw[n]) for n in shapes}


def sensitivity_sparsities(
    sizes: Mapping[str, int], curves: Mapping[str, SensitivityCurve], sparsity: float
) -> dict[str, float]:
    """Per-tensor sparsity from sensitivity curves: the smallest common tolerance ``tau`` at
    which every tensor pruned to its ``max_ratio(tau)`` removes ``sparsity`` of all weights.
    A tensor without a curve gets the global ``sparsity``."""
    total = sum(sizes.values())
    target = sparsity * total

    def pruned(tau: float) -> dict[str, float]:
        return {n: curves[n].max_ratio(tau) if n in curves else sparsity for n in sizes}

    def count(ratios: Mapping[str, float]) -> float:
        return sum(ratios[n] * sizes[n] for n in sizes)

    free = pruned(0.0)  # what every tensor gives up without losing anything
    if count(free) >= target:  # even that is too much: share it out in proportion
        upper, lower = free, {n: 0.0 for n in sizes}
    else:
        lo, hi = 0.0, max([float(c.drops[-1]) for c in curves.values()] + [1.0])
        for _ in range(60):
            if hi - lo < 1e-9:
                break
            mid = (lo + hi) / 2
            if count(pruned(mid)) >= target:
                hi = mid
            else:
                lo = mid
        upper, lower = pruned(hi), pruned(lo)
    # between the two tolerances the count is linear in t: hit the target exactly
    c_lo, c_hi = count(lower), count(upper)
    t = 0.0 if c_hi <= c_lo else min(1.0, max(0.0, (target - c_lo) / (c_hi - c_lo)))
    return {n: lower[n] + t * (upper[n] - lower[n]) for n in sizes}


def per_tensor_masks(scores: Mapping[str, np.ndarray], sparsities: Mapping[str, float]) -> Masks:
    """Prune the lowest-scoring ``sparsities[name]`` of each tensor."""
    return {
        n: prune_smallest(s, count_to_prune(s.size, min(1.0, sparsities[n]))).reshape(s.shape)
        for n, s in scores.items()
    }


def allocate(
    scores: Mapping[str, np.ndarray],
    sparsity: float,
    rule: Allocation | str,
    curves: Mapping[str, SensitivityCurve] | None = None,
) -> Masks:
    """Keep-masks pruning ``sparsity`` of all weights in ``scores`` (higher = more useful),
    shared among tensors by ``rule``. ``curves`` are required for ``sensitivity``."""
    rule = Allocation(rule)
    if rule is Allocation.UNIFORM:
        return masks_from_scores(scores, sparsity, Scope.LAYER)
    if rule is Allocation.GLOBAL:
        return masks_from_scores(scores, sparsity, Scope.GLOBAL)
    if rule is Allocation.LAMP:
        return masks_from_scores(
            {n: lamp_scores(s) for n, s in scores.items()}, sparsity, Scope.GLOBAL
        )
    if rule is Allocation.ERK:
        density = erk_densities({n: np.shape(s) for n, s in scores.items()}, sparsity)
        return per_tensor_masks(scores, {n: 1.0 - d for n, d in density.items()})
    if curves is None:
        raise ValueError("the sensitivity allocation needs sensitivity curves")
    sizes = {n: int(np.size(s)) for n, s in scores.items()}
    return per_tensor_masks(scores, sensitivity_sparsities(sizes, curves, sparsity))


def layer_report(masks: Mapping[str, np.ndarray], rule: Allocation | str) -> dict[str, object]:
    """What the report says of an allocation: the rule and each tensor's sparsity."""
    return {
        "rule": str(Allocation(rule)),
        "layers": {
            n: {
                "size": int(m.size),
                "pruned": int(m.size - int(m.sum())),
                "sparsity": round(1.0 - float(m.mean()), 6) if m.size else 0.0,
            }
            for n, m in masks.items()
        },
    }

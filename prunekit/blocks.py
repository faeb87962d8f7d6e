"""Block sparsity: masks that remove whole blocks of weights, or keep an N:M pattern.

Numpy only, next to :mod:`prunekit.masks` (whose exact, tie-stable selection it reuses).
Blocks run along a kernel's input dimension, the second-last axis: for a Dense kernel
``(in, out)`` a ``1xK`` block is ``kernel[i:i+K, j]`` with ``i`` a multiple of ``K``; for a
Conv kernel ``(kh, kw, in, out)`` the same along ``in``.

- ``1xK``: a block's score is the sum of its elements' scores; exactly
  ``round(s * n_blocks)`` blocks are pruned, ranked across tensors (``global``) or in each
  tensor (``layer``). Ties are broken by position as in :mod:`prunekit.masks`: block scores
  are ranked in the C order of the block-score array ``(..., in // K, out)``, tensors in the
  order given, and the earlier block is pruned first.
- ``N:M`` (``2:4``): in each group of M consecutive inputs the M - N lowest-scoring weights are
  the pattern's candidates (:func:`nm_keep`, the ``nm`` strategy's maths). At the pattern's own
  sparsity ``(M - N) / M`` the mask is exactly the pattern; below it (the early steps of a
  gradual schedule) exactly ``round(s * n)`` of the candidates go, the lowest first; above it
  every candidate goes plus the lowest-scoring of the rest, so no group keeps more than N.
- Presets name a runtime and choose the layout per tensor (calibration: issue 12's table and
  the ``litert_export`` suite, LiteRT 2.3 on CPU). ``litert_float32`` prunes fully connected
  kernels in 1x4 blocks (the builtin sparse float32 kernel) and leaves convolution kernels and
  kernels the block does not tile dense. ``litert_int8`` prunes fully connected kernels whose
  input dimension tiles by 16 in 1x16 blocks (the only int8 layout LiteRT runs with a sparse
  kernel: 1x4 or unstructured int8 gets no sparse kernel, and 1x16 over an input dimension
  that is not a multiple of 16 computed wrong outputs) and every other kernel unstructured
  (:class:`Unstructured`): the int8 export reads those with a dense kernel (the converter
  stores them sparse behind a DENSIFY op, expanded once when the file loads), so they cost
  nothing in speed and the whole model reaches the job's sparsity.

A tensor a shape or the float32 preset cannot tile is left dense (an all-``True`` mask) and
named with the reason in :attr:`BlockPlan.skipped`; the sparsity is then reached over the
tensors that are tiled. A tensor a preset prunes unstructured is named with the reason in
:attr:`BlockPlan.unstructured`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from prunekit.masks import Masks, Scope, masks_from_scores

BlockChoice = Literal["1x2", "1x4", "1x8", "1x16", "2:4", "litert_float32", "litert_int8"]


@dataclass(frozen=True)
class Blocks:
    """``1 x k`` consecutive weights along the input dimension of one output."""

    k: int

    @property
    def group(self) -> int:
        return self.k

    def __str__(self) -> str:
        return f"1x{self.k}"


@dataclass(frozen=True)
class NMPattern:
    """At most ``n`` nonzero weights in each group of ``m`` consecutive inputs."""

    n: int
    m: int

    @property
    def group(self) -> int:
        return self.m

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


@dataclass(frozen=True)
class Unstructured:
    """Single weights, no block: what a preset gives kernels its block does not serve."""

    @property
    def group(self) -> int:
        return 1

    def __str__(self) -> str:
        return "unstructured"


Layout = Blocks | NMPattern | Unstructured

SHAPES: dict[str, Layout] = {
    "1x2": Blocks(2),
    "1x4": Blocks(4),
    "1x8": Blocks(8),
    "1x16": Blocks(16),
    "2:4": NMPattern(2, 4),
}


@dataclass(frozen=True)
class Preset:
    """A runtime's layouts: ``block`` for the fully connected kernels it tiles, ``rest`` for
    every other kernel (``None``: left dense) and why ``rest`` costs no speed there."""

    block: Blocks
    rest: Unstructured | None = None
    rest_note: str = ""


PRESETS: dict[str, Preset] = {
    "litert_float32": Preset(Blocks(4)),
    "litert_int8": Preset(
        Blocks(16),
        Unstructured(),
        "pruned unstructured: the int8 export reads it with a dense kernel",
    ),
}


# ------------------------------------------------------------------------ maths
def block_sums(scores: np.ndarray, k: int) -> np.ndarray:
    """Per-block score sums, shape ``(..., in // k, out)`` (float64, so sums are exact-ish
    and independent of the input dtype)."""
    s = np.asarray(scores)
    lead, cin, cout = s.shape[:-2], s.shape[-2], s.shape[-1]
    if cin % k:
        raise ValueError(f"input dimension {cin} is not a multiple of {k}")
    return np.asarray(s.reshape(*lead, cin // k, k, cout).sum(axis=-2, dtype=np.float64))


def expand_blocks(block_keep: np.ndarray, k: int) -> np.ndarray:
    """An element mask from a block mask: each block entry repeated ``k`` times along -2."""
    return np.repeat(block_keep, k, axis=-2)


def block_masks(
    scores: Mapping[str, np.ndarray], sparsity: float, scope: Scope | str, k: int
) -> Masks:
    """Masks removing exactly ``round(sparsity * n_blocks)`` whole ``1 x k`` blocks, those
    of lowest summed score (over all tensors for ``global``, per tensor for ``layer``)."""
    sums = {name: block_sums(s, k) for name, s in scores.items()}
    kept = masks_from_scores(sums, sparsity, scope)
    return {name: expand_blocks(kept[name], k) for name in sums}


def nm_keep(scores: np.ndarray, n: int, m: int) -> np.ndarray:
    """Keep-mask with exactly ``n`` kept entries (the highest scores) in each group of ``m``
    along axis -2; on ties inside a group the earlier entry is kept."""
    s = np.asarray(scores)
    if s.ndim < 2 or s.shape[-2] % m:
        raise ValueError(f"input dimension {s.shape[-2:]} is not a multiple of {m}")
    lead, cin, cout = s.shape[:-2], s.shape[-2], s.shape[-1]
    groups = s.reshape(*lead, cin // m, m, cout)
    order = np.argsort(-groups, axis=-2, kind="stable")  # largest first, earlier on ties
    keep = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(keep, order[..., :n, :], True, axis=-2)
    return keep.reshape(s.shape)


def nm_masks(
    scores: Mapping[str, np.ndarray], sparsity: float, scope: Scope | str, n: int, m: int
) -> Masks:
    """Exactly ``round(sparsity * size)`` pruned, following the N:M pattern (module doc)."""
    pattern_sparsity = (m - n) / m
    beyond = sparsity > pattern_sparsity
    ranked = {}
    for name, s in scores.items():
        candidate = ~nm_keep(s, n, m)
        s64 = np.asarray(s, dtype=np.float64)
        if beyond:  # every candidate first, then the lowest of the rest
            ranked[name] = np.where(candidate, -np.inf, s64)
        else:  # only candidates, lowest first
            ranked[name] = np.where(candidate, s64, np.inf)
    return masks_from_scores(ranked, sparsity, scope)


# ------------------------------------------------------------------------ plans
@dataclass
class BlockPlan:
    """Which layout each prunable tensor gets; ``choice`` ``None`` is unstructured."""

    choice: str | None
    layouts: dict[str, Layout] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # tensor -> why it stays dense
    unstructured: dict[str, str] = field(default_factory=dict)  # tensor -> why (presets)

    def masks(self, scores: Mapping[str, np.ndarray], sparsity: float, scope: Scope | str) -> Masks:
        """Masks for ``scores`` (one per tensor, higher = more useful) at ``sparsity``.

        Unstructured (``choice`` ``None``): :func:`prunekit.masks.masks_from_scores` itself.
        Otherwise each layout ranks its own tensors at ``sparsity`` (so a preset's 1x16
        kernels and its unstructured ones each reach it, and so does the whole model) and
        skipped tensors get all-``True`` masks."""
        if self.choice is None:
            return masks_from_scores(scores, sparsity, scope)
        by_layout: dict[Layout, dict[str, np.ndarray]] = {}
        for name, s in scores.items():
            if name in self.layouts:
                by_layout.setdefault(self.layouts[name], {})[name] = s
        found: Masks = {}
        for layout, group in by_layout.items():
            if isinstance(layout, Blocks):
                found.update(block_masks(group, sparsity, scope, layout.k))
            elif isinstance(layout, Unstructured):
                found.update(masks_from_scores(group, sparsity, scope))
            else:
                found.update(nm_masks(group, sparsity, scope, layout.n, layout.m))
        return {
            name: found[name] if name in found else np.ones(np.shape(s), dtype=bool)
            for name, s in scores.items()
        }

    def details(self) -> dict[str, object]:
        """The strategy outcome's details: ``{"block": {choice, layouts, skipped,
        unstructured}}``, nothing when unstructured (so its outcome is what it was before
        blocks existed)."""
        if self.choice is None:
            return {}
        return {
            "block": {
                "choice": self.choice,
                "layouts": {name: str(layout) for name, layout in self.layouts.items()},
                "skipped": dict(self.skipped),
                "unstructured": dict(self.unstructured),
            }
        }

    def summary(self) -> str:
        """One line for the job's events: which layout where, and what stays dense."""
        counts: dict[str, int] = {}
        for layout in self.layouts.values():
            counts[str(layout)] = counts.get(str(layout), 0) + 1
        used = ", ".join(f"{label} in {n} kernel(s)" for label, n in counts.items()) or "none"
        line = f"block {self.choice}: {used}"
        if self.unstructured:
            line += "; unstructured: " + ", ".join(
                f"{n} ({why})" for n, why in self.unstructured.items()
            )
        if self.skipped:
            line += "; left dense: " + ", ".join(f"{n} ({why})" for n, why in self.skipped.items())
        return line


def plan_blocks(shapes: Mapping[str, tuple[int, ...]], choice: str | None) -> BlockPlan:
    """Each tensor's layout for ``choice`` (a shape of :data:`SHAPES`, a runtime of
    :data:`PRESETS`, or ``None``: unstructured, nothing to plan)."""
    plan = BlockPlan(choice)
    if choice is None:
        return plan
    preset = PRESETS.get(choice)
    layout: Layout = preset.block if preset else SHAPES[choice]
    for name, shape in shapes.items():
        if preset and len(shape) != 2:
            why = "not a fully connected kernel: no faster sparse kernel"
        elif len(shape) < 2 or shape[-2] % layout.group:
            dim = shape[-2] if len(shape) >= 2 else shape
            why = f"input dimension {dim} not a multiple of {layout.group}"
        else:
            plan.layouts[name] = layout
            continue
        if preset and preset.rest is not None:
            plan.layouts[name] = preset.rest
            plan.unstructured[name] = f"{why}; {preset.rest_note}"
        else:
            plan.skipped[name] = why
    return plan

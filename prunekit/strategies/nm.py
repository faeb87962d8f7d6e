"""N:M semi-structured sparsity: in every group of M consecutive weights along a kernel's
input dimension, keep the N of largest magnitude (2:4 runs on sparse tensor cores).

Groups run along the input axis (the second-last): for a Dense kernel ``(in, out)`` groups of
M consecutive input rows per output column; for a Conv kernel ``(kh, kw, in, out)`` along
``in``. Kernels whose input dimension is not a multiple of M are left dense and named in an
event. Ties inside a group are broken by position (earlier kept first).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field, model_validator

from prunekit.blocks import nm_keep
from prunekit.strategies.base import Strategy, StrategyKind, StrategyParams
from prunekit.strategies.registry import register

if TYPE_CHECKING:
    from prunekit.context import PruningContext, StrategyOutcome


def nm_mask(weight: np.ndarray, n: int, m: int) -> np.ndarray:
    """Keep-mask with exactly ``n`` kept entries (largest ``|w|``) in each group of ``m``
    along axis -2."""
    return nm_keep(np.abs(np.asarray(weight)), n, m)


class NMParams(StrategyParams):
    name: Literal["nm"] = "nm"
    n: int = Field(default=2, ge=1, le=64, description="Weights kept in each group.")
    m: int = Field(default=4, ge=2, le=64, description="Group size along the input dimension.")

    @model_validator(mode="after")
    def _n_below_m(self) -> NMParams:
        if self.n >= self.m:
            raise ValueError("n must be smaller than m")
        return self

    def expected_zeros(self, units: Mapping[str, tuple[int, ...]]) -> int | None:
        """``m - n`` of every ``m`` weights of each kernel whose input dimension ``m``
        divides; other kernels stay dense."""
        return sum(
            math.prod(shape) * (self.m - self.n) // self.m
            for shape in units.values()
            if len(shape) >= 2 and shape[-2] % self.m == 0
        )


@register
class NMSparsity(Strategy[NMParams]):
    name = "nm"
    kind = StrategyKind.SEMI_STRUCTURED
    description = (
        "N:M semi-structured sparsity (default 2:4) along each kernel's input dimension; "
        "masked fine-tune when the job has data and fine_tune."
    )
    Params = NMParams

    def run(self, ctx: PruningContext) -> StrategyOutcome:
        p = self.params
        masks: dict[str, np.ndarray] = {}
        skipped = []
        for w in ctx.prunable:
            if w.shape[-2] % p.m:
                skipped.append(f"{w.name} (input dimension {w.shape[-2]})")
                continue
            masks[w.name] = nm_mask(w.numpy(), p.n, p.m)
        if skipped:
            ctx.reporter.event(
                f"nm: left dense, input dimension not a multiple of {p.m}: " + ", ".join(skipped),
                level="warning",
            )
        ctx.apply_masks(masks)
        history = ctx.fine_tune(masks, span=(0.0, 1.0)) if masks and ctx.wants_fine_tune else []
        return ctx.outcome(masks, pattern=f"{p.n}:{p.m}", skipped=skipped, fine_tune_loss=history)

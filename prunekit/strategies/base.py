"""What every pruning strategy declares and implements.

A strategy is one class in one module of this package: a typed ``Params`` model (its JSON
Schema is what the API publishes and validates against), a few class-level facts (name,
aliases, kind, whether it needs data) and ``run``, which prunes the model it is handed
through a :class:`~prunekit.context.PruningContext`. Modules here import TensorFlow only
inside ``run`` and helpers, so listing strategies stays cheap (the API does it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from prunekit.allocation import ALLOCATION_HELP, Allocation
from prunekit.blocks import SHAPES, BlockChoice, BlockPlan, NMPattern, plan_blocks

if TYPE_CHECKING:
    from prunekit.context import PruningContext, StrategyOutcome


class StrategyKind(StrEnum):
    UNSTRUCTURED = "unstructured"  # individual weights are zeroed
    SEMI_STRUCTURED = "semi_structured"  # N:M patterns that sparse kernels run
    STRUCTURED = "structured"  # whole channels are removed, the model gets smaller
    SEARCH = "search"  # chooses the family, ratio and layer budget itself (auto)
    ANALYSIS = "analysis"  # measures, prunes nothing: the model comes back unchanged


Sparsity = Annotated[
    float,
    Field(ge=0.0, lt=1.0, description="Fraction of prunable weights to zero, in [0, 1)."),
]


LayerBudget = Annotated[Allocation | None, Field(description=ALLOCATION_HELP)]


class StrategyParams(BaseModel):
    """Base of every strategy's parameters. Unknown parameters are an error, and so are
    infinite and NaN numbers (they would pass a one-sided bound such as ``gt=0``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(description="Strategy name or alias.")


BlockShape = Annotated[
    BlockChoice | None,
    Field(
        description="Prune whole blocks along each kernel's input dimension instead of single "
        "weights (null, the default: unstructured). '1x2', '1x4', '1x8', '1x16': K consecutive "
        "inputs of one output (Dense kernel[i:i+K, j], i a multiple of K; Conv along `in`), "
        "exactly round(sparsity * n_blocks) blocks pruned by summed score, ranked by `scope`. "
        "'2:4': at most 2 nonzero weights in every 4 consecutive inputs (needs sparsity >= "
        "0.5; beyond 0.5 the lowest of the rest go too). Runtime presets choose per layer: "
        "'litert_float32' 1x4 blocks in fully connected kernels (LiteRT's sparse float32 "
        "kernel), convolution kernels and kernels 1x4 does not tile stay dense; "
        "'litert_int8' 1x16 blocks in fully connected kernels whose inputs tile by 16 (the "
        "only int8 layout with a sparse kernel) and every other kernel unstructured (the int8 "
        "export reads those with a dense kernel), so the whole model reaches `sparsity`. A "
        "kernel the block does not tile stays dense (or, under 'litert_int8', is pruned "
        "unstructured) and is named in the job's events.",
    ),
]


class BlockParams(StrategyParams):
    """Parameters of an unstructured strategy that can prune in blocks instead."""

    sparsity: Sparsity
    block: BlockShape = None
    allocation: LayerBudget = None

    @field_validator("block")
    @classmethod
    def _pattern_fits_sparsity(cls, block: str | None, info: ValidationInfo) -> str | None:
        layout = SHAPES.get(block or "")
        sparsity = info.data.get("sparsity")  # absent when it failed its own validation
        if isinstance(layout, NMPattern) and sparsity is not None:
            least = (layout.m - layout.n) / layout.m
            if sparsity < least:
                raise ValueError(
                    f"{block} keeps at most {layout.n} of every {layout.m} weights: "
                    f"it needs sparsity >= {least:g}, got {sparsity:g}"
                )
        return block

    @field_validator("allocation")
    @classmethod
    def _allocation_fits_block(
        cls, allocation: Allocation | None, info: ValidationInfo
    ) -> Allocation | None:
        per_tensor = (Allocation.LAMP, Allocation.ERK, Allocation.SENSITIVITY)
        if allocation in per_tensor and info.data.get("block") is not None:
            raise ValueError(
                f"allocation {allocation} shares sparsity out weight by weight; with a block "
                "layout use allocation uniform or global (or block null)"
            )
        return allocation


def block_plan(ctx: PruningContext, block: str | None, strategy: str) -> BlockPlan:
    """The per-tensor layout of ``block`` over ``ctx``'s prunable kernels, reported in the
    job's events (a warning naming the kernels left dense or, under a preset, pruned
    unstructured: no sparse kernel runs them). No kernel given a layout is a spec error."""
    from prunekit.errors import SpecError

    plan = plan_blocks({w.name: w.shape for w in ctx.prunable}, block)
    if block is None:
        return plan
    if not plan.layouts:
        raise SpecError(
            f"block {block}: no prunable kernel can be pruned in this layout: "
            + "; ".join(f"{n} ({why})" for n, why in plan.skipped.items())
        )
    ctx.reporter.event(
        f"{strategy}: {plan.summary()}",
        level="warning" if plan.skipped or plan.unstructured else "info",
    )
    return plan


class Strategy(ABC):
    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    kind: ClassVar[StrategyKind]
    needs_data: ClassVar[bool] = False
    description: ClassVar[str]
    Params: ClassVar[type[StrategyParams]]

    def __init__(self, params: StrategyParams) -> None:
        self.params = params

    @abstractmethod
    def run(self, ctx: PruningContext) -> StrategyOutcome:
        """Prune ``ctx.model`` in place (or return a new model) and say what was done."""

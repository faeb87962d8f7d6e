"""What every pruning strategy declares and implements.

A strategy is one class in one module of this package: a typed ``Params`` model (its JSON
Schema is what the API publishes and validates against), a few class-level facts (name,
aliases, kind) and ``run``, which prunes the model it is handed
through a :class:`~prunekit.context.PruningContext`. Modules here import TensorFlow only
inside ``run`` and helpers, so listing strategies stays cheap (the API does it).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from prunekit.allocation import ALLOCATION_HELP, Allocation
from prunekit.blocks import SHAPES, BlockChoice, BlockPlan, NMPattern, plan_blocks
from prunekit.masks import Scope, count_to_prune

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
    infinite and NaN numbers (they would pass a one-sided bound such as ``gt=0``).

    The hooks below are what the service and the contract test ask of a strategy, so neither
    knows any strategy by name: :meth:`requires_data` (the API refuses a job without a
    dataset, at the field :meth:`missing_data` names) and :meth:`expected_zeros` (how many
    units the strategy removes, exactly)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # always trains or scores on data, whatever the parameters (GET /v1/strategies shows it)
    needs_data: ClassVar[bool] = False

    name: str = Field(description="Strategy name or alias.")

    def requires_data(self) -> bool:
        """Whether a job with these parameters needs a dataset (checked at submission)."""
        return self.needs_data

    def missing_data(self) -> tuple[str, str]:
        """Where and why a submission without a dataset is refused: the request field (under
        ``body``) the 422 names, and the reason its message gives."""
        return "dataset_id", "it trains the model"

    def expected_zeros(self, units: Mapping[str, tuple[int, ...]]) -> int | None:
        """How many elements these parameters prune, exactly, out of ``units`` (name ->
        shape of what the strategy prunes: the prunable weight tensors of a weight-level
        strategy, ``(width,)`` of each prunable channel group of a structured one). None:
        not fixed in advance (a threshold, a schedule that may stop early)."""
        return None


def sparsity_zeros(sparsity: float, scope: Scope, units: Mapping[str, tuple[int, ...]]) -> int:
    """Weights ``sparsity`` removes from tensors of these shapes: ``round(sparsity * n)`` of
    all of them (global scope) or of each one (layer scope)."""
    sizes = [math.prod(shape) for shape in units.values()]
    if scope is Scope.LAYER:
        return sum(count_to_prune(n, sparsity) for n in sizes)
    return count_to_prune(sum(sizes), sparsity)


def budget_zeros(
    sparsity: float,
    scope: Scope,
    allocation: Allocation | None,
    units: Mapping[str, tuple[int, ...]],
) -> int | None:
    """:func:`sparsity_zeros` under a layer budget: ``uniform`` counts per tensor, ``global``
    and ``lamp`` over all of them (one threshold); ``erk`` and ``sensitivity`` round each
    tensor's own share (and ``sensitivity``'s shares come from data): None."""
    if allocation in (Allocation.ERK, Allocation.SENSITIVITY):
        return None
    if allocation is not None:
        scope = Scope.LAYER if allocation is Allocation.UNIFORM else Scope.GLOBAL
    return sparsity_zeros(sparsity, scope, units)


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
    scope: Scope = Field(default=Scope.GLOBAL, description="Ranking scope.")
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

    def expected_zeros(self, units: Mapping[str, tuple[int, ...]]) -> int | None:
        # blocks: whole blocks per tiled kernel, which the shapes alone do not decide
        return (
            None if self.block else budget_zeros(self.sparsity, self.scope, self.allocation, units)
        )


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


P = TypeVar("P", bound=StrategyParams)


class Strategy(ABC, Generic[P]):
    """A strategy; ``P`` is its parameters' class (``Params``), what ``self.params`` holds."""

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    kind: ClassVar[StrategyKind]
    description: ClassVar[str]
    Params: ClassVar[type[StrategyParams]]

    def __init__(self, params: P) -> None:
        self.params = params

    @abstractmethod
    def run(self, ctx: PruningContext) -> StrategyOutcome:
        """Prune ``ctx.model`` in place (or return a new model) and say what was done."""

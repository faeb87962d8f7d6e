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

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from prunekit.context import PruningContext, StrategyOutcome


class StrategyKind(StrEnum):
    UNSTRUCTURED = "unstructured"  # individual weights are zeroed
    SEMI_STRUCTURED = "semi_structured"  # N:M patterns that sparse kernels run
    STRUCTURED = "structured"  # whole channels are removed, the model gets smaller


Sparsity = Annotated[
    float,
    Field(ge=0.0, lt=1.0, description="Fraction of prunable weights to zero, in [0, 1)."),
]


class StrategyParams(BaseModel):
    """Base of every strategy's parameters. Unknown parameters are an error."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Strategy name or alias.")


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

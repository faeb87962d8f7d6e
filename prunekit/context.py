"""What a strategy gets to work with, and what it hands back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prunekit.data import Dataset
from prunekit.losses import LossSpec
from prunekit.model import LoadedModel, Weight
from prunekit.progress import NullReporter, Reporter
from prunekit.spec import PruneSpec


@dataclass
class StrategyOutcome:
    """``masks`` for weight-level strategies; ``model`` when the strategy built a new one."""

    masks: dict[str, np.ndarray] | None = None
    model: LoadedModel | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class PruningContext:
    model: LoadedModel
    spec: PruneSpec
    reporter: Reporter = field(default_factory=NullReporter)
    data: Dataset | None = None  # preprocessed (rescaled) when the job has a dataset
    loss: LossSpec | None = None  # resolved by the pipeline when there is data
    _prunable: list[Weight] | None = None

    @property
    def prunable(self) -> list[Weight]:
        if self._prunable is None:
            self._prunable = self.model.prunable_or_raise(self.spec.exclude)
        return self._prunable

    @property
    def seed(self) -> int:
        return self.spec.seed if self.spec.seed is not None else 0

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def prunable_arrays(self) -> dict[str, np.ndarray]:
        return {w.name: w.numpy() for w in self.prunable}

    def apply_masks(self, masks: Mapping[str, np.ndarray]) -> None:
        """Zero every weight whose mask entry is ``False``."""
        by_name = {w.name: w for w in self.prunable}
        for name, mask in masks.items():
            w = by_name[name]
            w.assign(np.where(mask, w.numpy(), 0))

    def outcome(
        self, masks: dict[str, np.ndarray] | None = None, **details: Any
    ) -> StrategyOutcome:
        return StrategyOutcome(masks=masks, details=details)

"""What a strategy gets to work with, and what it hands back.

Besides the model, spec and reporter, the context carries the shared helpers strategies
build on: masked fine-tuning (:meth:`PruningContext.fine_tune`), trainers
(:meth:`PruningContext.trainer`), evaluation on a split and a validation split carved from
train when the dataset has none. TensorFlow code is imported lazily from
:mod:`prunekit.training`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, overload

import numpy as np

from prunekit.data import Dataset, Split
from prunekit.errors import SpecError
from prunekit.evaluation import evaluate
from prunekit.formats import ModelFormat
from prunekit.losses import LossSpec, resolve_loss
from prunekit.model import LoadedModel, Weight
from prunekit.progress import NullReporter, Reporter
from prunekit.spec import PruneSpec

if TYPE_CHECKING:
    from prunekit.distillation import Distillation
    from prunekit.training import TrainConfig, Trainer

T = TypeVar("T", bound="Trainer")


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
    # the whole job's progress while the strategy runs: its own 0..1 maps onto this range
    progress_span: tuple[float, float] = (0.2, 0.85)
    validation_fraction: float = 0.1  # carved from train when the dataset has no val split
    # the model as uploaded, loaded a second time, when the spec asks for distillation
    teacher: LoadedModel | None = None
    # results a strategy's helpers compute once per job (sensitivity curves, the layer
    # budget the report shows): see prunekit.layer_budget
    cache: dict[str, Any] = field(default_factory=dict)
    _prunable: list[Weight] | None = None
    _splits: tuple[Split, Split] | None = None
    _warned_frozen_stats: bool = False

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

    # --------------------------------------------------------------- progress
    def report(self, fraction: float, **detail: Any) -> None:
        """Progress of the strategy itself (0..1), mapped onto the job's progress."""
        lo, hi = self.progress_span
        self.reporter.progress(lo + (hi - lo) * min(max(fraction, 0.0), 1.0), **detail)

    # ------------------------------------------------------------------- data
    def require_data(self, strategy: str) -> Dataset:
        if self.data is None:
            raise SpecError(
                f"strategy {strategy!r} trains the model and needs a dataset; "
                "attach one to the job (x_train/y_train in an .npz)",
                reason="dataset_required",
            )
        return self.data

    @property
    def loss_spec(self) -> LossSpec:
        """The job's loss (resolved by the pipeline; resolved here when it was not)."""
        if self.loss is None:
            data = self.require_data("fine-tuning")
            sample = data.train.x[:64]
            outputs = self.model.predict(sample)
            compiled = getattr(self.model.keras_model, "loss", None)
            self.loss = resolve_loss(self.spec.loss, compiled, data.train.y[:64], outputs)
        return self.loss

    def validation_split(self) -> tuple[Split, Split]:
        """(train, validation): the dataset's own ``val`` when it has one, else a seeded
        ``validation_fraction`` carved out of train (and removed from it)."""
        data = self.require_data("validation")
        if data.val is not None:
            return data.train, data.val
        if self._splits is None:
            n = len(data.train)
            n_val = max(1, round(self.validation_fraction * n))
            perm = self.rng().permutation(n)
            val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
            t = data.train
            self._splits = (
                Split(t.x[train_idx], t.y[train_idx]),
                Split(t.x[val_idx], t.y[val_idx]),
            )
        return self._splits

    # ------------------------------------------------------------- evaluation
    def evaluate(self, split: str | Split) -> dict[str, Any]:
        """:func:`prunekit.evaluation.evaluate` on a split: mean loss and (classification
        losses) accuracy, top-5 and macro-F1; ``accuracy`` None for other losses."""
        if isinstance(split, str):
            if split == "val":
                data = self.validation_split()[1]
            else:
                data = getattr(self.require_data("evaluation"), split)
                if data is None:
                    raise SpecError(f"the dataset has no {split!r} split")
        else:
            data = split
        return evaluate(self.model, data, self.loss_spec)

    def evaluate_accuracy(self, split: str | Split) -> float:
        acc = self.evaluate(split)["accuracy"]
        if not isinstance(acc, float):
            raise SpecError(
                "accuracy needs a classification loss; this job's loss is "
                f"{self.loss_spec.name.value}"
            )
        return acc

    # --------------------------------------------------------------- training
    @property
    def wants_fine_tune(self) -> bool:
        ft = self.spec.fine_tune
        return self.data is not None and ft is not None and ft.epochs > 0

    def train_config(self, epochs: int | None = None, default_epochs: int = 1) -> TrainConfig:
        """``spec.fine_tune`` (optimizer, lr, schedule, batch size, epochs), else defaults."""
        from prunekit.training import TrainConfig

        ft = self.spec.fine_tune
        if ft is None:
            return TrainConfig(epochs=default_epochs if epochs is None else epochs)
        return TrainConfig(
            epochs=ft.epochs if epochs is None else epochs,
            batch_size=ft.batch_size,
            learning_rate=ft.learning_rate,
            optimizer=ft.optimizer,
            schedule=ft.schedule,
            label_smoothing=ft.label_smoothing,
        )

    def distillation(self) -> Distillation | None:
        """The teacher and weights of ``fine_tune.distill``; ``None`` when not asked for."""
        ft = self.spec.fine_tune
        if ft is None or ft.distill is None:
            return None
        if self.teacher is None:
            raise SpecError("distillation needs the original model as teacher; none was loaded")
        from prunekit.distillation import Distillation

        teacher = self.teacher
        return Distillation(
            lambda x: teacher.call(x, training=False),
            self.loss_spec,
            ft.distill.alpha,
            ft.distill.temperature,
        )

    @overload
    def trainer(
        self,
        masks: Mapping[str, np.ndarray] | None = None,
        config: TrainConfig | None = None,
        cls: None = None,
        **kwargs: Any,
    ) -> Trainer: ...

    @overload
    def trainer(
        self,
        masks: Mapping[str, np.ndarray] | None = None,
        config: TrainConfig | None = None,
        *,
        cls: type[T],
        **kwargs: Any,
    ) -> T: ...

    def trainer(
        self,
        masks: Mapping[str, np.ndarray] | None = None,
        config: TrainConfig | None = None,
        cls: type[Trainer] | None = None,
        **kwargs: Any,
    ) -> Trainer:
        """A trainer over the prunable weights: :class:`prunekit.training.Trainer` (masked
        training), or ``cls``, the subclass a strategy brings beside itself (``kwargs`` go to
        its constructor)."""
        from prunekit.training import Trainer

        self.require_data("training")
        self._warn_frozen_statistics()
        return (cls or Trainer)(
            self.model,
            self.prunable,
            self.loss_spec,
            config or self.train_config(),
            seed=self.seed,
            masks=masks,
            progress=self.report,
            check_cancelled=self.reporter.check_cancelled,
            distill=self.distillation(),
            **kwargs,
        )

    def fine_tune(
        self,
        masks: Mapping[str, np.ndarray],
        epochs: int | None = None,
        data: Split | None = None,
        span: tuple[float, float] = (0.5, 1.0),
    ) -> list[float]:
        """Masked fine-tuning: pruned weights stay exactly zero. Returns the epoch losses.

        No-op (``[]``) when the job has no dataset or zero epochs."""
        if self.data is None:
            return []
        config = self.train_config(epochs)
        if config.epochs <= 0:
            return []
        trainer = self.trainer(masks, config)
        self.reporter.event(
            f"masked fine-tuning: {config.epochs} epoch(s), {config.optimizer}, "
            f"lr {config.learning_rate} ({config.schedule}), batch {config.batch_size}"
            + recipe_note(config, trainer.distill)
        )
        history = trainer.fit(data or self.data.train, config.epochs, span=span)
        if history:
            self.reporter.event(f"fine-tuning done, last epoch loss {history[-1]:.4f}")
        return history

    def _warn_frozen_statistics(self) -> None:
        if self.model.format is not ModelFormat.SAVED_MODEL or self._warned_frozen_stats:
            return
        self._warned_frozen_stats = True
        frozen = [w.name for w in self.model.weights() if not w.trainable]
        if frozen:
            self.reporter.event(
                "training a SavedModel runs its serving signature: normalisation and dropout "
                f"layers stay in inference mode and {len(frozen)} non-trainable variable(s) "
                f"(e.g. BatchNorm statistics: {', '.join(frozen[:3])}) stay frozen",
                level="warning",
            )


def recipe_note(config: TrainConfig, distill: Distillation | None) -> str:
    """The event text's label-smoothing and distillation parts ("" without either)."""
    note = f", label smoothing {config.label_smoothing:g}" if config.label_smoothing else ""
    if distill is None:
        return note
    return note + (
        f", distilling from the original model (alpha {distill.alpha:g}, temperature "
        f"{distill.temperature:g})"
    )

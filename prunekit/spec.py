"""The engine's job spec: which strategy with which parameters, and on what.

The service stores this (normalised: canonical strategy name, defaults filled in) as the
job's ``spec``; the engine reads it back unchanged. Pure data: importing it imports no
strategy and no TensorFlow. ``prunekit.strategies.parse_params(spec.strategy)`` turns the
strategy dict into its typed parameters.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from prunekit.losses import LossName
from prunekit.patterns import compile_pattern

LiteRTFormat = Literal["tflite", "tflite_int8"]


class Distill(BaseModel):
    """Knowledge distillation from the model as uploaded (the teacher) while training."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="weight of the distillation term; the task loss on the labels gets 1 - alpha",
    )
    temperature: float = Field(
        default=4.0,
        gt=0,
        le=100,
        description="softmax temperature of the teacher's and the student's logits "
        "(classifiers; regression matches outputs in mean squared error)",
    )


class FineTune(BaseModel):
    """Masked fine-tuning after (or during) pruning, on the job's dataset."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=1, ge=0, le=1000)
    batch_size: int = Field(default=64, ge=1, le=65536)
    learning_rate: float = Field(default=1e-3, gt=0, le=10)
    optimizer: str = Field(
        default="adam",
        pattern="^(adam|sgd|rmsprop|adamw)$",
        description="Keras Adam, SGD (plain, no momentum), RMSprop or AdamW with default "
        "settings; the same in every strategy.",
    )
    schedule: Literal["constant", "cosine"] = Field(
        default="cosine",
        description="cosine (default): decays from learning_rate to 0 over all the training "
        "steps of the run (CosineDecay), which recovered more accuracy than a constant rate "
        "in bench/compare_tfmot.py; constant: learning_rate throughout. Every strategy's "
        "fine-tuning follows it, the structured ones (filter, slimming) included; slimming's "
        "sparsity training always keeps a constant sparsity_learning_rate.",
    )
    label_smoothing: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Classification losses only: train against targets mixed with the "
        "uniform distribution by this weight (0.1 is usual; Szegedy et al. 2016), in every "
        "training phase of every strategy. Evaluation keeps the plain loss.",
    )
    distill: Distill | None = Field(
        default=None,
        description="train against the original model's outputs as well as the labels "
        "(Hinton et al. 2015), in every training phase of every strategy; costs one more "
        "forward pass per step and one more copy of the weights in memory",
    )


class Preprocessing(BaseModel):
    """Applied to the dataset's inputs before training and evaluation."""

    model_config = ConfigDict(extra="forbid")

    rescale: float | None = Field(
        default=None, gt=0, description="Multiply inputs by this, e.g. 0.00392156862745098 (1/255)."
    )


def _runs_on_re2(pattern: str) -> str:
    compile_pattern(pattern)  # PatternError (a ValueError) names the reason: a 422
    return pattern


ExcludePattern = Annotated[str, AfterValidator(_runs_on_re2)]


UniqueItem = TypeVar("UniqueItem", int, str)


def _unique(name: str, values: list[UniqueItem]) -> list[UniqueItem]:
    """``values`` unchanged; a ValueError naming ``name`` when one repeats."""
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"{name} lists {', '.join(map(str, repeated))} more than once")
    return values


MAX_LATENCY_BATCH = 4096
MAX_LATENCY_BUDGET_S = 3600.0


class Measure(BaseModel):
    """How the job times the pruned model against the original (``speedup.tf``)."""

    model_config = ConfigDict(extra="forbid")

    latency_batch_sizes: list[Annotated[int, Field(ge=1, le=MAX_LATENCY_BATCH)]] = Field(
        default=[1, 32],
        min_length=1,
        max_length=8,
        description="batch sizes timed, in this order, each within the job's latency budget",
    )
    latency_budget_s: float | None = Field(
        default=None,
        gt=0,
        le=MAX_LATENCY_BUDGET_S,
        description="seconds the latency comparison may add to the job (waiting for the "
        "original's copy, traces, warm-ups, timed pairs); null: the service's default "
        "(PRUNEKIT_LATENCY_BUDGET_S). A batch size whose shortest comparison would overrun "
        "it is not timed, and its row says why",
    )
    latency_force: bool = Field(
        default=False,
        description="time every batch size of latency_batch_sizes (at least its floor of "
        "pairs), whatever the budget: a big model's batch 32 can take minutes on a CPU",
    )

    @field_validator("latency_batch_sizes")
    @classmethod
    def _batch_sizes_unique(cls, v: list[int]) -> list[int]:
        return _unique("latency_batch_sizes", v)


class PruneSpec(BaseModel):
    """A complete, validated pruning request (everything but the model and data files)."""

    model_config = ConfigDict(extra="forbid")

    strategy: dict[str, Any] = Field(description="Strategy name and its parameters.")
    fine_tune: FineTune | None = None
    exclude: list[ExcludePattern] = Field(
        default_factory=list,
        description="Regexes (RE2 syntax: no backreferences or lookaround) on layer/weight "
        "names never to prune.",
    )
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    preprocessing: Preprocessing | None = None
    loss: LossName = Field(
        default=LossName.AUTO,
        description="auto: the model's compiled loss, else inferred from labels and outputs.",
    )
    exports: list[LiteRTFormat] = Field(
        default_factory=list,
        description="LiteRT flatbuffers to write besides the model in its input format, each "
        "measured on the LiteRT interpreter against the dense original converted the same "
        "way: `tflite` (float32; sparse tensors stored sparse where that is smaller) and "
        "`tflite_int8` (full-integer quantisation calibrated on samples of the job's training "
        "split; dynamic-range quantisation, with a note, when the job has no dataset). A model "
        "the converter cannot convert fails only that export, with a note naming the op.",
    )

    measure: Measure | None = Field(
        default=None,
        description="latency comparison settings; null: batch sizes 1 and 32 within the "
        "service's latency budget",
    )

    @field_validator("exports")
    @classmethod
    def _exports_unique(cls, v: list[str]) -> list[str]:
        return _unique("exports", v)

"""The engine's job spec: which strategy with which parameters, and on what.

The service stores this (normalised: canonical strategy name, defaults filled in) as the
job's ``spec``; the engine reads it back unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from prunekit.losses import LossName
from prunekit.patterns import compile_pattern
from prunekit.strategies import StrategyParams, parse_params

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

    @field_validator("exports")
    @classmethod
    def _exports_unique(cls, v: list[str]) -> list[str]:
        repeated = sorted({f for f in v if v.count(f) > 1})
        if repeated:
            raise ValueError(f"exports lists {', '.join(repeated)} more than once")
        return v

    def strategy_params(self) -> StrategyParams:
        return parse_params(self.strategy)

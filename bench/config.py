"""One run configuration, shared by every side of the benchmark (numpy/stdlib only).

The same ``RunConfig`` (same dense weights, same data split, same fine-tune budget) is
handed to tfmot and to prunekit's strategies, so their rows compare like for like.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
WORK_DIR = BENCH_DIR / "work"
RESULTS_DIR = BENCH_DIR / "results"

# Keys every result row carries, whichever side produced it.
ROW_KEYS: tuple[str, ...] = (
    "model",
    "strategy",
    "sparsity",
    "accuracy",
    "macro_f1",
    "compressed_bytes",
    "wall_s",
)


@dataclass
class RunConfig:
    model: str = "lenet_300_100"
    dataset: str = "mnist"
    sparsities: list[float] = field(default_factory=lambda: [0.5, 0.8, 0.9, 0.95, 0.98])
    # Dense pre-training (Keras 3 side, cached).
    dense_epochs: int = 20
    optimizer: str = "adam"  # adam | sgd (sgd uses ``momentum``)
    lr: float = 1e-3
    lr_schedule: str = "cosine"  # constant | cosine (decay to 0 over dense training)
    momentum: float = 0.9
    batch_size: int = 128
    # Pruning + fine-tuning budget, identical for every strategy.
    finetune_epochs: int = 10
    # Constant fine-tune lr. Chosen for LeNet-300-100 on validation with tfmot at s=0.95,
    # 10 epochs (Adam): 1e-4 -> 94.90%, 1e-3 -> 97.34%, 3e-3 -> 97.70%, 1e-2 -> 97.00%.
    finetune_lr: float = 3e-3
    # Fine-tune lr schedule of BOTH sides: constant, or cosine (decay from the side's lr to
    # 0 over its whole fine-tune budget: Keras CosineDecay on either side).
    finetune_schedule: str = "constant"
    # Sparsity ramps 0 -> target over this fraction of the fine-tune steps, then stays.
    ramp_fraction: float = 0.7
    pruning_frequency: int = 100  # steps between mask updates (tfmot's ``frequency``)
    seed: int = 0
    # Data: validation carved from train with ``seed``; optional subsampling for quick runs.
    val_size: int = 5000
    train_subsample: int | None = None
    val_subsample: int | None = None
    test_subsample: int | None = None
    # prunekit side: which strategies (None: all of ``prunekit_side.STRATEGIES``), and the
    # sparsities of those without a tfmot counterpart (l1, l0, saliency, random) when they
    # should not run at every one of ``sparsities`` (None: all).
    prunekit_strategies: list[str] | None = None
    # prunekit's constant fine-tune lr (None: ``finetune_lr``, the one tfmot gets). Each
    # side gets the lr chosen on validation for it; see ``MODEL_DEFAULTS``.
    prunekit_finetune_lr: float | None = None
    # Per-strategy parameter overrides on top of ``prunekit_side.STRATEGY_CHOICES``, e.g.
    # ``{"gradual": {"end_fraction": 0.5}}`` (validation sweeps).
    prunekit_params: dict[str, dict[str, Any]] | None = None
    secondary_sparsities: list[float] | None = None
    # prunekit's ``fine_tune.distill`` ({"alpha", "temperature"}): distillation from the
    # dense model during recovery, a prunekit feature tfmot has no counterpart for.
    prunekit_distill: dict[str, float] | None = None
    # prunekit's ``fine_tune.label_smoothing`` (None: off). Keras losses offer it to tfmot's
    # side too, but the comparison runs keep both sides on the plain loss.
    prunekit_label_smoothing: float | None = None
    # Filled in by the driver.
    dense_weights: str | None = None  # portable .npz (weights_io)
    reference_predictions: str | None = None  # Keras 3 test-set argmax, .npy

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown config keys: {unknown}")
        cfg = cls(**d)
        cfg.sparsities = [float(s) for s in cfg.sparsities]
        return cfg

    @classmethod
    def from_json_file(cls, path: str | Path) -> RunConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def dense_key(self) -> str:
        """Identifies the dense baseline: everything that influences pre-training."""
        parts = {
            k: getattr(self, k)
            for k in (
                "model",
                "dataset",
                "dense_epochs",
                "optimizer",
                "lr",
                "lr_schedule",
                "momentum",
                "batch_size",
                "seed",
                "val_size",
                "train_subsample",
            )
        }
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.model}_{self.dataset}_e{self.dense_epochs}_s{self.seed}_{digest}"


# Per-model budgets. LeNet-300-100: Adam 1e-3 with cosine decay over 20 epochs, picked on
# the validation split (val acc 98.06% vs 97.68% for a constant lr and 97.80% for
# SGD 0.05 + momentum + cosine; a constant lr only plateaued around 97.5-97.8% up to 30
# epochs). prunekit's fine-tune lr, chosen like tfmot's on validation at s=0.95 with
# magnitude and gradual (Adam, constant, 10 epochs; val acc magnitude / gradual):
# 3e-3 -> 97.16 / 97.58%, 1e-3 -> 97.52 / 97.68%, 3e-4 -> 97.30 / 97.36%.
# With ``finetune_schedule="cosine"`` (``--schedule cosine``) the lrs were chosen again on
# validation at s=0.95 (Adam, 10 epochs, decay to 0; tfmot / prunekit magnitude / gradual):
# 1e-3 -> 96.72 / 97.44 / 97.36%, 3e-3 -> 97.52 / 97.60 / 97.56%, 1e-2 -> 97.46 / 97.92 /
# 97.54%, 3e-2 -> 96.54 / 97.84 / 96.30%: tfmot 3e-3, prunekit 1e-2 (pass them as flags).
# The CNN budgets are sized for 2 shared CPU cores. LeNet-5: the LeNet-300-100 lrs (constant
# schedule), not tuned further. VGG-small on Fashion-MNIST: the training set is subsampled to
# 5,000 images (the whole grid, 36 fine-tunes, has to fit in under an hour of CPU), cosine
# decay on both sides from Adam's 1e-3 (the dense training's lr), not tuned per side.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "lenet_300_100": {
        "dataset": "mnist",
        "dense_epochs": 20,
        "finetune_epochs": 10,
        "prunekit_finetune_lr": 1e-3,
    },
    # 3 fine-tune epochs (5 before the full strategy grid): every strategy at every
    # sparsity has to fit 2 shared cores (about 20 s a row when the cores are idle, plus
    # the dense training). Cosine on both
    # sides (the service's default) at tfmot's LeNet-300-100 lr, 3e-3; a constant 3e-3
    # left one-shot magnitude at 50% 0.5 points down (98.75%) after 3 epochs.
    "lenet5": {
        "dataset": "mnist",
        "dense_epochs": 10,
        "finetune_epochs": 3,
        "finetune_schedule": "cosine",
        "finetune_lr": 3e-3,
        "prunekit_finetune_lr": 3e-3,
    },
    "vgg_small": {
        "dataset": "fashion_mnist",
        "dense_epochs": 15,
        "finetune_epochs": 3,
        "train_subsample": 5000,
        "val_subsample": 2000,
        "finetune_lr": 1e-3,
        "prunekit_finetune_lr": 1e-3,
        "finetune_schedule": "cosine",
        # 39 steps per epoch, 117 in all: with the default 100-step frequency tfmot's (and
        # gradual's) ramp was a single jump to the target at step 82, late in the cosine
        # decay, and tfmot fell to 86% at 50% sparsity; 10 steps give 8 updates on the ramp
        "pruning_frequency": 10,
    },
}


def default_config(model: str, **overrides: Any) -> RunConfig:
    """``RunConfig`` with the model's default dataset and budgets, then ``overrides``."""
    if model not in MODEL_DEFAULTS:
        raise ValueError(f"unknown model {model!r}; expected one of {sorted(MODEL_DEFAULTS)}")
    values = {"model": model, **MODEL_DEFAULTS[model]}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return RunConfig.from_dict(values)


def pruning_schedule_steps(cfg: RunConfig, steps_per_epoch: int) -> dict[str, int]:
    """Steps of the fine-tune budget: total, and where the 0 -> target ramp ends.

    tfmot only updates masks when ``(step - begin_step) % frequency == 0`` and never after
    ``end_step``, so ``end_step`` is rounded down to a multiple of the frequency; otherwise
    the last update would fall short of the target sparsity.
    """
    total = max(1, steps_per_epoch * cfg.finetune_epochs)
    ramp = max(1, round(total * cfg.ramp_fraction))
    frequency = max(1, min(cfg.pruning_frequency, ramp))
    end_step = max(frequency, (ramp // frequency) * frequency)
    return {"total_steps": total, "begin_step": 0, "end_step": end_step, "frequency": frequency}

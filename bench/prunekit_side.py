"""prunekit's side of the benchmark: every strategy through the engine API (service venv).

For each strategy and each target sparsity the dense baseline is rebuilt in Keras 3 from
the shared portable ``.npz`` (``cfg.dense_weights``), wrapped in a ``LoadedModel`` and run
through ``PruningContext`` + ``build(params).run`` exactly as a job would, with the
training budget of the ``RunConfig`` that tfmot gets: ``cfg.finetune_epochs`` epochs over
the same training images, ``cfg.batch_size``, ``cfg.optimizer`` (Adam) with the lr schedule
tfmot gets (``cfg.finetune_schedule``: constant or cosine) and ``cfg.seed``. The lr is
each side's own, chosen on validation: ``cfg.finetune_lr`` for tfmot,
``cfg.prunekit_finetune_lr`` (default: the same) here.

Strategies that train in two phases split that budget, never exceed it:

* ``magnitude``, ``random``, ``nm``: prune once, then ``E`` epochs of masked fine-tuning.
* ``gradual``: ``E`` epochs of training on the cubic schedule, with tfmot's mask-update
  frequency and ramp (``cfg.pruning_frequency``, ``cfg.ramp_fraction``).
* ``l1`` / ``l0``: ``k`` epochs of penalised (proximal / gated) training, then ``E - k``
  epochs of masked fine-tuning.
* ``saliency``: ``r`` rounds of score, prune, ``E / r`` epochs of fine-tuning (Taylor
  scores also cost ``batches`` forward/backward passes per round, without updates).

The strategies see only train and validation; the test split is read once per row, after
the wall clock stops. Per-strategy knobs (``STRATEGY_CHOICES``) were chosen on the
validation split and are recorded in every row.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # after the log-level env var, which TF reads at import

from bench import architectures, training
from bench import data as bench_data
from bench.config import RunConfig
from prunekit.data import Dataset
from prunekit.data import Split as PkSplit
from prunekit.formats import ModelFormat
from prunekit.losses import LossName, LossSpec
from prunekit.model import LoadedModel
from prunekit.spec import PruneSpec
from prunekit.strategies import build, parse_params

LOSS = LossSpec(LossName.SPARSE_CATEGORICAL, from_logits=True)
STRATEGIES: tuple[str, ...] = ("magnitude", "gradual", "l1", "l0", "saliency", "random", "nm")
NM_SPARSITY = 0.5  # 2:4 prunes exactly half of every group
# Strategies with a counterpart on the tfmot side; the others may run at fewer sparsities
# (``cfg.secondary_sparsities``) when the CPU budget is tight.
COMPARABLE: tuple[str, ...] = ("magnitude", "gradual")


@dataclass(frozen=True)
class Plan:
    """One prunekit run: strategy parameters and the fine-tune epochs of the job spec."""

    strategy: str
    params: dict[str, Any]
    finetune_epochs: int
    budget_note: str


def _pre_epochs(epochs: int) -> int:
    """Epochs of the penalised phase of l1/l0: a fifth of the budget, at least one."""
    return max(1, epochs // 5) if epochs > 1 else 0


# Saliency rounds, chosen on validation (LeNet-300-100, s=0.9, 10 epochs): 5 rounds x 2
# epochs -> 97.04%, 2 x 5 -> 97.22%, 1 x 10 -> 97.04% val accuracy.
SALIENCY_MAX_ROUNDS = 2


def _saliency_rounds(epochs: int) -> int:
    """The most rounds (<= ``SALIENCY_MAX_ROUNDS``) that split the budget into whole epochs."""
    return max(r for r in range(1, SALIENCY_MAX_ROUNDS + 1) if epochs % r == 0)


def plan(cfg: RunConfig, strategy: str, sparsity: float, steps_per_epoch: int) -> Plan:
    """Parameters of ``strategy`` at ``sparsity`` under the budget of ``cfg``."""
    e = cfg.finetune_epochs
    choice = {**STRATEGY_CHOICES.get(strategy, {}), **(cfg.prunekit_params or {}).get(strategy, {})}
    if strategy in ("magnitude", "random"):
        return Plan(strategy, {"name": strategy, "sparsity": sparsity, **choice}, e, f"{e} ft")
    if strategy == "nm":
        return Plan(strategy, {"name": "nm", "n": 2, "m": 4}, e, f"{e} ft")
    if strategy == "gradual":
        total = steps_per_epoch * e
        ramp = max(1, round(total * cfg.ramp_fraction))
        params = {
            "name": "gradual",
            "sparsity": sparsity,
            "frequency": max(1, min(cfg.pruning_frequency, ramp)),
            "end_fraction": cfg.ramp_fraction,
            **choice,
        }
        return Plan(strategy, params, e, f"{e} train (ramp {cfg.ramp_fraction:.0%})")
    if strategy in ("l1", "l0"):
        k = _pre_epochs(e)
        params = {"name": strategy, "sparsity": sparsity, "epochs": max(1, k), **choice}
        return Plan(strategy, params, e - k, f"{k} {strategy} + {e - k} ft")
    if strategy == "saliency":
        r = int(choice.pop("steps", _saliency_rounds(e)))
        if r < 1 or e % r:
            raise ValueError(f"saliency: {r} rounds do not split {e} epochs evenly")
        params = {"name": "saliency", "sparsity": sparsity, "steps": r, **choice}
        return Plan(strategy, params, e // r, f"{r} rounds x {e // r} ft")
    raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")


# Per-strategy knobs on top of the shared budget, chosen on the validation split of
# LeNet-300-100 / MNIST (see bench/README.md); everything else is the strategy default.
STRATEGY_CHOICES: dict[str, dict[str, Any]] = {
    "l1": {"l1": 1e-4, "learning_rate": 0.05},
    "l0": {"l0": 1.0},
    "saliency": {"criterion": "taylor", "batches": 200},
}


def load_split(cfg: RunConfig) -> bench_data.Split:
    return bench_data.load_for(cfg)


def steps_per_epoch(cfg: RunConfig, n_train: int) -> int:
    """prunekit drops the last partial batch (tfmot's Keras ``fit`` keeps it)."""
    return max(1, n_train // max(1, min(cfg.batch_size, n_train)))


def prune_one(
    cfg: RunConfig, split: bench_data.Split, p: Plan, lr: float | None = None
) -> tuple[dict[str, Any], Any]:
    """Run one plan from the dense weights; return its row and the pruned Keras model."""
    from bench import weights_io

    if cfg.dense_weights is None:
        raise ValueError("the prunekit side needs cfg.dense_weights (the shared baseline)")
    dataset = Dataset(
        train=PkSplit(split.x_train, split.y_train), val=PkSplit(split.x_val, split.y_val)
    )
    fine_tune = {
        "epochs": p.finetune_epochs,
        "batch_size": cfg.batch_size,
        "learning_rate": lr or cfg.prunekit_finetune_lr or cfg.finetune_lr,
        "optimizer": cfg.optimizer,
        "schedule": cfg.finetune_schedule,
    }
    if cfg.prunekit_distill is not None:
        fine_tune["distill"] = cfg.prunekit_distill
    if cfg.prunekit_label_smoothing:
        fine_tune["label_smoothing"] = cfg.prunekit_label_smoothing
    spec = PruneSpec(strategy=p.params, seed=cfg.seed, fine_tune=fine_tune)
    keras.utils.set_random_seed(cfg.seed)

    from prunekit.context import PruningContext

    t0 = time.perf_counter()
    model = architectures.build(keras, cfg.model, tuple(split.x_train.shape[1:]))
    weights_io.load_model_weights(model, cfg.dense_weights)
    teacher = None
    if cfg.prunekit_distill is not None:  # the dense model, a second copy (as the pipeline does)
        teacher = architectures.build(keras, cfg.model, tuple(split.x_train.shape[1:]))
        weights_io.load_model_weights(teacher, cfg.dense_weights)
        teacher = LoadedModel(ModelFormat.KERAS, keras_model=teacher)
    ctx = PruningContext(
        LoadedModel(ModelFormat.KERAS, keras_model=model), spec, data=dataset, teacher=teacher
    )
    ctx.loss = LOSS
    outcome = build(parse_params(p.params)).run(ctx)
    wall_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    test = training.evaluate(model, split.x_test, split.y_test)
    val = training.evaluate(model, split.x_val, split.y_val)
    size = training.size_and_sparsity(model)
    sparsity = NM_SPARSITY if p.strategy == "nm" else float(p.params["sparsity"])
    row: dict[str, Any] = {
        "model": cfg.model,
        "strategy": p.strategy,
        "sparsity": sparsity,
        "accuracy": test["accuracy"],
        "macro_f1": test["macro_f1"],
        "compressed_bytes": size["compressed_bytes"],
        "wall_s": round(wall_s, 2),
        "side": "prunekit",
        "dataset": cfg.dataset,
        "actual_sparsity": size["sparsity"],
        "per_layer_sparsity": size["per_layer"],
        "val_accuracy": val["accuracy"],
        "params": p.params,
        "fine_tune": fine_tune,
        "budget_epochs": cfg.finetune_epochs,
        "budget": p.budget_note,
        "details": _small_details(outcome.details),
        "eval_s": round(time.perf_counter() - t1, 2),
    }
    return row, model


def _small_details(details: dict[str, Any]) -> dict[str, Any]:
    """The scalar/short outcome details worth keeping in a result file."""
    keep = ("zeros_after_l1", "gated_zeros", "expected_l0", "pruning_steps", "pattern")
    out = {k: details[k] for k in keep if k in details}
    for k in ("fine_tune_loss", "loss", "l1_loss", "l0_loss"):
        if details.get(k):
            out[f"final_{k}"] = round(float(details[k][-1]), 5)
    return out


def plans(cfg: RunConfig, strategies: list[str], n_train: int) -> list[Plan]:
    spe = steps_per_epoch(cfg, n_train)
    out = []
    for name in strategies:
        if name == "nm":
            out.append(plan(cfg, "nm", NM_SPARSITY, spe))
            continue
        sparsities = cfg.sparsities
        if name not in COMPARABLE and cfg.secondary_sparsities is not None:
            sparsities = cfg.secondary_sparsities
        out += [plan(cfg, name, s, spe) for s in sparsities]
    return out


def run(
    cfg: RunConfig,
    strategies: list[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """All rows of the prunekit side for ``cfg`` (strategies default to ``cfg``'s list)."""
    names = strategies or cfg.prunekit_strategies or list(STRATEGIES)
    unknown = [s for s in names if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown prunekit strategies {unknown}; known: {STRATEGIES}")
    split = load_split(cfg)
    rows = []
    for p in plans(cfg, names, len(split.y_train)):
        row, _ = prune_one(cfg, split, p)
        rows.append(row)
        log(
            f"[prunekit] {p.strategy:<9} s={row['sparsity']:.2f} acc={row['accuracy']:.4f} "
            f"val={row['val_accuracy']:.4f} actual={row['actual_sparsity']:.4f} "
            f"({p.budget_note}) wall={row['wall_s']:.1f}s"
        )
    return {
        "environment": {"keras": keras.__version__},
        "strategy_choices": STRATEGY_CHOICES,
        "data": split.describe(),
        "rows": rows,
    }

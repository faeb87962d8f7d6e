"""One-shot sensitivity analysis: every prunable tensor (or channel group) pruned alone.

For each prunable weight tensor and each ratio, the tensor's smallest ``|w|`` are zeroed
(the rest of the model untouched), the model is evaluated on the validation split (capped
at ``max_samples`` samples, one batched forward pass per point) and the tensor is restored.
No fine-tuning: this is a ranking of how fragile each layer is, cheap enough to be the first
step of a search (:mod:`prunekit.search`) and the input of the ``sensitivity`` layer budget
(:mod:`prunekit.allocation`).

Structured (``channels=True``): each prunable channel group of a Keras graph loses its
lowest-L1 channels at each ratio (a smaller model is built for every point).

The report holds the curves (``{"layers": [{"name", "size", "points": [{"ratio",
"accuracy", "loss", "drop"}]}]}``) and :func:`render_png` draws them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from prunekit.allocation import SensitivityCurve
from prunekit.data import Split
from prunekit.losses import LossSpec
from prunekit.masks import count_to_prune, prune_smallest

if TYPE_CHECKING:
    from prunekit.model import LoadedModel, Weight

DEFAULT_RATIOS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
DEFAULT_MAX_SAMPLES = 1000
PNG_NAME = "sensitivity.png"

Evaluate = Callable[["LoadedModel", Split], dict[str, float | None]]


@dataclass
class Curve:
    name: str
    size: int  # weights (unstructured) or channels (structured) of the tensor / group
    ratios: list[float]
    accuracy: list[float | None]
    loss: list[float]
    baseline_accuracy: float | None
    baseline_loss: float

    def drops(self) -> list[float]:
        """Accuracy lost at each ratio (loss increase when the loss has no accuracy)."""
        if self.baseline_accuracy is None or any(a is None for a in self.accuracy):
            return [max(0.0, v - self.baseline_loss) for v in self.loss]
        return [max(0.0, self.baseline_accuracy - float(a or 0.0)) for a in self.accuracy]

    def as_allocation_curve(self) -> SensitivityCurve:
        return SensitivityCurve(self.ratios, self.drops())

    def describe(self) -> dict[str, Any]:
        drops = self.drops()
        return {
            "name": self.name,
            "size": self.size,
            "points": [
                {
                    "ratio": r,
                    "accuracy": None if a is None else round(a, 6),
                    "loss": round(v, 6),
                    "drop": round(d, 6),
                }
                for r, a, v, d in zip(self.ratios, self.accuracy, self.loss, drops, strict=True)
            ],
        }


@dataclass
class SensitivityReport:
    kind: str  # "unstructured" or "structured"
    split: str
    samples: int
    baseline: dict[str, float | None]
    curves: list[Curve]
    seconds: float

    def allocation_curves(self) -> dict[str, SensitivityCurve]:
        return {c.name: c.as_allocation_curve() for c in self.curves}

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "split": self.split,
            "samples": self.samples,
            "baseline": {k: None if v is None else round(v, 6) for k, v in self.baseline.items()},
            "ratios": self.curves[0].ratios if self.curves else [],
            "layers": [c.describe() for c in self.curves],
            "seconds": round(self.seconds, 3),
            "plot": {
                "x": "ratio",
                "y": "accuracy" if self.baseline.get("accuracy") is not None else "loss",
                "artifact": "sensitivity_png",
            },
        }


def subsample(split: Split, max_samples: int) -> Split:
    """The first ``max_samples`` samples (the evaluation is deterministic and cheap)."""
    if len(split) <= max_samples:
        return split
    return Split(split.x[:max_samples], split.y[:max_samples])


@dataclass
class _Unit:
    """One tensor or channel group to sweep: its evaluation at a ratio, and how to put the
    model back once its ratios are done."""

    name: str
    size: int
    evaluate_at: Callable[[float], dict[str, float | None]]
    restore: Callable[[], None]


def _sweep(
    units: Sequence[_Unit],
    ratios: Sequence[float],
    base: dict[str, float | None],
    check_cancelled: Callable[[], None] | None,
    progress: Callable[[float], None] | None,
) -> list[Curve]:
    """Every unit at every ratio, alone, reporting progress and honouring cancellation
    after each point; the unit is restored even when cancelled mid-way."""
    curves: list[Curve] = []
    total = max(1, len(units) * len(ratios))
    done = 0
    for unit in units:
        acc: list[float | None] = []
        losses: list[float] = []
        try:
            for r in ratios:
                found = unit.evaluate_at(r)
                acc.append(found["accuracy"])
                losses.append(float(found["loss"] or 0.0))
                done += 1
                if progress is not None:
                    progress(done / total)
                if check_cancelled is not None:
                    check_cancelled()
        finally:
            unit.restore()
        curves.append(
            Curve(
                unit.name, unit.size, list(ratios), acc, losses,
                base["accuracy"], float(base["loss"] or 0.0),
            )
        )  # fmt: skip
    return curves


def _weight_unit(model: LoadedModel, w: Weight, val: Split, evaluate: Evaluate) -> _Unit:
    """A tensor losing its smallest ``|w|`` (read when its sweep starts, written back after)."""
    original: np.ndarray | None = None

    def at(ratio: float) -> dict[str, float | None]:
        nonlocal original
        if original is None:
            original = w.numpy()
        keep = prune_smallest(np.abs(original), count_to_prune(original.size, ratio))
        w.assign(np.where(keep.reshape(original.shape), original, 0))
        return evaluate(model, val)

    def restore() -> None:
        if original is not None:
            w.assign(original)

    return _Unit(w.name, int(np.prod(w.shape)), at, restore)


def analyse_weights(
    model: LoadedModel,
    prunable: Sequence[Weight],
    val: Split,
    evaluate: Evaluate,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    check_cancelled: Callable[[], None] | None = None,
    progress: Callable[[float], None] | None = None,
) -> tuple[dict[str, float | None], list[Curve]]:
    """Curves of every tensor in ``prunable`` pruned alone by magnitude (restored after)."""
    base = evaluate(model, val)
    units = [_weight_unit(model, w, val, evaluate) for w in prunable]
    return base, _sweep(units, ratios, base, check_cancelled, progress)


def analyse_channels(
    keras_model: Any,
    exclude: Sequence[str],
    val: Split,
    evaluate_keras: Callable[[Any, Split], dict[str, float | None]],
    ratios: Sequence[float] = DEFAULT_RATIOS,
    check_cancelled: Callable[[], None] | None = None,
    progress: Callable[[float], None] | None = None,
) -> tuple[dict[str, float | None], list[Curve]]:
    """Curves of every prunable channel group losing its lowest-L1 channels alone (a smaller
    model is built for each point; the original is never changed)."""
    from prunekit.structured import build_dependency_graph, group_importance, select_channels
    from prunekit.structured.surgery import apply_pruning

    graph = build_dependency_graph(keras_model, exclude=exclude)
    scores, _ = group_importance(graph, "l1")
    base = evaluate_keras(keras_model, val)

    def group_unit(g: Any) -> _Unit:
        def at(ratio: float) -> dict[str, float | None]:
            kept = select_channels({g.id: scores[g.id]}, ratio, "uniform")
            smaller, _ = apply_pruning(graph, {k: [int(i) for i in v] for k, v in kept.items()})
            return evaluate_keras(smaller, val)

        name = ",".join(g.sources) if g.sources else f"group{g.id}"
        return _Unit(name, int(g.size), at, lambda: None)

    units = [group_unit(g) for g in graph.prunable_groups if g.id in scores]
    return base, _sweep(units, ratios, base, check_cancelled, progress)


def keras_evaluator(loss: LossSpec) -> Callable[[Any, Split], dict[str, float | None]]:
    """Evaluate a bare Keras model (a structured candidate) like the context evaluates."""
    from prunekit.evaluation import evaluate
    from prunekit.formats import ModelFormat
    from prunekit.model import LoadedModel

    def run(model: Any, split: Split) -> dict[str, float | None]:
        wrapped = LoadedModel(format=ModelFormat.KERAS, keras_model=model)
        return evaluate(wrapped, split, loss)

    return run


def render_png(report: dict[str, Any], path: Path) -> Path:
    """Draw ``SensitivityReport.describe()``'s curves (one line per layer) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y_key = report.get("plot", {}).get("y", "accuracy")
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    try:
        for layer in report["layers"]:
            xs = [0.0] + [p["ratio"] for p in layer["points"]]
            ys = [report["baseline"].get(y_key)] + [p[y_key] for p in layer["points"]]
            ax.plot(xs, ys, marker="o", markersize=3, label=layer["name"][:40])
        ax.set_xlabel("fraction pruned (this layer alone)")
        ax.set_ylabel(f"validation {y_key}")
        ax.set_title(f"one-shot sensitivity ({report['kind']}, {report['samples']} samples)")
        ax.grid(alpha=0.3)
        if len(report["layers"]) <= 20:
            ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path

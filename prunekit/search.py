"""The accuracy-budget search behind strategy ``auto``: the most compressed model whose
validation accuracy stays within ``max_accuracy_drop`` of the original's.

Per family (unstructured weights, structured channels):

1. a one-shot sensitivity analysis (:mod:`prunekit.sensitivity`) ranks the layers and gives
   the per-layer allocation of every candidate (``sensitivity`` layer budget) unless the
   parameters name another rule;
2. a one-shot scan of global ratios (no fine-tuning, one batched evaluation each, up to the
   first one over budget) finds the largest ratio already within budget, ``lo`` (each scan
   point is a candidate with 0 epochs);
3. bisection between ``lo`` and ``hi = 1`` (a one-shot miss says nothing of what
   fine-tuning recovers, so the upper end is "everything pruned"): each midpoint is pruned
   from the original weights,
   fine-tuned ``candidate_epochs`` and evaluated on validation; a pass raises ``lo``, a miss
   lowers ``hi``; it stops when ``hi - lo <= tolerance`` (early exit), when the fine-tune
   epoch cap leaves no room for another candidate and the final fine-tune, or at
   ``max_candidates``;
4. the passing candidate with the best objective (fewest non-zero parameters, FLOPs or
   lowest measured latency) is fine-tuned ``final_epochs`` more and checked on validation
   again: if the longer fine-tune went over the budget its pre-fine-tune weights are kept.

Nothing passes: :class:`BudgetNotMetError`, naming the smallest drop reached. The test split
is never looked at by the search; the strategy measures it once on the final model.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from prunekit.allocation import Allocation, SensitivityCurve, allocate, sensitivity_sparsities
from prunekit.data import Dataset, Split
from prunekit.errors import CancelledError, PrunekitError, SpecError
from prunekit.sensitivity import SensitivityReport

if TYPE_CHECKING:
    from prunekit.context import PruningContext
    from prunekit.model import LoadedModel
    from prunekit.progress import Reporter

SCAN_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)
STRUCTURED_SCAN = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
LATENCY_RUNS = 50
LATENCY_BATCH = 32


class BudgetNotMetError(PrunekitError):
    """Even the mildest candidate lost more validation accuracy than allowed."""

    reason = "budget_not_met"


@dataclass
class SearchConfig:
    max_accuracy_drop: float
    objective: str = "size"  # size | flops | latency
    families: tuple[str, ...] = ("unstructured",)
    max_fine_tune_epochs: int = 10
    candidate_epochs: int = 1
    final_epochs: int = 3
    max_candidates: int = 8
    tolerance: float = 0.02
    allocation: str = "sensitivity"
    max_samples: int = 2000  # validation samples every evaluation uses


@dataclass
class Candidate:
    index: int
    family: str
    ratio: float
    epochs: int
    val_accuracy: float
    val_loss: float
    drop: float
    passes: bool
    nonzero_params: int
    flops: int | None
    latency_ms: float | None
    allocation: dict[str, float]
    seconds: float
    pareto: bool = False

    def objective(self, name: str) -> float:
        value = {
            "size": self.nonzero_params,
            "flops": self.flops,
            "latency": self.latency_ms,
        }[name]
        return math.inf if value is None else float(value)

    def describe(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "family": self.family,
            "ratio": round(self.ratio, 6),
            "fine_tune_epochs": self.epochs,
            "val_accuracy": round(self.val_accuracy, 6),
            "val_loss": round(self.val_loss, 6),
            "drop": round(self.drop, 6),
            "within_budget": self.passes,
            "nonzero_params": self.nonzero_params,
            "size_bytes_estimate": self.nonzero_params * 4,
            "flops": self.flops,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 4),
            "allocation": {k: round(v, 4) for k, v in self.allocation.items()},
            "pareto": self.pareto,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _Best:
    candidate: Candidate
    state: Any  # unstructured: weight arrays by name; structured: the Keras model


@dataclass
class SearchOutcome:
    candidates: list[Candidate]
    chosen: Candidate
    model: LoadedModel | None  # structured: the new model; unstructured: ctx.model in place
    masks: dict[str, np.ndarray] | None
    sensitivity: dict[str, SensitivityReport]
    baseline: dict[str, float | None]
    epochs_used: int
    stopped: str  # converged | epoch_cap | candidate_cap | cancelled | exhausted
    final: dict[str, Any] = field(default_factory=dict)


def pareto_front(candidates: list[Candidate], objective: str) -> None:
    """Mark every candidate no other one beats on both validation accuracy and objective."""
    for c in candidates:
        c.pareto = not any(
            o is not c
            and o.val_accuracy >= c.val_accuracy
            and o.objective(objective) <= c.objective(objective)
            and (o.val_accuracy > c.val_accuracy or o.objective(objective) < c.objective(objective))
            for o in candidates
        )


def choose(candidates: list[Candidate], objective: str) -> Candidate | None:
    """The passing candidate with the best objective (ties: higher accuracy, then ratio)."""
    passing = [c for c in candidates if c.passes]
    if not passing:
        return None
    return min(passing, key=lambda c: (c.objective(objective), -c.val_accuracy, -c.ratio))


def bisect_ratios(lo: float, hi: float, passes: Callable[[float], bool | None], tol: float) -> str:
    """Bisect between a passing ``lo`` and a failing ``hi``; ``passes`` answers None to stop
    (a cap). Returns why it stopped: converged or capped."""
    while hi - lo > tol:
        mid = round((lo + hi) / 2, 6)
        verdict = passes(mid)
        if verdict is None:
            return "capped"
        if verdict:
            lo = mid
        else:
            hi = mid
    return "converged"


class _Family(ABC):
    """One family's pruning of the original model at a global ratio."""

    name: str

    def __init__(self, ctx: PruningContext, search: Search) -> None:
        self.ctx = ctx
        self.search = search

    @abstractmethod
    def analyse(self) -> SensitivityReport:
        """The family's one-shot sensitivity curves."""

    @abstractmethod
    def build(self, ratio: float) -> tuple[Any, dict[str, float]]:
        """A pruned state at ``ratio`` from the original, and each layer's share."""

    @abstractmethod
    def fine_tune(self, state: Any, epochs: int) -> Any:
        """Fine-tune ``state`` (masks held) for ``epochs`` on the search's training part."""

    @abstractmethod
    def measure(self, state: Any) -> tuple[dict[str, float | None], int, int | None]:
        """(validation loss/accuracy, non-zero parameters, FLOPs)."""

    @abstractmethod
    def latency(self, state: Any) -> float | None:
        """Milliseconds of ``state``'s forward pass (:func:`time_forward`)."""

    @abstractmethod
    def snapshot(self, state: Any) -> Any:
        """A copy of ``state`` the finish can go back to."""


class Search:
    """Runs the search over ``ctx`` (the job's model, data and reporter)."""

    def __init__(self, ctx: PruningContext, config: SearchConfig) -> None:
        self.ctx = ctx
        self.config = config
        self.candidates: list[Candidate] = []
        self.epochs_used = 0
        self.best: _Best | None = None
        self.reports: dict[str, SensitivityReport] = {}
        train, val = ctx.validation_split()
        self.train = train
        n = min(len(val), config.max_samples)
        self.val = Split(val.x[:n], val.y[:n])
        self.baseline: dict[str, float | None] = {}
        self.stop_reason = "converged"

    # ------------------------------------------------------------- budget
    def reserve(self) -> int:
        """Epochs the final fine-tune may still use."""
        return max(0, self.config.max_fine_tune_epochs - self.epochs_used)

    def room_for_candidate(self) -> bool:
        c = self.config
        spare = c.max_fine_tune_epochs - self.epochs_used - c.candidate_epochs
        return spare >= min(c.final_epochs, c.max_fine_tune_epochs) and (
            len(self.candidates) < c.max_candidates
        )

    def drop(self, accuracy: float) -> float:
        return float(self.baseline["accuracy"] or 0.0) - accuracy

    # ------------------------------------------------------------ candidates
    def evaluate(self, fam: _Family, ratio: float, epochs: int) -> Candidate:
        started = time.perf_counter()
        state, shares = fam.build(ratio)
        if epochs > 0:
            state = fam.fine_tune(state, epochs)
            self.epochs_used += epochs
        found, nonzero, flops = fam.measure(state)
        acc = float(found["accuracy"] or 0.0)
        drop = self.drop(acc)
        latency = fam.latency(state) if self.config.objective == "latency" else None
        cand = Candidate(
            index=len(self.candidates),
            family=fam.name,
            ratio=ratio,
            epochs=epochs,
            val_accuracy=acc,
            val_loss=float(found["loss"] or 0.0),
            drop=drop,
            passes=drop <= self.config.max_accuracy_drop + 1e-12,
            nonzero_params=nonzero,
            flops=flops,
            latency_ms=latency,
            allocation=shares,
            seconds=time.perf_counter() - started,
        )
        self.candidates.append(cand)
        objective = self.config.objective
        better = self.best is None or (cand.objective(objective), -cand.val_accuracy) < (
            self.best.candidate.objective(objective),
            -self.best.candidate.val_accuracy,
        )
        if cand.passes and better:
            self.best = _Best(cand, fam.snapshot(state))
        self.ctx.reporter.event(
            f"candidate {cand.index + 1}: {fam.name} ratio {ratio:.3f}, {epochs} epoch(s), "
            f"val accuracy {acc:.4f} (drop {drop:+.4f}, "
            f"{'within' if cand.passes else 'over'} budget)"
        )
        self.ctx.reporter.progress(0.0, stage="search")
        return cand

    def summary(self) -> dict[str, Any]:
        """What every progress write of the search carries: candidates so far, the best."""
        best = self.best.candidate if self.best else None
        return {
            "candidates": len(self.candidates),
            "best_ratio": None if best is None else round(best.ratio, 4),
            "best_val_accuracy": None if best is None else round(best.val_accuracy, 4),
        }

    def fraction(self) -> float:
        """The job's progress: the strategy's span, filled as fine-tune epochs are spent."""
        lo, hi = self.ctx.progress_span
        done = self.epochs_used / max(1, self.config.max_fine_tune_epochs)
        return lo + (hi - lo) * min(0.95, 0.05 + 0.9 * done)

    def run_family(self, fam: _Family, epoch_share: int) -> str:
        """Sensitivity, one-shot scan, fine-tuned bisection for one family."""
        self.reports[fam.name] = fam.analyse()
        self.ctx.reporter.check_cancelled()
        scan = SCAN_RATIOS if fam.name == "unstructured" else STRUCTURED_SCAN
        lo, failed = 0.0, False
        for r in scan:  # one-shot: 0 epochs each
            cand = self.evaluate(fam, r, 0)
            self.ctx.reporter.check_cancelled()
            if not cand.passes:
                failed = True
                break
            lo = r
        if not failed:
            return "exhausted"  # even the largest scanned ratio passes one-shot
        # a one-shot miss says nothing of a fine-tuned candidate: bisect up to 1 (all gone)
        hi = 1.0
        limit = self.epochs_used + epoch_share

        def passes(ratio: float) -> bool | None:
            if len(self.candidates) >= self.config.max_candidates:
                self.stop_reason = "candidate_cap"
                return None
            if not self.room_for_candidate() or self.epochs_used >= limit:
                self.stop_reason = "epoch_cap"
                return None
            self.ctx.reporter.check_cancelled()
            return self.evaluate(fam, ratio, self.config.candidate_epochs).passes

        return bisect_ratios(lo, hi, passes, self.config.tolerance)


class _SearchReporter:
    """The job's reporter while the search runs: every progress write (the candidates'
    fine-tunes included) carries the search's fraction, candidate count and best so far."""

    def __init__(self, inner: Reporter, search: Search) -> None:
        self.inner = inner
        self.search = search

    def phase(self, name: str, fraction: float = 0.0, **detail: Any) -> None:
        self.inner.phase(name, self.search.fraction(), **detail)

    def progress(self, fraction: float, **detail: Any) -> None:
        self.inner.progress(self.search.fraction(), **{**detail, **self.search.summary()})

    def event(self, message: str, level: str = "info", **detail: Any) -> None:
        self.inner.event(message, level=level, **detail)

    def check_cancelled(self) -> None:
        self.inner.check_cancelled()


class _Unstructured(_Family):
    name = "unstructured"

    def __init__(self, ctx: PruningContext, search: Search) -> None:
        super().__init__(ctx, search)
        self.model = ctx.model
        self.original = {w.name: w.numpy() for w in ctx.model.weights()}
        self.prunable = ctx.prunable
        self.scores = {w.name: np.abs(self.original[w.name]) for w in self.prunable}
        self.curves: dict[str, SensitivityCurve] | None = None
        self.flops_table: dict[str, Any] | None = None
        try:
            from prunekit.metrics.flops import count_flops

            shape = list(self.search.val.x.shape[1:])
            self.flops_table = count_flops(ctx.model, shape).by_weight()
        except Exception:
            self.flops_table = None

    def analyse(self) -> SensitivityReport:
        from prunekit.layer_budget import sensitivity_of

        report = sensitivity_of(self.ctx, self.search.config.max_samples)
        self.curves = report.allocation_curves()
        return report

    def restore(self) -> None:
        for w in self.model.weights():
            w.assign(self.original[w.name])

    def build(self, ratio: float) -> tuple[Any, dict[str, float]]:
        self.restore()
        rule = Allocation(self.search.config.allocation)
        masks = allocate(self.scores, ratio, rule, self.curves)
        self.ctx.apply_masks(masks)
        shares = {n: 1.0 - float(m.mean()) for n, m in masks.items()}
        return masks, shares

    def fine_tune(self, state: Any, epochs: int) -> Any:
        trainer = self.ctx.trainer(state, self.ctx.train_config(epochs))
        trainer.fit(self.search.train, epochs, span=(0.0, 0.0))
        return state

    def measure(self, state: Any) -> tuple[dict[str, float | None], int, int | None]:
        from prunekit.evaluation import evaluate

        found = evaluate(self.model, self.search.val, self.ctx.loss_spec)
        weights = self.model.weights()
        nonzero = sum(int(np.count_nonzero(w.numpy())) for w in weights)
        flops = None
        if self.flops_table is not None:
            from prunekit.metrics.flops import nonzero_from_weights

            flops = nonzero_from_weights(self.flops_table, weights)
        return found, nonzero, flops

    def latency(self, state: Any) -> float | None:
        return time_forward(self.model, list(self.search.val.x.shape[1:]))

    def snapshot(self, state: Any) -> Any:
        return {
            "masks": state,
            "weights": {w.name: w.numpy().copy() for w in self.model.weights()},
        }

    def load(self, snap: Any) -> None:
        for w in self.model.weights():
            w.assign(snap["weights"][w.name])


class _Structured(_Family):
    name = "structured"

    def __init__(self, ctx: PruningContext, search: Search) -> None:
        from prunekit.structured import build_dependency_graph, group_importance
        from prunekit.structured.runner import keras_model_or_raise

        super().__init__(ctx, search)
        self.keras = keras_model_or_raise(ctx, "auto")
        self.graph = build_dependency_graph(self.keras, exclude=ctx.spec.exclude)
        self.scores, _ = group_importance(self.graph, "l1")
        self.curves: dict[str, SensitivityCurve] | None = None
        self.group_names = {
            g.id: (",".join(g.sources) if g.sources else f"group{g.id}")
            for g in self.graph.prunable_groups
        }

    def analyse(self) -> SensitivityReport:
        from prunekit.sensitivity import analyse_channels, keras_evaluator

        started = time.perf_counter()
        base, curves = analyse_channels(
            self.keras,
            self.ctx.spec.exclude,
            self.search.val,
            keras_evaluator(self.ctx.loss_spec),
            check_cancelled=self.ctx.reporter.check_cancelled,
        )
        report = SensitivityReport(
            "structured", "val", len(self.search.val), base, curves, time.perf_counter() - started
        )
        self.curves = report.allocation_curves()
        return report

    def kept(self, ratio: float) -> dict[int, np.ndarray]:
        from prunekit.structured import select_channels

        ids = [g.id for g in self.graph.prunable_groups if g.id in self.scores]
        if self.search.config.allocation != "sensitivity" or not self.curves:
            scope: Literal["uniform", "global"] = (
                "global" if self.search.config.allocation == "global" else "uniform"
            )
            return select_channels({i: self.scores[i] for i in ids}, ratio, scope)
        sizes = {self.group_names[i]: int(self.scores[i].size) for i in ids}
        shares = sensitivity_sparsities(sizes, self.curves, ratio)
        out: dict[int, np.ndarray] = {}
        for i in ids:
            r = min(0.95, shares[self.group_names[i]])
            out.update(select_channels({i: self.scores[i]}, r, "uniform"))
        return out

    def build(self, ratio: float) -> tuple[Any, dict[str, float]]:
        from prunekit.structured.surgery import apply_pruning

        kept = self.kept(ratio)
        model, _ = apply_pruning(self.graph, {g: [int(i) for i in k] for g, k in kept.items()})
        shares = {
            self.group_names[g.id]: 1.0 - len(kept.get(g.id, range(g.size))) / g.size
            for g in self.graph.prunable_groups
            if g.size
        }
        return model, shares

    def fine_tune(self, state: Any, epochs: int) -> Any:
        from prunekit.structured.runner import run_training, train_settings

        data = Dataset(train=self.search.train)
        lo = self.ctx.progress_span[0]
        span = (lo, lo)  # the search reports its own progress
        run_training(self.ctx, state, data, train_settings(self.ctx, epochs), span, "candidate")
        return state

    def measure(self, state: Any) -> tuple[dict[str, float | None], int, int | None]:
        from prunekit.formats import ModelFormat
        from prunekit.metrics.flops import count_flops
        from prunekit.model import LoadedModel
        from prunekit.sensitivity import keras_evaluator

        found = keras_evaluator(self.ctx.loss_spec)(state, self.search.val)
        nonzero = sum(int(np.count_nonzero(np.asarray(w))) for w in state.weights)
        flops: int | None = None
        try:  # the counter every unstructured candidate and the original are counted with
            wrapped = LoadedModel(format=ModelFormat.KERAS, keras_model=state)
            flops = int(count_flops(wrapped, list(self.search.val.x.shape[1:])).nonzero)
        except Exception:
            flops = None
        return found, nonzero, flops

    def latency(self, state: Any) -> float | None:
        from prunekit.formats import ModelFormat
        from prunekit.model import LoadedModel

        wrapped = LoadedModel(format=ModelFormat.KERAS, keras_model=state)
        return time_forward(wrapped, list(self.search.val.x.shape[1:]))

    def snapshot(self, state: Any) -> Any:
        return {"model": state, "weights": [np.array(w) for w in state.get_weights()]}


def time_forward(
    model: LoadedModel, sample: list[int], runs: int = LATENCY_RUNS, batch: int = LATENCY_BATCH
) -> float | None:
    """Milliseconds of a forward pass of ``batch`` samples (32: at batch 1 a small model's
    time is per-op dispatch, which removing channels does not change, so the objective would
    rank candidates by noise): the 10th percentile of ``runs`` timed runs
    (traced once, 5 warm-up runs). A low percentile, not the median: on shared cores other
    processes only ever add time, and the median of a busy machine ranks candidates by
    the load they happened to meet."""
    try:
        import tensorflow as tf

        from prunekit.metrics.latency import ForwardPass

        run = ForwardPass(model, sample, "float32").runner(
            tf.constant(np.zeros([batch, *sample], dtype="float32"))
        )
        for _ in range(5):
            run()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            run()
            times.append((time.perf_counter() - t0) * 1000.0)
        return float(np.percentile(times, 10))
    except Exception:
        return None


def run_search(ctx: PruningContext, config: SearchConfig) -> SearchOutcome:
    """The whole search; the chosen model is left in ``ctx.model`` (unstructured) or
    returned (structured). Cancelled between candidates, the best passing candidate so far
    is kept (``stopped == "cancelled"``); a cancel before any passes is re-raised."""
    search = Search(ctx, config)
    inner = ctx.reporter
    ctx.reporter = _SearchReporter(inner, search)
    try:
        return _run(ctx, config, search)
    finally:
        ctx.reporter = inner


def _run(ctx: PruningContext, config: SearchConfig, search: Search) -> SearchOutcome:
    from prunekit.evaluation import evaluate

    search.baseline = evaluate(ctx.model, search.val, ctx.loss_spec)
    if search.baseline["accuracy"] is None:
        raise SpecError(
            "strategy auto budgets accuracy: it needs a classification loss, this job's is "
            f"{ctx.loss_spec.name.value}"
        )
    families: list[_Family] = []
    for name in config.families:
        families.append(
            _Unstructured(ctx, search) if name == "unstructured" else _Structured(ctx, search)
        )
    stopped = "converged"
    reserve = min(config.final_epochs, config.max_fine_tune_epochs)
    share = max(0, (config.max_fine_tune_epochs - reserve) // max(1, len(families)))
    try:
        for fam in families:
            why = search.run_family(fam, share)
            if isinstance(fam, _Unstructured):
                fam.restore()  # the next family (and a structured pick) starts from the original
            if why == "capped":
                stopped = search.stop_reason
            elif why == "exhausted":
                stopped = "exhausted"
    except CancelledError:
        if search.best is None:
            raise
        stopped = "cancelled"
        ctx.reporter.event(
            "search cancelled between candidates: keeping the best candidate so far",
            level="warning",
        )
    pareto_front(search.candidates, config.objective)
    chosen = choose(search.candidates, config.objective)
    if chosen is None or search.best is None:
        best_drop = min((c.drop for c in search.candidates), default=math.inf)
        raise BudgetNotMetError(
            f"no candidate kept validation accuracy within max_accuracy_drop "
            f"{config.max_accuracy_drop:g} of the original's "
            f"{search.baseline['accuracy']:.4f}: the smallest drop reached was "
            f"{best_drop:.4f} over {len(search.candidates)} candidate(s) (the mildest ratio "
            f"tried was {min((c.ratio for c in search.candidates), default=0.0):g}); allow a "
            "larger drop or more fine-tune epochs"
        )
    fam = next(f for f in families if f.name == chosen.family)
    final = finish(search, fam, stopped)
    model = None
    masks = None
    if isinstance(fam, _Structured):
        from prunekit.structured.runner import outcome

        model = outcome(ctx, search.best.state["model"], {}).model
    else:
        masks = search.best.state["masks"]
    return SearchOutcome(
        candidates=search.candidates,
        chosen=search.best.candidate,
        model=model,
        masks=masks,
        sensitivity=search.reports,
        baseline=search.baseline,
        epochs_used=search.epochs_used,
        stopped=stopped,
        final=final,
    )


def finish(search: Search, fam: _Family, stopped: str) -> dict[str, Any]:
    """Load the chosen candidate, fine-tune it with the epochs left (not after a cancel) and
    keep the longer fine-tune only when it stays within budget on validation."""
    assert search.best is not None
    best = search.best
    if isinstance(fam, _Unstructured):
        fam.load(best.state)
    else:
        best.state["model"].set_weights(best.state["weights"])
    epochs = 0 if stopped == "cancelled" else min(search.config.final_epochs, search.reserve())
    if epochs <= 0:
        return {"fine_tune_epochs": 0, "val_accuracy": best.candidate.val_accuracy, "kept": True}
    state = best.state["masks"] if isinstance(fam, _Unstructured) else best.state["model"]
    fam.fine_tune(state, epochs)
    search.epochs_used += epochs
    found, _, _ = fam.measure(state)
    acc = float(found["accuracy"] or 0.0)
    drop = search.drop(acc)
    kept = drop <= search.config.max_accuracy_drop + 1e-12
    if not kept:  # the candidate's own weights met the budget: go back to them
        if isinstance(fam, _Unstructured):
            fam.load(best.state)
        else:
            best.state["model"].set_weights(best.state["weights"])
        search.ctx.reporter.event(
            f"final fine-tune ({epochs} epochs) reached val accuracy {acc:.4f}, over the budget: "
            "keeping the candidate's weights",
            level="warning",
        )
    return {
        "fine_tune_epochs": epochs,
        "val_accuracy": round(acc if kept else best.candidate.val_accuracy, 6),
        "val_drop": round(drop if kept else best.candidate.drop, 6),
        "kept": kept,
    }

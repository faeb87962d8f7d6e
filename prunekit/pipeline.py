"""One pruning run from a model on disk to a pruned model on disk, with its metrics.

This is the engine's front door: the worker calls it for every job, a CLI or notebook can
call it the same way. Phases are reported through a :class:`~prunekit.progress.Reporter`.

The original model is measured before the strategy touches it and the result after: the
data-free metrics always (parameters, sparsity, sizes, FLOPs per sample) and, with a
dataset, quality on its held-out split (capped at ``max_eval_samples``) and agreement with
the original model's outputs on the same samples. Size and FLOPs of the original can come
from a cache (``before=``, what :func:`prunekit.inspection.inspect_model` measured once).
Latency is a comparison (:mod:`prunekit.speedup`): the original and the pruned model timed
interleaved in this process, giving ``metrics["speedup"]["tf"]["batch_N"]`` with its
interval and each side's median/p90 in ``before/after["latency"]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from prunekit.context import PruningContext
from prunekit.data import Dataset, DatasetError, input_mismatch, load_npz
from prunekit.eligibility import speedup_paths
from prunekit.evaluation import (
    DEFAULT_MAX_SAMPLES,
    EvalSet,
    agreement,
    check_labels,
    eval_set,
    quality,
)
from prunekit.formats import ModelFormat
from prunekit.litert.exports import HeldOut, LiteRTReport, dense_reference, export_litert
from prunekit.losses import LossSpec, resolve_loss
from prunekit.metrics.flops import (
    FlopsError,
    count_concrete_flops,
    count_flops,
    nonzero_from_weights,
    sample_shape,
)
from prunekit.metrics.latency import ForwardPass
from prunekit.metrics.size import CODEC, compressed_size, raw_size, zip_directory
from prunekit.metrics.sparsity import parameter_counts, sparsity_report
from prunekit.model import LoadedModel, load_model
from prunekit.progress import NullReporter, Reporter
from prunekit.reporting import attach_analysis, finishing
from prunekit.spec import PruneSpec
from prunekit.speedup import SpeedupConfig, SpeedupMeasurement
from prunekit.strategies import build, parse_params
from prunekit.structured.export import save_other_formats

EVAL_BATCH = 256
LOSS_PROBE = 256  # training samples the loss is inferred from (when the spec says auto)
NOT_DIFFERENCED = {"runs"}  # counts of timing repetitions: their difference means nothing


@dataclass
class PruneResult:
    download: Path  # what the user downloads: a .keras file or a zipped SavedModel
    model_path: Path  # the saved model itself (file or directory)
    format: ModelFormat
    metrics: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    alternates: dict[ModelFormat, Path] = field(default_factory=dict)  # other-format downloads
    exports: dict[str, Path] = field(default_factory=dict)  # LiteRT files the spec asked for
    # other files a strategy produced (``sensitivity_png``: the sensitivity curves drawn)
    artifacts: dict[str, Path] = field(default_factory=dict)


def _model_stats(model: LoadedModel, spec: PruneSpec) -> tuple[dict[str, int], dict[str, Any], int]:
    """(parameter counts, sparsity report, bytes of all weights)."""
    arrays = [w.numpy() for w in model.weights()]
    prunable = {w.name: w.numpy() for w in model.prunable_weights(spec.exclude)}
    return parameter_counts(arrays), sparsity_report(prunable), sum(a.nbytes for a in arrays)


def save_for_download(model: LoadedModel, out_dir: Path) -> tuple[Path, Path]:
    """Save ``model`` under ``out_dir``; return (model path, download path)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if model.format is ModelFormat.KERAS:
        path = model.save(out_dir / "model.keras")
        return path, path
    path = model.save(out_dir / "saved_model")
    return path, zip_directory(path, out_dir / "model.zip")


def _load_data(data: Dataset | Path | str | None, spec: PruneSpec) -> Dataset | None:
    if data is None or isinstance(data, Dataset):
        return data  # a Dataset handed in is used as is (already preprocessed)
    rescale = spec.preprocessing.rescale if spec.preprocessing else None
    return load_npz(Path(data), rescale)


def _check_data_fits(model: LoadedModel, data: Dataset) -> None:
    sig = model.primary_signature()
    if len(sig.inputs) != 1:
        raise DatasetError(
            f"the model takes {len(sig.inputs)} inputs; datasets support single-input models"
        )
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        if split is None:
            continue
        why = input_mismatch(list(split.x.shape[1:]), sig.inputs[0].shape)
        if why:
            raise DatasetError(f"x_{name}: {why}")


def _compiled_loss(model: LoadedModel) -> object | None:
    return getattr(model.keras_model, "loss", None) if model.keras_model is not None else None


@dataclass
class _Measured:
    """Data-free metrics of one model, and what the latency comparison needs of it."""

    summary: dict[str, Any]
    sparsity: dict[str, Any]
    weight_bytes: int
    sample: tuple[list[int], str] | None  # sample shape and dtype; None: no latency/FLOPs
    notes: list[str]
    flops_by_weight: dict[str, Any] | None = None  # FlopsReport.by_weight() of the count
    weight_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)


def _same_graph_flops(model: LoadedModel, original: _Measured) -> dict[str, Any] | None:
    """FLOPs of ``model`` when only its weight values changed since ``original`` was counted
    (an in-place strategy, every weight's name and shape as they were): the dense count is
    the same, the non-zero count is recomputed from the original's count split by weight
    (:meth:`~prunekit.metrics.flops.FlopsReport.by_weight`) with the current weights, which
    is what freezing and counting the graph again would give; None otherwise."""
    before, table = original.summary.get("flops"), original.flops_by_weight
    weights = model.weights()
    if before is None or table is None:
        return None
    if {w.name: w.shape for w in weights} != original.weight_shapes:
        return None
    nonzero = nonzero_from_weights(table, weights)
    if nonzero is None or table.get("dense") != before.get("dense"):
        return None
    return {**before, "nonzero": nonzero}


def cached_before(details: dict[str, Any] | None) -> dict[str, Any]:
    """The usable part of cached "before" figures (``inspect_model(...)["before"]``): the size
    when it was compressed with today's codec, the FLOPs with the shape they were counted for."""
    if not details:
        return {}
    out: dict[str, Any] = {}
    size = details.get("size_bytes")
    if isinstance(size, dict) and size.get("codec") == CODEC:
        out["size_bytes"] = size
    if details.get("flops") is not None and details.get("flops_sample_shape") is not None:
        out["flops"] = details["flops"]
        out["flops_sample_shape"] = list(details["flops_sample_shape"])
        if details.get("flops_by_weight"):
            out["flops_by_weight"] = details["flops_by_weight"]
    return out


def _measure(
    model: LoadedModel,
    spec: PruneSpec,
    artifact: Path,
    data_shape: list[int] | None,
    cached: dict[str, Any] | None = None,
    compressed: int | None = None,
    forward: Callable[[list[int], str], ForwardPass] | None = None,
    same_graph_as: _Measured | None = None,
) -> _Measured:
    """Data-free metrics of ``model`` but latency (the comparison fills it).

    ``cached``: :func:`cached_before` figures used instead of measuring again;
    ``compressed``: the artifact's compressed size when already known (the download zip);
    ``forward``: builds the forward pass FLOPs are counted on, so the latency timing reuses
    its batch-1 trace (default: a trace of its own); ``same_graph_as``: the original's
    measurement when ``model`` is the original with other weight values (its FLOPs are then
    recomputed from the original's count split by weight, :func:`_same_graph_flops`)."""
    cached = cached or {}
    notes: list[str] = []
    params, sparsity, weight_bytes = _model_stats(model, spec)
    size = cached.get("size_bytes") or {
        "raw": raw_size(artifact),
        "compressed": compressed if compressed is not None else compressed_size(artifact),
        "codec": CODEC,
    }
    out: dict[str, Any] = {
        "parameters": params,
        "sparsity": sparsity["sparsity"],
        "size_bytes": dict(size),
        "flops": None,
        "latency": None,
    }
    try:
        shape, dtype = sample_shape(model, data_shape)
    except FlopsError as exc:
        notes.append(f"FLOPs and latency not measured: {exc}")
        return _Measured(out, sparsity, weight_bytes, None, notes)
    by_weight: dict[str, Any] | None = None
    same = None
    if same_graph_as is not None and same_graph_as.sample == (shape, dtype):
        same = _same_graph_flops(model, same_graph_as)
    # secondary metrics: a graph the counter cannot handle must not fail the job
    if cached.get("flops") is not None and cached.get("flops_sample_shape") == shape:
        out["flops"] = cached["flops"]
        by_weight = cached.get("flops_by_weight")
    elif same is not None:
        out["flops"] = same
    else:
        try:
            if forward is not None:
                report = count_concrete_flops(
                    forward(shape, dtype).concrete(1), shape, model.weights()
                )
            else:
                report = count_flops(model, shape)
            out["flops"], by_weight = report.summary(), report.by_weight()
        except Exception as exc:
            notes.append(f"FLOPs not counted: {type(exc).__name__}: {str(exc)[:300]}")
    shapes = {w.name: w.shape for w in model.weights()}
    return _Measured(out, sparsity, weight_bytes, (shape, dtype), notes, by_weight, shapes)


def _predict(model: LoadedModel, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=EVAL_BATCH))


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """``after - before`` for every number both sides have (nested dicts recurse)."""
    out: dict[str, Any] = {}
    for k, b in before.items():
        if k in NOT_DIFFERENCED:
            continue
        a = after.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            sub = _delta(b, a)
            if sub:
                out[k] = sub
        elif (
            isinstance(a, int | float)
            and isinstance(b, int | float)
            and not isinstance(a, bool)
            and not isinstance(b, bool)
        ):
            out[k] = a - b if isinstance(a, int) and isinstance(b, int) else round(a - b, 6)
    return out


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in d.items()}


def _timing(timing: SpeedupConfig | None, spec: PruneSpec) -> SpeedupConfig:
    """The caller's latency rules with what the spec's ``measure`` asked for."""
    cfg = timing or SpeedupConfig()
    m = spec.measure
    if m is None:
        return cfg
    return cfg.requested(m.latency_batch_sizes, m.latency_budget_s, m.latency_force)


def prune(
    source: Path,
    fmt: ModelFormat | str,
    spec: PruneSpec,
    out_dir: Path,
    reporter: Reporter | None = None,
    data: Dataset | Path | str | None = None,
    max_eval_samples: int = DEFAULT_MAX_SAMPLES,
    before: dict[str, Any] | None = None,
    timing: SpeedupConfig | None = None,
) -> PruneResult:
    """Prune ``source`` per ``spec``; ``data`` is a dataset ``.npz`` path (loaded with the
    spec's preprocessing) or an already preprocessed :class:`~prunekit.data.Dataset`.

    ``before``: figures of the original already measured (the ``before`` block of
    :func:`~prunekit.inspection.inspect_model`'s answer): its size and FLOPs are not measured
    again. ``timing``: bounds, budget and memory rules of the latency comparison (the spec's
    ``measure`` overrides its batch sizes and budget)."""
    reporter = reporter or NullReporter()
    fmt = ModelFormat(fmt)
    params = parse_params(spec.strategy)
    if spec.seed is not None:
        keras.utils.set_random_seed(spec.seed)
    started = time.perf_counter()

    reporter.phase("loading", 0.02)
    model = load_model(source, fmt)
    dataset = _load_data(data, spec)
    if dataset is not None:
        _check_data_fits(model, dataset)
    reporter.check_cancelled()

    reporter.phase("measuring", 0.05)
    data_shape = list(dataset.train.x.shape[1:]) if dataset is not None else None
    measured_before = _measure(model, spec, source, data_shape, cached=cached_before(before))
    before = measured_before.summary  # from here on, the report's "before" block
    sparsity_before, notes = measured_before.sparsity, measured_before.notes
    notes.extend(model.embedding_notes(spec.exclude))
    comparison: SpeedupMeasurement | None = None
    if measured_before.sample is not None:
        try:
            comparison = SpeedupMeasurement.start(
                model, *measured_before.sample, measured_before.weight_bytes, _timing(timing, spec)
            )
            if dataset is None:  # a data-free job trains nothing: load the copy while it prunes
                comparison.preload(lambda: load_model(source, fmt))
        except Exception as exc:
            notes.append(f"latency not measured: {type(exc).__name__}: {str(exc)[:300]}")
    loss: LossSpec | None = None
    evaluation: EvalSet | None = None
    reference: np.ndarray | None = None
    if dataset is not None:
        probe = dataset.train.x[:LOSS_PROBE], dataset.train.y[:LOSS_PROBE]
        loss = resolve_loss(spec.loss, _compiled_loss(model), probe[1], _predict(model, probe[0]))
        split = dataset.held_out()
        if split is None:
            split = ("train", dataset.train)
            notes.append(
                "the dataset has no x_test/x_val split: quality metrics are computed on the "
                "training split and are optimistic"
            )
        evaluation = eval_set(*split, max_samples=max_eval_samples)
        reference = _predict(model, evaluation.x)
        check_labels(evaluation.y, reference, loss)
        before.update(_rounded(quality(reference, evaluation.y, loss)))
    # the reference every LiteRT export is timed against, before the strategy changes model
    dense_litert = dense_reference(model, data_shape) if spec.exports else None
    reporter.check_cancelled()

    reporter.phase("pruning", 0.2, strategy=params.name)
    teacher = None
    if dataset is not None and spec.fine_tune is not None and spec.fine_tune.distill is not None:
        teacher = load_model(source, fmt)  # a second copy, never trained: the teacher
    ctx = PruningContext(
        model=model, spec=spec, reporter=reporter, data=dataset, loss=loss, teacher=teacher
    )
    outcome = build(params).run(ctx)
    pruned = outcome.model or model
    reporter = finishing(reporter, ctx.cache)  # a search cancelled with a result: finish it
    reporter.check_cancelled()

    reporter.phase("saving", 0.85)
    model_path, download = save_for_download(pruned, Path(out_dir))
    alternates = save_other_formats(outcome.model, Path(out_dir))  # structured: both formats

    reporter.phase("evaluating", 0.9)
    passes: dict[str, ForwardPass] = {}

    def forward(shape: list[int], dtype: str) -> ForwardPass:
        if "pruned" not in passes:  # one trace for the FLOPs count and the latency timing
            passes["pruned"] = ForwardPass(pruned, shape, dtype)
        return passes["pruned"]

    measured_after = _measure(
        pruned,
        spec,
        model_path,
        data_shape,
        # a SavedModel's download is the zip just written, with the codec of every
        # compressed figure: report its real size, not a re-zip of it
        compressed=download.stat().st_size if download != model_path else None,
        forward=forward,
        # an in-place strategy changed weight values only: the original's graph, FLOPs split
        # by weight, recounted without freezing the graph again
        same_graph_as=measured_before if outcome.model is None else None,
    )
    after, sparsity_after, after_notes = (
        measured_after.summary,
        measured_after.sparsity,
        measured_after.notes,
    )
    speedup: dict[str, Any] = {}
    if comparison is not None and measured_after.sample is not None:
        try:
            result = comparison.finish(
                forward(*measured_after.sample),
                lambda: teacher if teacher is not None else load_model(source, fmt),
            )
            speedup["tf"] = result.speedup
            before["latency"], after["latency"] = result.before_latency, result.after_latency
        except Exception as exc:
            after_notes.append(f"latency not measured: {type(exc).__name__}: {str(exc)[:300]}")
        after_notes.extend(comparison.notes)
    held_out: HeldOut | None = None
    if evaluation is not None and loss is not None and reference is not None:
        outputs = _predict(pruned, evaluation.x)
        after.update(_rounded(quality(outputs, evaluation.y, loss)))
        after["agreement"] = _rounded(agreement(outputs, reference, loss))
        held_out = HeldOut(evaluation.x, evaluation.y, loss, reference, outputs)
    litert = LiteRTReport()
    if dense_litert is not None:
        reporter.phase("exporting", 0.92, formats=list(spec.exports))
        litert = export_litert(
            pruned,
            list(spec.exports),
            Path(out_dir),
            dense_litert,
            train_x=dataset.train.x if dataset is not None else None,
            held_out=held_out,
            sparsity=sparsity_after["sparsity"],
            seed=spec.seed or 0,
        )
    notes = list(dict.fromkeys(model.notes + pruned.notes + notes + after_notes + litert.notes))
    for note in notes:
        reporter.event(note)
    for warning in litert.warnings:
        reporter.event(warning, level="warning")

    reporter.phase("reporting", 0.95)
    rows_before = {row["name"]: row for row in sparsity_before["layers"]}
    layers = []
    for row in sparsity_after["layers"]:
        prior = rows_before.get(row["name"])
        layers.append(
            {
                "layer": _layer_name(row["name"]),
                **row,
                "zeros_before": prior["zeros"] if prior else None,
                "sparsity_before": prior["sparsity"] if prior else None,
            }
        )
    metrics: dict[str, Any] = {
        "strategy": params.name,
        "sparsity": sparsity_after["sparsity"],
        "sparsity_before": sparsity_before["sparsity"],
        "parameters": {
            "total": after["parameters"]["total"],
            "nonzero": after["parameters"]["nonzero"],
            "prunable": sparsity_after["prunable"],
            "total_before": before["parameters"]["total"],
            "nonzero_before": before["parameters"]["nonzero"],
        },
        "layers": layers,
        "size_bytes": {
            "original": before["size_bytes"]["raw"],
            "pruned": after["size_bytes"]["raw"],
            "original_compressed": before["size_bytes"]["compressed"],
            "pruned_compressed": after["size_bytes"]["compressed"],
            "codec": after["size_bytes"]["codec"],
        },
        "evaluation": (
            {
                **evaluation.describe(),
                "loss": {"name": loss.name.value, "from_logits": loss.from_logits},
            }
            if evaluation is not None and loss is not None
            else None
        ),
        "before": before,
        "after": after,
        "delta": _delta(before, after),
        # runtime -> batch_N -> Speedup.as_dict(); other runtimes (LiteRT exports) add theirs
        "speedup": speedup,
        "wall_seconds": round(time.perf_counter() - started, 3),
    }
    if outcome.details:
        metrics["details"] = outcome.details
    artifacts = attach_analysis(metrics, ctx.cache, Path(out_dir))
    metrics["eligibility"] = _eligibility(pruned, spec)
    if litert.before is not None:
        metrics["exports"] = litert.exports
        metrics.setdefault("speedup", {}).update(litert.speedup)
        before["litert"] = litert.before
        after["litert"] = litert.after
    if litert.warnings:
        metrics.setdefault("warnings", []).extend(litert.warnings)
    return PruneResult(
        download=download,
        model_path=model_path,
        format=pruned.format,
        metrics=metrics,
        notes=notes,
        alternates=alternates,
        exports=litert.files,
        artifacts=artifacts,
    )


def _eligibility(model: LoadedModel, spec: PruneSpec) -> dict[str, Any]:
    """:func:`~prunekit.eligibility.speedup_paths` of the pruned model; an analysis that
    fails leaves a note instead of failing the job."""
    try:
        return speedup_paths(model, spec.exclude)
    except Exception as exc:
        return {
            "layers": [],
            "summary": {},
            "notes": [f"not analysed: {type(exc).__name__}: {exc}"],
        }


def _layer_name(weight_name: str) -> str:
    return weight_name.rsplit("/", 1)[0] if "/" in weight_name else weight_name

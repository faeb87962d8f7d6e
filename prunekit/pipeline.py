"""One pruning run from a model on disk to a pruned model on disk, with its metrics.

This is the engine's front door: the worker calls it for every job, a CLI or notebook can
call it the same way. Phases are reported through a :class:`~prunekit.progress.Reporter`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from prunekit.context import PruningContext
from prunekit.formats import ModelFormat
from prunekit.metrics.size import artifact_size, zip_directory
from prunekit.metrics.sparsity import parameter_counts, sparsity_report
from prunekit.model import LoadedModel, load_model
from prunekit.progress import NullReporter, Reporter
from prunekit.spec import PruneSpec
from prunekit.strategies import build
from prunekit.structured.export import save_other_formats


@dataclass
class PruneResult:
    download: Path  # what the user downloads: a .keras file or a zipped SavedModel
    model_path: Path  # the saved model itself (file or directory)
    format: ModelFormat
    metrics: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    alternates: dict[ModelFormat, Path] = field(default_factory=dict)  # other-format downloads


def _model_stats(model: LoadedModel, spec: PruneSpec) -> tuple[dict[str, int], dict[str, Any]]:
    arrays = [w.numpy() for w in model.weights()]
    prunable = {w.name: w.numpy() for w in model.prunable_weights(spec.exclude)}
    return parameter_counts(arrays), sparsity_report(prunable)


def save_for_download(model: LoadedModel, out_dir: Path) -> tuple[Path, Path]:
    """Save ``model`` under ``out_dir``; return (model path, download path)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if model.format is ModelFormat.KERAS:
        path = model.save(out_dir / "model.keras")
        return path, path
    path = model.save(out_dir / "saved_model")
    return path, zip_directory(path, out_dir / "model.zip")


def prune(
    source: Path,
    fmt: ModelFormat | str,
    spec: PruneSpec,
    out_dir: Path,
    reporter: Reporter | None = None,
    data: Any | None = None,
) -> PruneResult:
    reporter = reporter or NullReporter()
    fmt = ModelFormat(fmt)
    params = spec.strategy_params()
    if spec.seed is not None:
        keras.utils.set_random_seed(spec.seed)
    started = time.perf_counter()

    reporter.phase("loading", 0.02)
    model = load_model(source, fmt)
    reporter.check_cancelled()

    reporter.phase("measuring", 0.1)
    params_before, sparsity_before = _model_stats(model, spec)
    size_before = artifact_size(source)
    reporter.check_cancelled()

    reporter.phase("pruning", 0.2, strategy=params.name)
    ctx = PruningContext(model=model, spec=spec, reporter=reporter, data=data)
    outcome = build(params).run(ctx)
    pruned = outcome.model or model
    reporter.check_cancelled()

    reporter.phase("saving", 0.85)
    model_path, download = save_for_download(pruned, Path(out_dir))
    alternates = save_other_formats(outcome.model, Path(out_dir))  # structured: both formats
    notes = list(dict.fromkeys(model.notes + pruned.notes))
    for note in notes:
        reporter.event(note)

    reporter.phase("reporting", 0.95)
    params_after, sparsity_after = _model_stats(pruned, spec)
    size_after = artifact_size(model_path)
    if pruned.format is ModelFormat.SAVED_MODEL:
        # the download is the zip we just wrote: report its real size, not a re-zip of it
        size_after = type(size_after)(raw=size_after.raw, compressed=download.stat().st_size)
    layers = [{"layer": _layer_name(row["name"]), **row} for row in sparsity_after["layers"]]
    metrics: dict[str, Any] = {
        "strategy": params.name,
        "sparsity": sparsity_after["sparsity"],
        "sparsity_before": sparsity_before["sparsity"],
        "parameters": {
            "total": params_after["total"],
            "nonzero": params_after["nonzero"],
            "prunable": sparsity_after["prunable"],
            "total_before": params_before["total"],
            "nonzero_before": params_before["nonzero"],
        },
        "layers": layers,
        "size_bytes": {
            "original": size_before.raw,
            "pruned": size_after.raw,
            "original_compressed": size_before.compressed,
            "pruned_compressed": size_after.compressed,
        },
        "wall_seconds": round(time.perf_counter() - started, 3),
    }
    if outcome.details:
        metrics["details"] = outcome.details
    return PruneResult(
        download=download,
        model_path=model_path,
        format=pruned.format,
        metrics=metrics,
        notes=notes,
        alternates=alternates,
    )


def _layer_name(weight_name: str) -> str:
    return weight_name.rsplit("/", 1)[0] if "/" in weight_name else weight_name

"""A job's LiteRT exports: convert, write, and measure each against the dense original.

For every format the spec asks for, the pruned model is converted (:mod:`prunekit.litert.
convert`) and written under the job's output folder; then the file itself is measured on the
LiteRT interpreter (:mod:`prunekit.metrics.litert`): raw size, which kernels run each op,
latency against the dense original converted to plain float32 in the same job (interleaved
pairs, 1 thread and all cores, batch 1 and 32), and, with a dataset, quality and agreement of
the file's own outputs on the held-out split. A failed conversion fails only that export.

An export is stored sparse unless that file would not be safe to ship and the same weights
stored dense would: one the default interpreter fails on, or one holding a layout seen to
compute wrong outputs (see :func:`_runnable_conversion`). A sparse export that is not faster
than the dense file where it runs gets a warning (pruning without a layout the runtime's
sparse kernels use only shrinks the file), and so does a file whose outputs drift from the
pruned TF model's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from prunekit.evaluation import agreement, quality
from prunekit.litert.convert import (
    DENSE_FLOAT,
    FILENAMES,
    Conversion,
    calibration_samples,
    convert,
)
from prunekit.losses import LossSpec
from prunekit.metrics import litert as runtime
from prunekit.metrics.flops import FlopsError, sample_shape
from prunekit.metrics.timing import Speedup, TimingConfig
from prunekit.model import LoadedModel

T = TypeVar("T")
FASTER = 1.05  # an export is "faster" when its speed-up interval reaches past this
SPARSE_ENOUGH = 0.1  # a model this sparse (share of prunable weights at zero) is "sparse"
# how close a file's outputs must be to the TF pruned model's before it is called faithful
FLOAT_MAX_RELATIVE_L2 = 1e-3  # float32: the same maths, up to summation order
INT8_MIN_TOP1 = 0.98  # int8 classifiers: the same class on nearly every sample
INT8_MAX_RELATIVE_L2 = 0.1  # int8 regression


@dataclass
class HeldOut:
    """The samples the file's outputs are scored on, with the TF models' outputs on them."""

    x: np.ndarray
    y: np.ndarray
    loss: LossSpec
    reference: np.ndarray  # the original model in TF
    pruned: np.ndarray  # the pruned model in TF


@dataclass
class DenseReference:
    """The original model as plain float32 LiteRT, converted before pruning changes it, and
    the sample shape every conversion of the job uses (``None`` when it is unknown)."""

    conversion: Conversion
    shape: list[int] | None
    dtype: str = "float32"


def dense_reference(model: LoadedModel, data_shape: list[int] | None = None) -> DenseReference:
    """Convert ``model`` (the original, before pruning) to plain float32 LiteRT."""
    try:
        shape, dtype = sample_shape(model, data_shape)
    except FlopsError as exc:
        return DenseReference(Conversion(DENSE_FLOAT, error=f"no LiteRT conversion: {exc}"), None)
    return DenseReference(convert(model, DENSE_FLOAT, shape, dtype), shape, dtype)


@dataclass
class LiteRTReport:
    """What the exports add to a job's result and metrics (see :func:`export_litert`)."""

    files: dict[str, Path] = field(default_factory=dict)  # succeeded exports only
    exports: dict[str, dict[str, Any]] = field(default_factory=dict)  # metrics["exports"]
    speedup: dict[str, dict[str, Any]] = field(default_factory=dict)  # metrics["speedup"][...]
    before: dict[str, Any] | None = None  # metrics["before"]["litert"]: the dense original
    after: dict[str, dict[str, Any]] = field(default_factory=dict)  # metrics["after"]["litert"]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _scores(content: bytes, held_out: HeldOut | None) -> dict[str, Any]:
    if held_out is None:
        return {}
    outputs = runtime.run(content, held_out.x)
    return {
        "quality": _rounded(quality(outputs, held_out.y, held_out.loss)),
        "agreement": _rounded(agreement(outputs, held_out.reference, held_out.loss)),
        "agreement_with_tf_pruned": _rounded(agreement(outputs, held_out.pruned, held_out.loss)),
        "samples": len(held_out.x),
    }


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in d.items()}


def _kernels(content: bytes) -> dict[str, Any]:
    report = runtime.kernel_paths(content)
    out = {"kernels": report["ops"], "kernel_summary": report["summary"]}
    if report["xnnpack_refused"]:
        out["xnnpack_refused"] = report["xnnpack_refused"]
    return out


def _latency(speedups: dict[str, dict[str, Speedup]], side: str) -> dict[str, Any]:
    """One side's median/p90 per thread count and batch, from the interleaved pairs."""
    return {
        threads: {batch: vars(getattr(s, side)).copy() for batch, s in per_batch.items()}
        for threads, per_batch in speedups.items()
    }


def _attempt(what: str, fn: Callable[[], T], problems: list[str]) -> T | None:
    """``fn()``, or ``None`` with the reason in ``problems``: a measurement the interpreter
    cannot make leaves a note, never a failed export or job."""
    try:
        return fn()
    except Exception as exc:
        problems.append(f"{what} not measured: {type(exc).__name__}: {_one_line(exc)}")
        return None


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


def _file_metrics(content: bytes, held_out: HeldOut | None, problems: list[str]) -> dict[str, Any]:
    """Kernels and (with data) scores of one file; what cannot be measured is left out."""
    kernels = _attempt("kernel attribution", lambda: _kernels(content), problems)
    scores = _attempt("quality on LiteRT", lambda: _scores(content, held_out), problems)
    return {**(kernels or {}), **(scores or {})}


def measure_dense(dense: Conversion, held_out: HeldOut | None) -> dict[str, Any]:
    """The dense original's file on LiteRT: size, kernels, and scores (no latency yet)."""
    if dense.content is None:
        return {"format": DENSE_FLOAT, "status": "failed", "error": dense.error}
    problems: list[str] = []
    out = {
        "format": DENSE_FLOAT,
        "status": "succeeded",
        "size_bytes": len(dense.content),
        **_file_metrics(dense.content, held_out, problems),
    }
    if problems:
        out["measurement_errors"] = problems
    return out


def _not_faster(fmt: str, speedups: dict[str, dict[str, Speedup]], sparsity: float) -> str | None:
    slow = [
        f"{threads} {batch.replace('_', ' ')} ({s.median:.2f}x, 95% CI "
        f"{s.ci95[0]:.2f}-{s.ci95[1]:.2f})"
        for threads, per_batch in speedups.items()
        for batch, s in per_batch.items()
        if s.ci95[1] < FASTER
    ]
    if not slow:
        return None
    return (
        f"the {fmt} export is {sparsity:.0%} sparse but not faster than the dense float32 "
        f"LiteRT model at: {'; '.join(slow)}. Sparse kernels need a layout they can use "
        "(1x4 blocks for float32, 1x16 for int8 fully connected layers); see "
        "metrics.eligibility."
    )


def _fidelity_warning(fmt: str, record: dict[str, Any]) -> str | None:
    """A warning when the file does not compute what the TF pruned model computes."""
    close = record.get("agreement_with_tf_pruned")
    if not close:
        return None
    if record.get("quantization", "none") == "none":
        if close["relative_l2"] <= FLOAT_MAX_RELATIVE_L2:
            return None
        found = f"relative L2 distance {close['relative_l2']:.2g} (float32 should stay below "
        found += f"{FLOAT_MAX_RELATIVE_L2:g})"
    elif "top1" in close:
        if close["top1"] >= INT8_MIN_TOP1:
            return None
        found = f"top-1 agreement {close['top1']:.3f} (int8 should reach {INT8_MIN_TOP1:g})"
    else:
        if close["relative_l2"] <= INT8_MAX_RELATIVE_L2:
            return None
        found = f"relative L2 distance {close['relative_l2']:.2g} (int8 should stay below "
        found += f"{INT8_MAX_RELATIVE_L2:g})"
    return (
        f"the {fmt} file's outputs on the held-out split differ from the pruned TF model's: "
        f"{found}. Check it before shipping it (on ai-edge-litert 2.3, int8 weights stored "
        "sparse in 1x16 blocks on a layer whose inputs do not tile by 16 computed wrong "
        "outputs; see metrics.eligibility)"
    )


def _fallback_note(fmt: str, dense: dict[str, Any], export: dict[str, Any]) -> str | None:
    dense_x = dense.get("kernel_summary", {}).get(runtime.XNNPACK, 0)
    export_x = export.get("kernel_summary", {}).get(runtime.XNNPACK, 0)
    if not dense_x or export_x >= dense_x:
        return None
    read_sparse = [
        row["tensor"] for row in export.get("weight_storage") or [] if row["read_as"] == "sparse"
    ]
    if export.get("xnnpack_refused"):
        why = f": XNNPACK refused the file ({export['xnnpack_refused']})"
    elif read_sparse and not export_x:
        why = (
            f": a sparse kernel reads {len(read_sparse)} weight(s) stored sparse, and on "
            "ai-edge-litert 2.3 the default XNNPACK delegate then takes no op of the file, "
            "the dense ones included (measured; bench/README.md, litert_export)"
        )
    else:
        why = ""
    return (
        f"the {fmt} export runs {dense_x - export_x} fewer op(s) on XNNPACK than the dense "
        f"model ({export_x} of {dense_x}); the rest run the builtin kernels{why}"
    )


def export_litert(
    pruned: LoadedModel,
    formats: list[str],
    out_dir: Path,
    reference: DenseReference,
    train_x: np.ndarray | None = None,
    held_out: HeldOut | None = None,
    sparsity: float = 0.0,
    seed: int = 0,
    timing: TimingConfig = runtime.LITERT_TIMING,
) -> LiteRTReport:
    """Convert ``pruned`` to each of ``formats`` under ``out_dir`` and measure every file.

    ``reference`` is the original model converted before pruning (:func:`dense_reference`);
    ``train_x`` gives the int8 calibration samples (a seeded subset); ``held_out`` scores the
    files; ``sparsity`` is the pruned model's (to warn when a sparse export is not faster).
    """
    report = LiteRTReport()
    if not formats:
        return report
    dense = reference.conversion
    if reference.shape is None:  # nothing can be converted without a sample shape
        report.before = measure_dense(dense, None)
        for fmt in formats:
            report.exports[fmt] = {"status": "failed", "error": dense.error}
        report.notes.append(f"LiteRT exports failed, the job goes on without them: {dense.error}")
        return report
    calibration = calibration_samples(train_x, seed=seed) if train_x is not None else None
    before = measure_dense(dense, held_out)
    report.before = before
    if dense.content is None:
        report.notes.append(
            f"the dense original could not be converted to LiteRT ({dense.error}); "
            "no LiteRT speed-ups"
        )
    dense_pairs: dict[str, dict[str, Speedup]] | None = None
    for fmt in formats:
        pairs = _export_one(
            pruned, fmt, Path(out_dir), reference, calibration, held_out, report, timing
        )
        dense_pairs = dense_pairs or pairs
        if pairs is not None and sparsity >= SPARSE_ENOUGH:
            warning = _not_faster(fmt, pairs, sparsity)
            if warning:
                report.warnings.append(warning)
    if dense_pairs is not None:  # the dense side of the first export's pairs
        before["latency"] = _latency(dense_pairs, "a")
    return report


def _runnable_conversion(
    pruned: LoadedModel,
    fmt: str,
    reference: DenseReference,
    calibration: np.ndarray | None,
    problems: list[str],
) -> tuple[Conversion, dict[str, Any] | None]:
    """The conversion of ``fmt``, with its weights stored sparse unless that file is not
    safe to ship while the same weights stored dense are:

    - it does not run on the default LiteRT interpreter: XNNPACK claims a node and fails to
      prepare it (int8 weights in 1x4 blocks), so a user loading it with default settings
      gets an error (and XNNPACK's dense int8 kernels beat the builtin fallback anyway);
    - it stores a weight in a layout seen to compute wrong outputs
      (:func:`~prunekit.metrics.litert.wrong_output_hazards`).

    Returns the conversion and, when the sparse one was dropped, its size and why.
    """
    assert reference.shape is not None
    conversion = convert(pruned, fmt, reference.shape, reference.dtype, calibration)
    if conversion.content is None:
        return conversion, None
    sparse_content = conversion.content
    reasons = []
    refusal = _attempt("XNNPACK check", lambda: runtime.load_reporting(sparse_content)[1], problems)
    if refusal:
        reasons.append(f"the default LiteRT interpreter fails on it (XNNPACK: {refusal})")
    hazards = runtime.wrong_output_hazards(
        _attempt("sparse layout", lambda: runtime.sparse_tensors(sparse_content), problems) or []
    )
    if hazards:
        reasons.append(
            "it stores weights in a layout that computed wrong outputs on LiteRT: "
            + ", ".join(hazards)
        )
    if not reasons:
        return conversion, None
    stored_dense = convert(pruned, fmt, reference.shape, reference.dtype, calibration, False)
    dense_content = stored_dense.content
    if dense_content is None or not _runs_on_default_interpreter(dense_content):
        return conversion, None  # no better file: keep the sparse one
    reason = "; ".join(reasons)
    stored_dense.note = " ".join(
        part
        for part in (
            stored_dense.note and stored_dense.note + ";",
            f"weights stored dense ({len(dense_content)} bytes), not sparse "
            f"({len(sparse_content)} bytes): {reason}",
        )
        if part
    )
    stored_dense.seconds = round(stored_dense.seconds + conversion.seconds, 3)
    return stored_dense, {"size_bytes": len(sparse_content), "reason": reason}


def _runs_on_default_interpreter(content: bytes) -> bool:
    try:
        return runtime.load_reporting(content)[1] is None
    except Exception:  # not even the builtin kernels run it
        return False


def _export_one(
    pruned: LoadedModel,
    fmt: str,
    out_dir: Path,
    reference: DenseReference,
    calibration: np.ndarray | None,
    held_out: HeldOut | None,
    report: LiteRTReport,
    timing: TimingConfig,
) -> dict[str, dict[str, Speedup]] | None:
    """Convert, write and measure one format into ``report``; the timed pairs, if any."""
    assert reference.shape is not None
    problems: list[str] = []
    conversion, refused = _runnable_conversion(pruned, fmt, reference, calibration, problems)
    record: dict[str, Any] = {
        "status": "succeeded" if conversion.succeeded else "failed",
        "conversion_seconds": conversion.seconds,
    }
    if refused is not None:
        record["sparse_storage_dropped"] = refused
    report.exports[fmt] = record
    if conversion.content is None:
        record["error"] = conversion.error
        if conversion.unsupported_ops:
            record["unsupported_ops"] = conversion.unsupported_ops
        report.notes.append(f"{fmt} export failed, the job goes on without it: {record['error']}")
        return None
    content = conversion.content
    path = conversion.write(out_dir / FILENAMES[fmt])
    report.files[fmt] = path
    record.update(
        {
            "file": path.name,
            "size_bytes": len(content),
            "quantization": conversion.quantization,
            "sparse_storage": conversion.sparse_storage,
            "sparse_tensors": _attempt(
                "sparse layout", lambda: runtime.sparse_tensors(content), problems
            ),
            "weight_storage": _attempt(
                "weight storage", lambda: runtime.weight_storage(content), problems
            ),
            **({"note": conversion.note} if conversion.note else {}),
            **_file_metrics(content, held_out, problems),
        }
    )
    if conversion.note:
        report.notes.append(f"{fmt} export: {conversion.note}")
    after: dict[str, Any] = {"size_bytes": len(content)}
    after.update({k: record[k] for k in ("quality", "agreement") if k in record})
    report.after[fmt] = after
    dense = reference.conversion.content
    pairs = None
    if dense is not None:
        record["size_ratio_vs_dense"] = round(len(dense) / len(content), 3)
        pairs = _attempt(
            "LiteRT latency", lambda: runtime.litert_speedups(dense, content, cfg=timing), problems
        )
    if pairs is not None:
        for threads, per_batch in pairs.items():
            report.speedup[f"litert_{fmt}_{threads}"] = {
                batch: s.as_dict() for batch, s in per_batch.items()
            }
        after["latency"] = _latency(pairs, "b")
    fidelity = _fidelity_warning(fmt, record)
    if fidelity:
        report.warnings.append(fidelity)
    fallback = _fallback_note(fmt, report.before or {}, record)
    if fallback:
        report.notes.append(fallback)
    if problems:
        record["measurement_errors"] = problems
        report.notes.extend(f"{fmt} export: {p}" for p in problems)
    return pairs

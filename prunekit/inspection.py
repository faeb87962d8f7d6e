"""What a worker learns about an uploaded model by loading it (the API never loads models).

It also measures, once, the data-free figures every job on the model reports for "before"
(``before``: size raw and compressed, FLOPs per sample when the input shape is known), so
that jobs pass them to :func:`prunekit.pipeline.prune` (``before=``) instead of measuring
the same file again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunekit.eligibility import speedup_paths
from prunekit.formats import ModelFormat
from prunekit.metrics.flops import FlopsError, count_flops, sample_shape
from prunekit.metrics.size import artifact_size
from prunekit.metrics.sparsity import parameter_counts
from prunekit.model import LoadedModel, load_model
from prunekit.structured.traceable import untraceable_reason


def before_figures(model: LoadedModel, path: Path) -> dict[str, Any]:
    """Size of the file at ``path`` and FLOPs per sample of ``model`` (with the sample shape
    they were counted for; absent when the signature leaves a dimension open, or the graph
    cannot be counted: ``flops_error`` says why)."""
    out: dict[str, Any] = {"size_bytes": artifact_size(path).as_dict()}
    try:
        shape, _ = sample_shape(model)
        report = count_flops(model, shape)
        out["flops"] = report.summary()
        out["flops_sample_shape"] = shape
        by_weight = report.by_weight()
        if by_weight is not None:  # lets a job recount an in-place result without freezing
            out["flops_by_weight"] = by_weight
    except FlopsError as exc:
        out["flops_error"] = str(exc)
    except Exception as exc:  # a graph the counter cannot handle: the job will say so too
        out["flops_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    return out


def inspect_model(path: Path, fmt: ModelFormat | str) -> dict[str, Any]:
    """Load the model and describe it: signatures, parameters, prunable weights, layers, and
    which layers pruning could make faster (``speedup_paths``, see :mod:`prunekit.eligibility`)."""
    model = load_model(path, fmt)
    weights = model.weights()
    prunable = model.prunable_weights()
    info: dict[str, Any] = {
        "format": model.format.value,
        "signatures": {k: s.as_dict() for k, s in model.signatures().items()},
        "parameters": {
            **parameter_counts(w.numpy() for w in weights),
            "trainable": sum(w.size for w in weights if w.trainable),
            "prunable": sum(w.size for w in prunable),
        },
        "prunable_weights": [
            {"name": w.name, "layer": w.layer, "shape": list(w.shape)} for w in prunable
        ],
        "has_keras_graph": model.keras_model is not None,
        # why structured strategies cannot read the graph (a subclassed model); None: they can
        "structured_untraceable": (
            untraceable_reason(model.keras_model) if model.keras_model is not None else None
        ),
        "before": before_figures(model, path),
    }
    if model.keras_model is not None:
        info["layers"] = [
            {"name": layer.name, "class_name": type(layer).__name__}
            for layer in model.keras_model.layers
        ]
    try:
        info["speedup_paths"] = speedup_paths(model)
    except Exception as exc:  # an analysis: it never makes the model unusable
        info["speedup_paths"] = {
            "layers": [],
            "summary": {},
            "notes": [f"not analysed: {type(exc).__name__}: {str(exc)[:300]}"],
        }
    return info

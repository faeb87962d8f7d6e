"""What a worker learns about an uploaded model by loading it (the API never loads models)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunekit.eligibility import speedup_paths
from prunekit.formats import ModelFormat
from prunekit.metrics.sparsity import parameter_counts
from prunekit.model import load_model


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

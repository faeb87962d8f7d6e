"""Parameter counts and sparsity, overall and per layer. Numpy only."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np


def count_zeros(a: np.ndarray) -> int:
    return int(a.size - np.count_nonzero(a))


def parameter_counts(arrays: Iterable[np.ndarray]) -> dict[str, int]:
    total = 0
    nonzero = 0
    for a in arrays:
        total += int(a.size)
        nonzero += int(np.count_nonzero(a))
    return {"total": total, "nonzero": nonzero}


def sparsity_report(prunable: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Overall sparsity over the prunable weights and one row per weight tensor."""
    rows = []
    zeros = 0
    total = 0
    for name, a in prunable.items():
        z = count_zeros(a)
        zeros += z
        total += int(a.size)
        rows.append(
            {
                "name": name,
                "shape": list(a.shape),
                "size": int(a.size),
                "zeros": z,
                "sparsity": z / a.size if a.size else 0.0,
            }
        )
    return {"sparsity": zeros / total if total else 0.0, "prunable": total, "layers": rows}

"""What layer budgets and sensitivity analyses add to a job's metrics and files.

Kept out of :mod:`prunekit.pipeline` so the pipeline only hands over the strategy's
context cache (:mod:`prunekit.layer_budget`) and the output directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prunekit.sensitivity import PNG_NAME, SensitivityReport, render_png

SENSITIVITY_PNG = "sensitivity_png"  # the artifact's ?format= name


def attach_analysis(
    metrics: dict[str, Any], cache: Mapping[str, Any], out_dir: Path
) -> dict[str, Path]:
    """Add ``allocation`` (each tensor's share of the sparsity) and ``sensitivity`` (the
    curves) to ``metrics`` when the strategy produced them; draw the curves to a PNG under
    ``out_dir``. Returns the files written, by artifact name. A plot that cannot be drawn
    leaves a warning, never a failed job."""
    files: dict[str, Path] = {}
    if "search" in cache:
        metrics["search"] = cache["search"]
    if "allocation" in cache:
        metrics["allocation"] = cache["allocation"]
    report = cache.get("sensitivity")
    if isinstance(report, SensitivityReport):
        metrics["sensitivity"] = report.describe()
    described = metrics.get("sensitivity")
    if described and described.get("layers"):
        try:
            files[SENSITIVITY_PNG] = render_png(described, out_dir / PNG_NAME)
        except Exception as exc:
            metrics.setdefault("warnings", []).append(
                f"sensitivity plot not drawn: {type(exc).__name__}: {str(exc)[:200]}"
            )
    return files

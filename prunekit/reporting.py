"""What layer budgets and sensitivity analyses add to a job's metrics and files.

Kept out of :mod:`prunekit.pipeline` so the pipeline only hands over the strategy's
context cache (:mod:`prunekit.layer_budget`) and the output directory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prunekit.errors import CancelledError
from prunekit.progress import Reporter
from prunekit.sensitivity import PNG_NAME, SensitivityReport, render_png

SENSITIVITY_PNG = "sensitivity_png"  # the artifact's ?format= name
KEPT_AFTER_CANCEL = "kept_after_cancel"  # ctx.cache key and metrics flag


class Finishing:
    """A reporter for the rest of a job whose strategy was cancelled and kept a result
    (strategy ``auto``: the best candidate within budget so far): saving and measuring
    that result go on, so the cancel request no longer stops them."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner

    def phase(self, name: str, fraction: float = 0.0, **detail: Any) -> None:
        with contextlib.suppress(CancelledError):
            self.inner.phase(name, fraction, **detail)

    def progress(self, fraction: float, **detail: Any) -> None:
        with contextlib.suppress(CancelledError):
            self.inner.progress(fraction, **detail)

    def event(self, message: str, level: str = "info", **detail: Any) -> None:
        with contextlib.suppress(CancelledError):
            self.inner.event(message, level=level, **detail)

    def check_cancelled(self) -> None:
        """Never raises: the job finishes with the result it kept."""


def finishing(reporter: Reporter, cache: Mapping[str, Any]) -> Reporter:
    """``reporter``, or :class:`Finishing` around it when the strategy kept a result after a
    cancel."""
    return Finishing(reporter) if cache.get(KEPT_AFTER_CANCEL) else reporter


def attach_analysis(
    metrics: dict[str, Any], cache: Mapping[str, Any], out_dir: Path
) -> dict[str, Path]:
    """Add ``allocation`` (each tensor's share of the sparsity) and ``sensitivity`` (the
    curves) to ``metrics`` when the strategy produced them; draw the curves to a PNG under
    ``out_dir``. Returns the files written, by artifact name. A plot that cannot be drawn
    leaves a warning, never a failed job."""
    files: dict[str, Path] = {}
    if cache.get(KEPT_AFTER_CANCEL):
        metrics[KEPT_AFTER_CANCEL] = True
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

"""What every benchmark shares: the result file schema, the machine description, statistics.

A suite writes one JSON file per run with :func:`write_result`::

    {
      "schema": 1,
      "suite": "engine_overhead",          # the module name, also the file name
      "quick": false,                      # a ``--quick`` run (fewer repeats, smaller inputs)
      "created_at": "2025-...Z",
      "command": "make bench",             # what reproduces it
      "machine": {...},                    # machine_info(): CPU model, cores, RAM, TF, device
      "rows": [{...}, ...],                # one flat dict per measurement: the table
      "columns": ["model", ...],           # optional: table columns, in order (default: all)
      "headline": [{"metric": ..., "value": ..., "unit": ...}],  # optional: README figures
      "notes": ["..."],                    # optional: what a reader must know
      "extra": {...}                       # optional: anything else (raw samples, config)
    }

Full runs go to ``bench/results/<suite>.json``, quick runs to ``<suite>.quick.json``, so a
quick run never overwrites the figures of a full one. ``bench/report.py`` renders them.

This module only needs the standard library (plus ``psutil`` for RAM, when available); it
imports TensorFlow only inside :func:`machine_info`, and only if a suite already did.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
WORK_DIR = BENCH_DIR / "work"  # caches and scratch space (git-ignored)


def data_dir() -> Path:
    """Where the offline ``.npz`` data sets are: ``$PRUNEKIT_DATA_DIR`` when set, else
    ``<repo root>/../shared/data``."""
    env = os.environ.get("PRUNEKIT_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT / ".." / "shared" / "data").resolve()


DATA_DIR = data_dir()


# ----------------------------------------------------------------------------- statistics
def median(values: Iterable[float]) -> float:
    """The median; the mean of the two middle values for an even count."""
    xs = sorted(float(v) for v in values)
    if not xs:
        raise ValueError("median of no values")
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear interpolation between closest ranks.

    The same definition as ``numpy.percentile(values, q)`` (its default "linear" method):
    rank ``q/100 * (n - 1)`` in the sorted values, interpolated.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    xs = sorted(float(v) for v in values)
    if not xs:
        raise ValueError("percentile of no values")
    rank = q / 100 * (len(xs) - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (rank - lo)


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``; refuses a zero or negative denominator loudly."""
    if denominator <= 0:
        raise ValueError(f"ratio with a non-positive denominator ({denominator})")
    return numerator / denominator


# ----------------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            return None


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_info(with_tensorflow: bool | None = None) -> dict[str, Any]:
    """The machine a result was measured on.

    ``with_tensorflow``: report TF's version and device (GPU name or CPU). ``None`` does so
    only when TensorFlow is already imported, so describing the machine never costs a TF
    import by itself.
    """
    ram = _ram_bytes()
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": _usable_cores(),
        "ram_gib": round(ram / 1024**3, 1) if ram else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    with contextlib.suppress(OSError):
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    if with_tensorflow is None:
        with_tensorflow = "tensorflow" in sys.modules
    if with_tensorflow:
        import keras
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        device = "CPU"
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            device = str(details.get("device_name", gpus[0].name))
        info.update(tensorflow=tf.__version__, keras=keras.__version__, device=device)
    return info


def describe_machine(machine: dict[str, Any]) -> str:
    """One line for tables and the README: CPU, cores, RAM, device, TF version."""
    parts = [str(machine.get("cpu", "?"))]
    cores = machine.get("usable_cores") or machine.get("cores")
    if cores:
        parts.append(f"{cores} cores")
    if machine.get("ram_gib"):
        parts.append(f"{machine['ram_gib']} GiB RAM")
    if machine.get("device"):
        parts.append(f"device {machine['device']}")
    if machine.get("tensorflow"):
        parts.append(f"TF {machine['tensorflow']}")
    if machine.get("load_avg_1m") is not None:
        parts.append(f"load {machine['load_avg_1m']} at start")
    return ", ".join(parts)


# ----------------------------------------------------------------------------- results
def result_path(suite: str, quick: bool, results_dir: Path = RESULTS_DIR) -> Path:
    return results_dir / (f"{suite}.quick.json" if quick else f"{suite}.json")


def bench_command(suite: str, quick: bool) -> str:
    """The command that reproduces one suite's figures (from the repository root)."""
    return f".venv/bin/python -m bench.run_all --only {suite}" + (" --quick" if quick else "")


def write_result(
    suite: str,
    rows: Sequence[dict[str, Any]],
    command: str,
    extra: dict[str, Any] | None = None,
    *,
    quick: bool = False,
    columns: Sequence[str] | None = None,
    headline: Sequence[dict[str, Any]] | None = None,
    notes: Sequence[str] | None = None,
    machine: dict[str, Any] | None = None,
    results_dir: Path = RESULTS_DIR,
    created_at: str | None = None,
) -> Path:
    """Write one suite's result file (schema above) and return its path.

    ``created_at``: when the figures were measured, for a result converted from an older
    raw file (default: now)."""
    if not suite or "/" in suite or suite.startswith("."):
        raise ValueError(f"bad suite name {suite!r}")
    doc: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "suite": suite,
        "quick": quick,
        "created_at": created_at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "machine": machine if machine is not None else machine_info(),
        "rows": [dict(r) for r in rows],
    }
    if columns:
        doc["columns"] = list(columns)
    if headline:
        doc["headline"] = [dict(h) for h in headline]
    if notes:
        doc["notes"] = list(notes)
    if extra:
        doc["extra"] = extra
    path = result_path(suite, quick, results_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def read_result(path: Path) -> dict[str, Any]:
    """Load a result file and check the fields every renderer relies on."""
    doc = json.loads(Path(path).read_text())
    missing = [k for k in ("suite", "rows", "command", "machine") if k not in doc]
    if missing:
        raise ValueError(f"{path}: not a benchmark result (missing {', '.join(missing)})")
    if not isinstance(doc["rows"], list):
        raise ValueError(f"{path}: rows must be a list")
    return doc

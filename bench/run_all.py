"""Run the benchmark suites one after another, then render ``docs/benchmarks.md``.

Each suite is a module of ``bench`` with ``main(quick: bool) -> Path`` (the result file it
wrote). Every suite runs in its own Python process, so one that crashes, leaks memory or
leaves TensorFlow state behind cannot spoil the next; a failing suite is reported and the
others still run, and the exit status is non-zero when any failed. The report is rendered
from whatever results exist at the end.

Usage (from the repository root; ``make bench`` / ``make bench-quick`` call this)::

    python -m bench.run_all [--quick] [--only SUITE ...] [--no-report]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Sequence

from bench.common import REPO_ROOT

# The suites `make bench` runs, in this order.
SUITES: list[str] = [
    "compare_tfmot",  # every strategy beside tfmot on LeNet-300-100 (tfmot in bench/.venv-tfmot)
    "structured_vgg",  # structured pruning of a VGG: accuracy, FLOPs and latency
    "engine_overhead",
    "service_load",
]
# The report orders sections itself (bench/report.py). compare_tfmot writes
# compare_tfmot_<model>.json; other models: python -m bench.compare_tfmot --model lenet5.


def run_suite(name: str, quick: bool, timeout: float | None) -> tuple[bool, float, str]:
    """Run one suite in a child process: (succeeded, seconds, message)."""
    code = (
        "import importlib; "
        f"path = importlib.import_module('bench.{name}').main({quick!r}); "
        "print('result:', path)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, time.perf_counter() - started, f"timed out after {timeout:.0f}s"
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        return False, seconds, f"exit status {proc.returncode}"
    return True, seconds, "ok"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the prunekit benchmarks.")
    parser.add_argument("--quick", action="store_true", help="a subset, in minutes")
    parser.add_argument("--only", nargs="+", metavar="SUITE", help="run only these suites")
    parser.add_argument("--no-report", action="store_true", help="do not render the report")
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds allowed per suite (default: none)"
    )
    args = parser.parse_args(argv)
    names = args.only or SUITES
    for name in names:  # fail fast on a typo, before hours of benchmarks
        if importlib.util.find_spec(f"bench.{name}") is None:
            parser.error(f"no suite bench/{name}.py")

    failures: list[str] = []
    summary: list[str] = []
    for name in names:
        print(f"== {name}{' (quick)' if args.quick else ''}", flush=True)
        ok, seconds, message = run_suite(name, args.quick, args.timeout)
        summary.append(f"{name}: {message} in {seconds:.0f}s")
        if not ok:
            failures.append(name)
    if not args.no_report:
        from bench import report

        report.main([])
    print("\n".join(["== summary", *summary]))
    if failures:
        print(f"FAILED: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the benchmark suites one after another, then render ``docs/benchmarks.md``.

Each suite is a module of ``bench`` run as ``python -m bench.<module> <flags>`` (``--quick``
for the quick subset); one module can back several suites with different flags (the tfmot
comparison on each model). Every suite runs in its own Python process, so one that
crashes, leaks memory or leaves TensorFlow state behind cannot spoil the next; a failing
suite is reported and the others still run, and the exit status is non-zero when any
failed. The report is rendered from whatever results exist at the end.

Usage (from the repository root; ``make bench`` / ``make bench-quick`` call this)::

    python -m bench.run_all [--quick] [--only SUITE ...] [--no-report]

``make bench`` takes hours on 2 CPU cores (the VGG and LeNet-5 grids dominate);
``make bench-quick`` runs the suites that have a quick form, subsampled, in minutes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.common import REPO_ROOT


@dataclass(frozen=True)
class Suite:
    module: str  # bench.<module>, run with ``python -m``
    flags: tuple[str, ...] = ()  # the full run's
    has_quick: bool = True  # whether ``--quick`` (added to ``flags``) gives a quick form

    def argv(self, quick: bool) -> list[str]:
        return [sys.executable, "-m", f"bench.{self.module}", *self.flags] + (
            ["--quick"] if quick else []
        )


# The suites `make bench` runs, in this order (tfmot runs in bench/.venv-tfmot). The
# comparison suites write compare_tfmot_<model>[_cosine].json; the report orders sections.
SUITES: dict[str, Suite] = {
    # every strategy beside tfmot on LeNet-300-100, constant fine-tune lr
    "compare_tfmot": Suite("compare_tfmot", ("--model", "lenet_300_100")),
    # the same with cosine decay on both sides, each side's lr chosen on validation
    "compare_tfmot_cosine": Suite(
        "compare_tfmot",
        ("--model", "lenet_300_100", "--schedule", "cosine", "--prunekit-lr", "0.01"),
        has_quick=False,
    ),
    # seeds 1 and 2 of the cosine run (90/95%): how much of a gap is noise
    "seed_spread": Suite("seed_spread", has_quick=False),
    # prunekit with fine_tune.label_smoothing 0.1 (chosen on validation), seeds 0-2
    "seed_spread_ls": Suite("seed_spread", ("--label-smoothing", "0.1"), has_quick=False),
    # every strategy beside tfmot on LeNet-5 / MNIST and a VGG-style CNN / Fashion-MNIST
    "compare_tfmot_lenet5": Suite("compare_tfmot", ("--model", "lenet5"), has_quick=False),
    "compare_tfmot_vgg_small": Suite("compare_tfmot", ("--model", "vgg_small"), has_quick=False),
    # structured pruning of a VGG over channel ratios: accuracy, FLOPs and latency
    "structured_vgg": Suite("structured_vgg"),
    # LiteRT exports (float32 sparse, int8) of a pruned LeNet-300-100, timed on the interpreter
    "litert_export": Suite("litert_export"),
    "engine_overhead": Suite("engine_overhead"),
    "service_load": Suite("service_load"),
    # 20 jobs, 2 workers, 10 SIGKILLs and 2 Redis restarts: jobs lost, double effects, recovery
    "chaos_drill": Suite("chaos_drill"),
}


def run_suite(name: str, quick: bool, timeout: float | None) -> tuple[bool, float, str]:
    """Run one suite in a child process: (succeeded, seconds, message)."""
    argv = SUITES[name].argv(quick)
    print("$", " ".join(argv[1:]), flush=True)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.perf_counter()
    try:
        proc = subprocess.run(argv, cwd=REPO_ROOT, env=env, timeout=timeout)
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
    unknown = [n for n in args.only or () if n not in SUITES]
    if unknown:  # fail fast on a typo, before hours of benchmarks
        parser.error(f"unknown suites {unknown}; known: {', '.join(SUITES)}")
    names = [n for n in (args.only or SUITES) if not args.quick or SUITES[n].has_quick]
    for name in names:
        if importlib.util.find_spec(f"bench.{SUITES[name].module}") is None:
            parser.error(f"no module bench/{SUITES[name].module}.py for suite {name}")
    if args.only and len(names) < len(args.only):
        print(f"no quick form, skipped: {sorted(set(args.only) - set(names))}", flush=True)

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

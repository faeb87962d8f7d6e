"""How much of a comparison's gap is seed noise: the same comparison run with several seeds.

One seed is one draw: its own dense baseline (trained with that seed), its own data split
(validation carved from train with that seed) and its own fine-tune shuffling, on both
sides. Test accuracy on 10,000 images has a binomial standard error of about 0.14 points at
98%, so differences of a tenth of a point between single runs say little. This suite runs
``bench.compare_tfmot`` with the flags below for seeds 1 and 2 (each run writes its own
``compare_tfmot_<model>_<schedule>_seed<N>.json``) and takes seed 0 from the main cosine
comparison (``compare_tfmot_lenet_300_100_cosine.json``, all sparsities: ``python -m
bench.run_all --only compare_tfmot_cosine``), then reports per side, strategy and sparsity
the mean and spread over seeds of

* test accuracy, and the drop from *the same seed's* dense baseline (points);
* validation accuracy, which is what the "best strategy" is picked by.

Usage (from the repository root)::

    python -m bench.seed_spread                 # seeds 1,2 of the cosine LeNet-300-100 run
    python -m bench.seed_spread --aggregate-only   # only summarise the files already there
    python -m bench.seed_spread --quick         # subsampled smoke run
    python -m bench.seed_spread --label-smoothing 0.1   # prunekit with fine_tune.label_smoothing

With ``--label-smoothing EPS`` the suite is ``seed_spread_ls``: prunekit alone (magnitude and
gradual at 90/95%, tfmot's rows are in the plain suite) fine-tunes with smoothed labels, and
all three seeds run, seed 0 included (files ``compare_tfmot_<model>_cosine_ls[_seed<N>]``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, RESULTS_DIR, read_result, result_path, write_result
from bench.compare_tfmot import suite_name

SUITE = "seed_spread"
SEEDS = (0, 1, 2)
# The comparison whose noise is measured: LeNet-300-100 with cosine fine-tuning on both
# sides, each side at the lr chosen on validation (bench/config.py), at the two sparsities
# the quality bar is stated at.
MODEL = "lenet_300_100"
SCHEDULE = "cosine"
FLAGS = [
    "--model", MODEL,
    "--schedule", SCHEDULE,
    "--strategies", "magnitude,gradual,l0,l1",
    "--sparsities", "0.9,0.95",
    "--prunekit-lr", "0.01",
]  # fmt: skip
QUICK_FLAGS = ["--model", MODEL, "--schedule", SCHEDULE, "--strategies", "magnitude", "--quick"]
COLUMNS = [
    "side",
    "strategy",
    "sparsity",
    "seeds",
    "accuracy_mean",
    "accuracy_std",
    "drop_mean",
    "drop_std",
    "drop_min",
    "drop_max",
    "val_accuracy_mean",
]


# The label-smoothing variant: prunekit only, the strategies the 95% bar is read from.
LS_FLAGS = [
    "--model", MODEL,
    "--schedule", SCHEDULE,
    "--sides", "prunekit",
    "--strategies", "magnitude,gradual",
    "--sparsities", "0.9,0.95",
    "--prunekit-lr", "0.01",
]  # fmt: skip


def flags_for(quick: bool, label_smoothing: float | None = None) -> list[str]:
    """``bench.compare_tfmot`` flags of one seed's run."""
    if label_smoothing:
        base = LS_FLAGS if not quick else [*QUICK_FLAGS, "--sides", "prunekit"]
        return [*base, "--label-smoothing", f"{label_smoothing:g}"]
    return QUICK_FLAGS if quick else FLAGS


def suite_for(label_smoothing: float | None) -> str:
    return f"{SUITE}_ls" if label_smoothing else SUITE


def run_seed(seed: int, quick: bool, label_smoothing: float | None = None) -> None:
    """One comparison run for ``seed`` in a child process (TF state stays there)."""
    flags = flags_for(quick, label_smoothing)
    cmd = [sys.executable, "-m", "bench.compare_tfmot", *flags, "--seed", str(seed)]
    print("$", " ".join(cmd), flush=True)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run(cmd, cwd=REPO_ROOT, env=env, check=True)


def _std(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(docs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of (side, strategy, sparsity) present in every run: mean and spread over seeds.

    The drop of a row is measured against the dense baseline of its own run (seed)."""
    per_key: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for doc in docs:
        dense = [r for r in doc["rows"] if r.get("strategy") == "dense"]
        if len(dense) != 1:
            raise ValueError(f"{doc['suite']}: expected one dense row, found {len(dense)}")
        dense_acc = float(dense[0]["accuracy"])
        for r in doc["rows"]:
            key = (str(r.get("side")), str(r["strategy"]), float(r["sparsity"]))
            drop = 100 * (dense_acc - float(r["accuracy"]))
            per_key.setdefault(key, []).append({**r, "_drop": drop})
    rows: list[dict[str, Any]] = []
    for (side, strategy, sparsity), runs in per_key.items():
        if len(runs) != len(docs):
            continue  # not measured in every seed's run: no spread to report
        acc = [100 * float(r["accuracy"]) for r in runs]
        drops = [r["_drop"] for r in runs]
        vals = [100 * float(r["val_accuracy"]) for r in runs if r.get("val_accuracy") is not None]
        val_mean = round(statistics.mean(vals), 3) if len(vals) == len(runs) else None
        rows.append({
            "side": side,
            "strategy": strategy,
            "sparsity": sparsity,
            "seeds": len(runs),
            "accuracy_mean": round(statistics.mean(acc), 3),
            "accuracy_std": round(_std(acc), 3),
            "drop_mean": round(statistics.mean(drops), 3),
            "drop_std": round(_std(drops), 3),
            "drop_min": round(min(drops), 3),
            "drop_max": round(max(drops), 3),
            "val_accuracy_mean": val_mean,
        })  # fmt: skip
    rows.sort(key=lambda r: (r["sparsity"], r["side"] != "keras3", r["side"], r["strategy"]))
    return rows


def headline(
    rows: Sequence[dict[str, Any]], n_seeds: int, ours_label: str = "prunekit"
) -> list[dict[str, Any]]:
    """Per sparsity: prunekit's best strategy by mean validation accuracy (``ours_label``
    names that side in the metric), and tfmot."""
    out: list[dict[str, Any]] = []
    for sparsity in sorted({r["sparsity"] for r in rows if r["sparsity"] > 0}):
        at = [r for r in rows if r["sparsity"] == sparsity]
        ours = [r for r in at if r["side"] == "prunekit" and r["val_accuracy_mean"] is not None]
        if ours:
            best = max(ours, key=lambda r: r["val_accuracy_mean"])
            out.append({
                "metric": f"LeNet-300-100 / MNIST at {100 * sparsity:g}% sparsity, "
                f"{ours_label} `{best['strategy']}` (best by validation): test accuracy "
                f"drop from the dense baseline, mean ± std over {n_seeds} seeds",
                "value": f"{best['drop_mean']:.2f} ± {best['drop_std']:.2f}",
                "unit": "points",
            })  # fmt: skip
        for r in at:
            if r["side"] == "tfmot":
                out.append({
                    "metric": f"LeNet-300-100 / MNIST at {100 * sparsity:g}% sparsity, tfmot: "
                    f"test accuracy drop, mean ± std over {n_seeds} seeds",
                    "value": f"{r['drop_mean']:.2f} ± {r['drop_std']:.2f}",
                    "unit": "points",
                })  # fmt: skip
    return out


def summarise(
    seeds: Sequence[int],
    quick: bool,
    results_dir: Path = RESULTS_DIR,
    label_smoothing: float | None = None,
) -> Path:
    """Read every seed's comparison file and write this suite's result."""
    paths = [
        result_path(suite_name(MODEL, SCHEDULE, s, None, label_smoothing), quick, results_dir)
        for s in seeds
    ]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"no comparison result for some seeds: {missing}")
    docs = [read_result(p) for p in paths]
    rows = aggregate(docs)
    n = len(docs)
    notes = [
        f"{n} runs of the same comparison with seeds {', '.join(map(str, seeds))}: each seed "
        "has its own dense baseline, validation split and fine-tune shuffling, on both sides.",
        "`drop_*` are points of test accuracy below the same seed's dense baseline "
        "(negative: above it); std is the sample standard deviation over seeds.",
        "Test accuracy on 10,000 images has a binomial standard error of about 0.14 points "
        "at 98%: single-run differences of a tenth of a point are within noise.",
        "Per-seed tables: " + ", ".join(f"`{p.name}`" for p in paths) + ".",
    ]
    command = ".venv/bin/python -m bench.seed_spread" + (" --quick" if quick else "")
    ours = "prunekit"
    if label_smoothing:
        ours = f"prunekit with label smoothing {label_smoothing:g},"
        notes.insert(
            1,
            f"prunekit fine-tunes with fine_tune.label_smoothing {label_smoothing:g} "
            "(chosen on validation); tfmot is not run here (see seed_spread).",
        )
        command += f" --label-smoothing {label_smoothing:g}"
    return write_result(
        suite_for(label_smoothing),
        rows,
        command,
        {"seeds": list(seeds), "flags": flags_for(quick, label_smoothing),
         "runs": [d.get("created_at") for d in docs]},
        quick=quick,
        columns=COLUMNS,
        headline=headline(rows, n, ours),
        notes=notes,
        machine=docs[0]["machine"],
        results_dir=results_dir,
    )  # fmt: skip


def seeds_to_run(
    seeds: Sequence[int], quick: bool, label_smoothing: float | None = None
) -> list[int]:
    """Seed 0 of a full plain run is the main cosine comparison (every sparsity), run by its
    own suite: it is not rerun here with this suite's narrower flags."""
    return [s for s in seeds if quick or label_smoothing or s != 0]


def main(
    quick: bool = False,
    label_smoothing: float | None = None,
    seeds: Sequence[int] | None = None,
    aggregate_only: bool = False,
) -> Path:
    """Run the seeds (default: all; the quick run two seeds of a subsampled run) unless
    ``aggregate_only``, then summarise."""
    seeds = seeds or (SEEDS[:2] if quick else SEEDS)
    if not aggregate_only:
        for seed in seeds_to_run(seeds, quick, label_smoothing):
            run_seed(seed, quick, label_smoothing)
    return summarise(seeds, quick, label_smoothing=label_smoothing)


def cli(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="subsampled smoke run, two seeds")
    ap.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=None)
    ap.add_argument(
        "--aggregate-only", action="store_true", help="run nothing; summarise existing files"
    )
    ap.add_argument(
        "--label-smoothing",
        type=float,
        metavar="EPS",
        help="prunekit fine-tunes with fine_tune.label_smoothing EPS (suite seed_spread_ls)",
    )
    a = ap.parse_args(argv)
    path = main(a.quick, a.label_smoothing, a.seeds, a.aggregate_only)
    print(json.dumps(read_result(path)["headline"], indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())

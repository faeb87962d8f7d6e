"""Side-by-side pruning benchmark driver (service venv, Keras 3).

    /work/main/.venv/bin/python -m bench.compare_tfmot --model lenet_300_100
    /work/main/.venv/bin/python -m bench.compare_tfmot --quick          # smoke test, < 2 min

1. makes sure ``bench/.venv-tfmot`` exists (``bench/tfmot/setup_venv.sh``),
2. trains or loads the cached dense baseline on the Keras 3 side (``bench.train_dense``),
   re-loads it from the portable ``.npz`` and stores its test-set predictions,
3. runs every requested side on the *same* ``RunConfig`` (same dense weights, data split,
   fine-tune budget); the tfmot side runs ``bench.tfmot.run_tfmot`` in its own venv,
4. writes ``bench/results/tfmot_<model>.json`` (``..._quick.json`` with ``--quick``).

Adding prunekit's strategies is one entry in ``SIDES``: a function taking the
``RunConfig`` (``cfg.dense_weights`` points at the dense weights) and returning a
``SideResult`` whose rows carry at least ``config.ROW_KEYS``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import architectures, data
from bench.config import BENCH_DIR, RESULTS_DIR, ROW_KEYS, WORK_DIR, RunConfig, default_config

REPO_ROOT = BENCH_DIR.parent
TFMOT_VENV = BENCH_DIR / ".venv-tfmot"
TFMOT_PYTHON = TFMOT_VENV / "bin" / "python"
SETUP_SCRIPT = BENCH_DIR / "tfmot" / "setup_venv.sh"
RUNS_DIR = WORK_DIR / "runs"

# Smoke test: subsampled data, tiny budgets, two sparsities.
QUICK_OVERRIDES: dict[str, Any] = {
    "train_subsample": 6000,
    "val_subsample": 1000,
    "test_subsample": 2000,
    "dense_epochs": 5,
    "finetune_epochs": 4,
    "sparsities": [0.5, 0.9],
    "pruning_frequency": 10,
}
# The VGG-style CNN takes ~20 s per 6k images per epoch on 2 shared cores: shrink further.
QUICK_MODEL_OVERRIDES: dict[str, dict[str, Any]] = {
    "vgg_small": {"train_subsample": 3000, "dense_epochs": 3, "finetune_epochs": 2},
}


@dataclass
class SideResult:
    """What one side returns: comparable rows plus side-specific details."""

    rows: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)


def run_tag(cfg: RunConfig) -> str:
    """Names the files of one run: dense key + evaluation subset + fine-tune budget."""
    return (
        f"{cfg.dense_key()}_v{cfg.val_subsample or 'all'}_t{cfg.test_subsample or 'all'}"
        f"_ft{cfg.finetune_epochs}"
    )


# --------------------------------------------------------------------------- dense baseline


def prepare_dense(cfg: RunConfig) -> tuple[RunConfig, dict[str, Any]]:
    """Train/load the dense baseline; return the config pointing at it and its dense row.

    The model is rebuilt in Keras 3 from the portable ``.npz`` (the same file the other
    sides load) and its test predictions are saved, so each side can prove it starts from
    the identical baseline.
    """
    from bench import training
    from bench.train_dense import load_dense_model, load_split, train_dense

    baseline = train_dense(cfg)
    split = load_split(cfg)
    model = load_dense_model(cfg, baseline, split)
    test = training.evaluate(model, split.x_test, split.y_test)
    val = training.evaluate(model, split.x_val, split.y_val)
    size = training.size_and_sparsity(model)

    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    pred_path = RUNS_DIR / f"{run_tag(cfg)}_dense_pred.npy"
    np.save(pred_path, test["predictions"], allow_pickle=False)

    cfg = dataclasses.replace(
        cfg, dense_weights=str(baseline.weights_path), reference_predictions=str(pred_path)
    )
    row = {
        "model": cfg.model,
        "strategy": "dense",
        "sparsity": 0.0,
        "accuracy": test["accuracy"],
        "macro_f1": test["macro_f1"],
        "compressed_bytes": size["compressed_bytes"],
        "wall_s": baseline.meta["train_wall_s"],
        "side": "keras3",
        "dataset": cfg.dataset,
        "actual_sparsity": size["sparsity"],
        "val_accuracy": val["accuracy"],
        "dense_epochs": cfg.dense_epochs,
        "dense_key": baseline.key,
        "full_test_accuracy": baseline.meta["test_accuracy"],
    }
    return cfg, row


# --------------------------------------------------------------------------- sides


def ensure_tfmot_venv() -> Path:
    """Create ``bench/.venv-tfmot`` if needed (the script is idempotent and fast when ready)."""
    subprocess.run(["bash", str(SETUP_SCRIPT)], check=True)
    return TFMOT_PYTHON


def run_tfmot_side(cfg: RunConfig) -> SideResult:
    """Run ``bench.tfmot.run_tfmot`` on ``cfg`` in the tfmot venv."""
    python = ensure_tfmot_venv()
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    tag = run_tag(cfg)
    cfg_path = RUNS_DIR / f"{tag}_tfmot_config.json"
    out_path = RUNS_DIR / f"{tag}_tfmot_result.json"
    cfg_path.write_text(cfg.to_json())
    out_path.unlink(missing_ok=True)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
    cmd = [str(python), "-m", "bench.tfmot.run_tfmot", "--config", str(cfg_path)]
    proc = subprocess.run([*cmd, "--out", str(out_path)], cwd=REPO_ROOT, env=env, check=False)
    if proc.returncode == 3:
        raise RuntimeError(f"tfmot side: dense baselines differ, see {out_path}")
    if proc.returncode != 0 or not out_path.is_file():
        raise RuntimeError(f"tfmot side failed with exit code {proc.returncode}")
    result = json.loads(out_path.read_text())
    info = {k: result[k] for k in ("environment", "dense", "data")}
    return SideResult(rows=result["rows"], info=info)


# name -> function(RunConfig) -> SideResult. prunekit's strategies go here.
SIDES: dict[str, Callable[[RunConfig], SideResult]] = {
    "tfmot": run_tfmot_side,
}


def run_side(name: str, cfg: RunConfig) -> list[dict[str, Any]]:
    """Rows of one side (each has at least ``ROW_KEYS``)."""
    return SIDES[name](cfg).rows


# --------------------------------------------------------------------------- driver


def compare(cfg: RunConfig, sides: list[str]) -> dict[str, Any]:
    load_start = os.getloadavg()
    cfg, dense_row = prepare_dense(cfg)
    rows: list[dict[str, Any]] = [dense_row]
    side_info: dict[str, Any] = {}
    for name in sides:
        result = SIDES[name](cfg)
        for row in result.rows:
            missing = [k for k in ROW_KEYS if k not in row]
            if missing:
                raise ValueError(f"side {name!r} returned a row without {missing}")
        rows.extend(result.rows)
        side_info[name] = result.info
    return {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        # Wall times are only comparable at similar load: the CPUs here are shared.
        "host": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "config": cfg.to_dict(),
        "sides": side_info,
        "rows": rows,
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'strategy':<20} {'target':>6} {'actual':>7} {'acc %':>7} {'macroF1':>8}"
    head += f" {'gzip KB':>8} {'wall s':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        actual = r.get("actual_sparsity", float("nan"))
        lines.append(
            f"{r['strategy']:<20} {r['sparsity']:>6.2f} {actual:>7.4f} "
            f"{100 * r['accuracy']:>7.2f} {r['macro_f1']:>8.4f} "
            f"{r['compressed_bytes'] / 1024:>8.1f} {r['wall_s']:>7.1f}"
        )
    return "\n".join(lines)


def build_config(a: argparse.Namespace) -> RunConfig:
    cfg = default_config(a.model, dataset=a.dataset)
    if a.quick:
        for k, v in {**QUICK_OVERRIDES, **QUICK_MODEL_OVERRIDES.get(a.model, {})}.items():
            setattr(cfg, k, v)
    overrides = {
        "sparsities": a.sparsities,
        "dense_epochs": a.dense_epochs,
        "finetune_epochs": a.finetune_epochs,
        "finetune_lr": a.finetune_lr,
        "batch_size": a.batch_size,
        "seed": a.seed,
    }
    for k, v in overrides.items():
        if v is not None:
            setattr(cfg, k, v)
    return cfg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="lenet_300_100", choices=sorted(architectures.MODELS))
    p.add_argument("--dataset", default=None, choices=sorted(data.DATASET_FILES))
    p.add_argument("--quick", action="store_true", help="subsampled smoke test, < 2 minutes")
    p.add_argument("--sides", default="tfmot", help=f"comma list of {sorted(SIDES)}")
    p.add_argument("--sparsities", type=lambda s: [float(x) for x in s.split(",")])
    p.add_argument("--dense-epochs", type=int)
    p.add_argument("--finetune-epochs", type=int)
    p.add_argument("--finetune-lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--out", type=Path, help="result JSON (default bench/results/tfmot_<model>.json)"
    )
    a = p.parse_args(argv)

    sides = [s for s in a.sides.split(",") if s]
    unknown = [s for s in sides if s not in SIDES]
    if unknown:
        p.error(f"unknown sides {unknown}; known: {sorted(SIDES)}")
    cfg = build_config(a)
    report = compare(cfg, sides)
    report["quick"] = a.quick
    out = a.out or RESULTS_DIR / f"tfmot_{cfg.model}{'_quick' if a.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(report["rows"]))
    for name, info in report["sides"].items():
        d = info.get("dense", {})
        if "equal_baseline" in d:
            print(
                f"{name}: dense acc {100 * d['accuracy']:.2f}% vs Keras 3 "
                f"{100 * d['keras3_accuracy']:.2f}%, prediction agreement "
                f"{100 * d['prediction_agreement']:.2f}% -> equal={d['equal_baseline']}"
            )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

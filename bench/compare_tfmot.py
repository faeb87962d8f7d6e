"""Side-by-side pruning benchmark driver (service venv, Keras 3): prunekit vs tfmot.

    .venv/bin/python -m bench.compare_tfmot --model lenet_300_100
    .venv/bin/python -m bench.compare_tfmot --quick          # smoke test, < 2 min

1. makes sure ``bench/.venv-tfmot`` exists (``bench/tfmot/setup_venv.sh``),
2. trains or loads the cached dense baseline on the Keras 3 side (``bench.train_dense``),
   re-loads it from the portable ``.npz`` and stores its test-set predictions,
3. runs every requested side on the *same* ``RunConfig`` (same dense weights, data split,
   fine-tune budget) in this one invocation: tfmot runs ``bench.tfmot.run_tfmot`` in its
   own venv, prunekit runs its strategies through the engine (``bench.prunekit_side``),
4. adds to every row its drop against the dense test accuracy and, for prunekit's
   magnitude and gradual rows, tfmot's accuracy and the wall-time ratio prunekit/tfmot at
   the same sparsity,
5. writes the raw run to ``bench/results/raw/tfmot_<model>.json`` (``..._quick.json`` with
   ``--quick``), then converts it with :func:`to_result` into the common result schema
   (``bench/common.py``): ``bench/results/compare_tfmot_<model>.json`` (``.quick.json``).
   ``--schedule cosine`` (cosine-decayed fine-tune lr on both sides) writes
   ``..._<model>_cosine...`` files instead, so the constant-lr results stay.

``main(quick)`` runs the default LeNet-300-100 comparison and returns the common result
file. ``--from-raw FILE`` converts an existing raw file without measuring anything (the
same :func:`to_result` a run ends with).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
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
from bench.common import machine_info, median, write_result
from bench.config import BENCH_DIR, RESULTS_DIR, ROW_KEYS, WORK_DIR, RunConfig, default_config

REPO_ROOT = BENCH_DIR.parent
TFMOT_VENV = BENCH_DIR / ".venv-tfmot"
TFMOT_PYTHON = TFMOT_VENV / "bin" / "python"
SETUP_SCRIPT = BENCH_DIR / "tfmot" / "setup_venv.sh"
RUNS_DIR = WORK_DIR / "runs"
RAW_DIR = RESULTS_DIR / "raw"  # the driver's own format; bench/results/*.json is the common one

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
    # The whole config in the name: concurrent sweeps must not share these files.
    tag = f"{run_tag(cfg)}_{hashlib.sha256(cfg.to_json().encode()).hexdigest()[:8]}"
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


def run_prunekit_side(cfg: RunConfig) -> SideResult:
    """prunekit's strategies on ``cfg``, in this process (``bench.prunekit_side``)."""
    from bench import prunekit_side

    result = prunekit_side.run(cfg, log=lambda line: print(line, flush=True))
    return SideResult(rows=result.pop("rows"), info=result)


# name -> function(RunConfig) -> SideResult.
SIDES: dict[str, Callable[[RunConfig], SideResult]] = {
    "tfmot": run_tfmot_side,
    "prunekit": run_prunekit_side,
}
DEFAULT_SIDES = "tfmot,prunekit"
# prunekit strategies compared with tfmot's PolynomialDecay pruning at the same sparsity.
COMPARED_WITH_TFMOT: tuple[str, ...] = ("magnitude", "gradual")


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
        before = os.getloadavg()[0]
        result = SIDES[name](cfg)
        for row in result.rows:
            missing = [k for k in ROW_KEYS if k not in row]
            if missing:
                raise ValueError(f"side {name!r} returned a row without {missing}")
        rows.extend(result.rows)
        side_info[name] = {
            **result.info,
            "loadavg_1m": [round(before, 2), round(os.getloadavg()[0], 2)],
        }
    annotate(rows)
    return {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        # Wall times are only comparable at similar load: the CPUs here are shared.
        "host": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "machine": machine_info(with_tensorflow=True),
        "config": recorded_config(cfg),
        "sides": side_info,
        "rows": rows,
    }


def annotate(rows: list[dict[str, Any]]) -> None:
    """Add ``drop_points`` (dense test acc - row acc, in points) to every row, and to the
    prunekit rows comparable with tfmot, tfmot's accuracy and the wall-time ratio."""
    dense = next(r for r in rows if r["strategy"] == "dense")
    tfmot = {r["sparsity"]: r for r in rows if r.get("side") == "tfmot"}
    for r in rows:
        r["drop_points"] = round(100 * (dense["accuracy"] - r["accuracy"]), 3)
        t = tfmot.get(r["sparsity"])
        if r.get("side") == "prunekit" and r["strategy"] in COMPARED_WITH_TFMOT and t:
            r["tfmot_accuracy"] = t["accuracy"]
            r["wall_ratio_vs_tfmot"] = round(r["wall_s"] / t["wall_s"], 3)


def format_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'side':<8} {'strategy':<17} {'target':>6} {'actual':>7} {'acc %':>7} {'drop':>6}"
    head += f" {'macroF1':>8} {'gzip KB':>8} {'wall s':>7} {'tfmot %':>7} {'ratio':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        actual = r.get("actual_sparsity", float("nan"))
        tf_acc = r.get("tfmot_accuracy")
        ratio = r.get("wall_ratio_vs_tfmot")
        lines.append(
            f"{r.get('side', ''):<8} {r['strategy']:<17} {r['sparsity']:>6.2f} {actual:>7.4f} "
            f"{100 * r['accuracy']:>7.2f} {r.get('drop_points', 0.0):>+6.2f} "
            f"{r['macro_f1']:>8.4f} {r['compressed_bytes'] / 1024:>8.1f} {r['wall_s']:>7.1f} "
            f"{'' if tf_acc is None else f'{100 * tf_acc:.2f}':>7} "
            f"{'' if ratio is None else f'{ratio:.2f}':>6}"
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
        "prunekit_finetune_lr": a.prunekit_lr,
        "finetune_schedule": a.schedule,
        "batch_size": a.batch_size,
        "ramp_fraction": a.ramp_fraction,
        "seed": a.seed,
        "prunekit_strategies": a.strategies,
        "secondary_sparsities": a.secondary_sparsities,
        "prunekit_params": strategy_params(a.set) if a.set else None,
        "prunekit_distill": a.distill,
        "prunekit_label_smoothing": a.label_smoothing,
    }
    for k, v in overrides.items():
        if v is not None:
            setattr(cfg, k, v)
    return cfg


def distill_arg(text: str) -> dict[str, float]:
    """``"0.5,4"`` -> ``{"alpha": 0.5, "temperature": 4.0}``."""
    alpha, _, temperature = text.partition(",")
    return {"alpha": float(alpha), "temperature": float(temperature or 4.0)}


def strategy_params(assignments: list[str]) -> dict[str, dict[str, Any]]:
    """``["gradual.end_fraction=0.5", ...]`` -> ``{"gradual": {"end_fraction": 0.5}}``;
    values are parsed as JSON when they can be (numbers, booleans), else kept as text."""
    out: dict[str, dict[str, Any]] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        strategy, dot, param = key.partition(".")
        if not (sep and dot and strategy and param):
            raise ValueError(f"expected STRATEGY.PARAM=VALUE, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(strategy, {})[param] = value
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    floats = lambda s: [float(x) for x in s.split(",")]  # noqa: E731
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="lenet_300_100", choices=sorted(architectures.MODELS))
    p.add_argument("--dataset", default=None, choices=sorted(data.DATASET_FILES))
    p.add_argument("--quick", action="store_true", help="subsampled smoke test, < 2 minutes")
    p.add_argument("--sides", default=DEFAULT_SIDES, help=f"comma list of {sorted(SIDES)}")
    p.add_argument("--strategies", type=lambda s: s.split(","), help="prunekit strategies")
    p.add_argument("--sparsities", type=floats)
    p.add_argument(
        "--secondary-sparsities",
        type=floats,
        help="sparsities of the prunekit strategies without a tfmot counterpart "
        "(l1, l0, saliency, random); default: all of --sparsities",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="STRATEGY.PARAM=VALUE",
        help="override a prunekit strategy parameter (repeatable), e.g. gradual.end_fraction=0.5",
    )
    p.add_argument("--dense-epochs", type=int)
    p.add_argument("--finetune-epochs", type=int)
    p.add_argument("--finetune-lr", type=float, help="tfmot's constant fine-tune lr")
    p.add_argument("--prunekit-lr", type=float, help="prunekit's (default: model default)")
    p.add_argument(
        "--schedule",
        choices=["constant", "cosine"],
        help="fine-tune lr schedule of both sides (default: the model's in bench/config.py, "
        "constant for the LeNets); cosine decays each side's lr to 0 over its fine-tune "
        "budget. Results go to *_cosine files.",
    )
    p.add_argument("--batch-size", type=int)
    p.add_argument("--ramp-fraction", type=float, help="share of fine-tune steps in the ramp")
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--distill",
        type=distill_arg,
        metavar="ALPHA,T",
        help="prunekit fine-tunes with distillation from the dense model (fine_tune.distill)",
    )
    p.add_argument(
        "--label-smoothing",
        type=float,
        metavar="EPS",
        help="prunekit fine-tunes with label smoothing EPS (fine_tune.label_smoothing)",
    )
    p.add_argument(
        "--out", type=Path, help="raw result JSON (default bench/results/raw/tfmot_<model>.json)"
    )
    p.add_argument(
        "--from-raw",
        type=Path,
        metavar="FILE",
        help="measure nothing: convert this raw result file to the common schema",
    )
    a = p.parse_args(argv)
    unknown = [s for s in a.sides.split(",") if s and s not in SIDES]
    if unknown:
        p.error(f"unknown sides {unknown}; known: {sorted(SIDES)}")
    return a


def recorded_config(cfg: RunConfig) -> dict[str, Any]:
    """The run's config as results record it: the driver's cache paths relative to the
    repository (a result file names no machine's directories)."""
    out = cfg.to_dict()
    for key in FILLED_BY_DRIVER:
        if out.get(key):
            path = Path(out[key])
            out[key] = (
                str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else path.name
            )
    return out


def raw_path(cfg: RunConfig, quick: bool) -> Path:
    name = suite_name(
        cfg.model,
        cfg.finetune_schedule,
        cfg.seed,
        cfg.prunekit_distill,
        cfg.prunekit_label_smoothing,
    )
    return RAW_DIR / f"{name.replace('compare_tfmot_', 'tfmot_')}{'_quick' if quick else ''}.json"


def run_cli(a: argparse.Namespace) -> Path:
    """Measure, write the raw run, convert it (:func:`to_result`); the common result file."""
    sides = [s for s in a.sides.split(",") if s]
    cfg = build_config(a)
    report = compare(cfg, sides)
    report["quick"] = a.quick
    out = a.out or raw_path(cfg, a.quick)
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
    path = to_result(report)
    print(f"wrote {path}")
    return path


# --------------------------------------------------------------------------- common schema

MODEL_LABELS = {"lenet_300_100": "LeNet-300-100", "lenet5": "LeNet-5", "vgg_small": "VGG-small"}
# The table in docs/benchmarks.md; every row keeps all its fields in the result file.
TABLE_COLUMNS = [
    "side",
    "strategy",
    "sparsity",
    "actual_sparsity",
    "accuracy",
    "val_accuracy",
    "drop_points",
    "macro_f1",
    "compressed_bytes",
    "wall_s",
    "budget",
    "tfmot_accuracy",
    "wall_ratio_vs_tfmot",
]
HEADLINE_SPARSITIES = (0.9, 0.95)
# RunConfig field -> the CLI flag that sets it (to rebuild a reproducing command line).
CONFIG_FLAGS = {
    "sparsities": "--sparsities",
    "secondary_sparsities": "--secondary-sparsities",
    "prunekit_strategies": "--strategies",
    "dense_epochs": "--dense-epochs",
    "finetune_epochs": "--finetune-epochs",
    "finetune_lr": "--finetune-lr",
    "prunekit_finetune_lr": "--prunekit-lr",
    "finetune_schedule": "--schedule",
    "batch_size": "--batch-size",
    "ramp_fraction": "--ramp-fraction",
    "seed": "--seed",
    "prunekit_label_smoothing": "--label-smoothing",
}
FILLED_BY_DRIVER = ("dense_weights", "reference_predictions")


def schedule_suffix(schedule: str | None) -> str:
    """File-name suffix of a fine-tune lr schedule: none for the constant-lr runs."""
    return "" if schedule in (None, "constant") else f"_{schedule}"


def seed_suffix(seed: int | None) -> str:
    """File-name suffix of a run's seed: none for seed 0, the default every table uses."""
    return "" if not seed else f"_seed{seed}"


def suite_name(
    model: str,
    schedule: str | None = None,
    seed: int | None = 0,
    distill: Any = None,
    label_smoothing: float | None = None,
) -> str:
    """``compare_tfmot_<model>[_cosine][_distill][_ls][_seed<N>]``: runs with other settings
    (schedule, prunekit distillation or label smoothing, seed) get their own files."""
    variant = (
        schedule_suffix(schedule)
        + ("_distill" if distill else "")
        + ("_ls" if label_smoothing else "")
        + seed_suffix(seed)
    )
    return f"compare_tfmot_{model}{variant}"


def reproduce_command(config: dict[str, Any], quick: bool) -> tuple[str, list[str]]:
    """The command line that reruns ``config``, and the config keys it cannot express."""
    model = str(config["model"])
    defaults = default_config(model, dataset=config.get("dataset"))
    if quick:
        for k, v in {**QUICK_OVERRIDES, **QUICK_MODEL_OVERRIDES.get(model, {})}.items():
            setattr(defaults, k, v)
    base = defaults.to_dict()
    parts = [".venv/bin/python -m bench.compare_tfmot", f"--model {model}"]
    if config.get("dataset") != base["dataset"]:
        parts.append(f"--dataset {config['dataset']}")
    if quick:
        parts.append("--quick")
    unexpressed: list[str] = []
    for key, value in config.items():
        if key in FILLED_BY_DRIVER or key in ("model", "dataset") or value == base.get(key):
            continue
        flag = CONFIG_FLAGS.get(key)
        if flag is None or value is None:
            unexpressed.append(f"{key}={value!r}")
        elif isinstance(value, list):
            parts.append(f"{flag} {','.join(str(v) for v in value)}")
        else:
            parts.append(f"{flag} {value}")
    if config.get("prunekit_distill"):
        d = config["prunekit_distill"]
        unexpressed = [u for u in unexpressed if not u.startswith("prunekit_distill=")]
        parts.append(f"--distill {d['alpha']:g},{d['temperature']:g}")
    if config.get("prunekit_params"):
        unexpressed = [u for u in unexpressed if not u.startswith("prunekit_params=")]
        for strategy, params in config["prunekit_params"].items():
            for name, value in params.items():
                parts.append(f"--set {strategy}.{name}={json.dumps(value)}")
    return " ".join(parts), unexpressed


def legacy_machine(raw: dict[str, Any]) -> dict[str, Any]:
    """The machine of a raw file written before runs recorded ``machine_info()``: what it
    did record (cores, Python, load, TF/Keras versions); the CPU model was not recorded."""
    host = raw.get("host", {})
    tf_env = raw.get("sides", {}).get("tfmot", {}).get("environment", {})
    pk_env = raw.get("sides", {}).get("prunekit", {}).get("environment", {})
    machine: dict[str, Any] = {"cpu": "CPU model not recorded", "cores": host.get("cpus")}
    if host.get("python"):
        machine["python"] = host["python"]
    if host.get("loadavg_start"):
        machine["load_avg_1m"] = host["loadavg_start"][0]
    if tf_env.get("tensorflow"):
        machine["tensorflow"] = tf_env["tensorflow"]
    if pk_env.get("keras"):
        machine["keras"] = pk_env["keras"]
    return machine


def headline(rows: list[dict[str, Any]], label: str) -> list[dict[str, Any]]:
    """Dense accuracy; at 90% and 95% the best prunekit strategy (chosen on validation
    accuracy, never on test) beside tfmot; prunekit gradual / tfmot wall time."""
    dense = next(r for r in rows if r["strategy"] == "dense")
    out: list[dict[str, Any]] = [
        {"metric": f"{label}: dense test accuracy", "value": round(100 * dense["accuracy"], 2),
         "unit": "%"},
    ]  # fmt: skip
    tfmot = {r["sparsity"]: r for r in rows if r.get("side") == "tfmot"}
    for s in HEADLINE_SPARSITIES:
        ours = [r for r in rows if r.get("side") == "prunekit" and r["sparsity"] == s]
        if not ours or s not in tfmot:
            continue
        best = max(ours, key=lambda r: r.get("val_accuracy", r["accuracy"]))
        t = tfmot[s]["accuracy"]
        out.append({
            "metric": f"{label}: test accuracy at {100 * s:g}% sparsity, best prunekit strategy "
            f"(by val. accuracy) vs tfmot",
            "value": f"{100 * best['accuracy']:.2f}% ({best['strategy']}) vs tfmot {100 * t:.2f}%",
            "unit": "",
            "prunekit_strategy": best["strategy"],
            "prunekit_accuracy": best["accuracy"],
            "tfmot_accuracy": t,
        })  # fmt: skip
    ratios = [
        r["wall_ratio_vs_tfmot"]
        for r in rows
        if r.get("side") == "prunekit" and r["strategy"] == "gradual" and "wall_ratio_vs_tfmot" in r
    ]
    if ratios:
        out.append({
            "metric": f"{label}: wall time, prunekit gradual / tfmot (median over "
            f"{len(ratios)} sparsities, same fine-tune budget)",
            "value": round(median(ratios), 2),
            "unit": "x",
        })  # fmt: skip
    return out


def to_result(raw: dict[str, Any]) -> Path:
    """Write a raw comparison (:func:`compare`'s output) in the common result schema."""
    config = raw["config"]
    model = str(config["model"])
    quick = bool(raw.get("quick", False))
    label = f"{MODEL_LABELS.get(model, model)} / {config.get('dataset', '?')}"
    rows = [dict(r) for r in raw["rows"]]
    command, unexpressed = reproduce_command(config, quick)
    host = raw.get("host", {})
    notes = [
        f"{label}: one dense baseline trained once (Keras 3) and loaded by both sides; tfmot "
        "ran in its own venv (`bench/.venv-tfmot`), prunekit through its engine, both with "
        "the same data split and fine-tune budget. Accuracy is on the test set; "
        "`drop_points` is dense minus row accuracy, in points.",
        f"Fine-tune lr schedule on both sides: {config.get('finetune_schedule', 'constant')}; "
        f"lr chosen on validation for each side: tfmot {config.get('finetune_lr')}, prunekit "
        f"{config.get('prunekit_finetune_lr') or config.get('finetune_lr')}.",
        "Headline 'best prunekit strategy' is picked by validation accuracy; the test "
        "accuracy of that pick is what is shown.",
        f"Wall times come from a shared machine (load average {host.get('loadavg_start')} at "
        f"start, {host.get('loadavg_end')} at the end); ratios compare runs of the same "
        "invocation.",
    ]
    for name, info in raw.get("sides", {}).items():
        d = info.get("dense", {})
        if "prediction_agreement" in d:
            notes.append(
                f"{name} side: dense accuracy {100 * d['accuracy']:.2f}% vs Keras 3 "
                f"{100 * d['keras3_accuracy']:.2f}%, test prediction agreement "
                f"{100 * d['prediction_agreement']:.2f}%."
            )
    if unexpressed:
        notes.append(f"Run with settings the command line cannot set: {', '.join(unexpressed)}.")
    extra = {k: raw[k] for k in ("generated_at", "host", "config", "sides") if k in raw}
    return write_result(
        suite_name(
            model,
            config.get("finetune_schedule"),
            config.get("seed"),
            config.get("prunekit_distill"),
            config.get("prunekit_label_smoothing"),
        ),
        rows,
        command,
        extra,
        quick=quick,
        columns=TABLE_COLUMNS,
        headline=headline(rows, label),
        notes=notes,
        machine=raw.get("machine") or legacy_machine(raw),
        created_at=raw.get("generated_at"),
    )


def main(quick: bool = False) -> Path:
    """The default comparison (LeNet-300-100, tfmot and prunekit); returns the result file."""
    return run_cli(parse_args(["--quick"] if quick else []))


def cli(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.from_raw:
        print(f"wrote {to_result(json.loads(a.from_raw.read_text()))}")
    else:
        run_cli(a)
    return 0


if __name__ == "__main__":
    sys.exit(cli())

"""Structured pruning side by side: prunekit ``filter`` against Torch-Pruning (PyTorch).

The same two architectures are built in both frameworks (``bench.architectures``:
``vgg_small`` and ``resnet_small``, a residual CNN with 1x1 projection shortcuts and
BatchNorm; the PyTorch twins are in ``bench/torchprune/run_torch.py``), on the same data
(a seeded subset of Fashion-MNIST's training set from ``../shared/data``, the full test set
unless ``--n-test``), with the same recipes:

* dense: Adam at a constant 1e-3, batch 64, ``dense_epochs``;
* control: the dense model trained ``ft_epochs`` more epochs, Adam 1e-3 with cosine decay to
  0 (per batch), no pruning: what the extra epochs alone are worth;
* pruned: ``ratio`` of every prunable layer's channels removed, ``floor(ratio * width)`` per
  layer on both sides, so both pruned models have the same widths (prunekit: ``filter``,
  uniform scope, through ``prunekit.pipeline.prune``, the code the service's workers run,
  with its defaults (L1 norm scored over each coupled channel group, BatchNorm statistics
  recalibrated after the cut); Torch-Pruning: ``MetaPruner`` with
  ``GroupMagnitudeImportance``, handed a per-layer ratio that lands on prunekit's widths,
  ``bench/torchprune/widths.py``), then fine-tuned exactly as the control was trained.

Each side reports test accuracy, the drop against its own control, parameters, MACs and the
batch-1 and batch-32 speed-up over its own dense model (``prunekit.metrics.timing``:
alternating pairs, median ratio, bootstrap 95% interval). The Torch-Pruning side runs in its
own virtualenv (``make bench-torch-venv`` creates ``bench/.venv-torch``), in a subprocess
started first, so both sides run at the same time on the same machine.

    python -m bench.compare_torch_pruning            # 3 seeds x 2 archs x ratios 0.3, 0.5, 0.7
    python -m bench.compare_torch_pruning --archs vgg_small --variants filter filter_l2
    python -m bench.compare_torch_pruning --quick    # smoke run, minutes

Raw results: ``bench/results/raw/compare_torch_pruning.json`` (quick: ``bench/work/``), and
markdown tables on stdout: one row per side, then prunekit's drop minus Torch-Pruning's with
its standard error (the two sides' seed variances over their seed counts) and whether the
kept widths matched.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
TORCH_PYTHON = ROOT / "bench" / ".venv-torch" / "bin" / "python"
WORK = ROOT / "bench" / "work"
RAW = ROOT / "bench" / "results" / "raw"

ARCHS = ("vgg_small", "resnet_small")
WIDTHS = {"vgg_small": [16, 32, 64], "resnet_small": [16, 32, 64]}


def config(args: argparse.Namespace) -> dict[str, Any]:
    quick = bool(args.quick)
    return {
        "archs": list(args.archs),
        "widths": WIDTHS,
        "seeds": list(args.seeds if args.seeds else ([0] if quick else [0, 1, 2])),
        "ratios": list(args.ratios if args.ratios else ([0.5] if quick else [0.3, 0.5, 0.7])),
        "n_train": args.n_train or (1000 if quick else 5000),
        "n_test": args.n_test or (1000 if quick else 5000),
        "val_size": 5000,
        "dense_epochs": args.dense_epochs or (1 if quick else 3),
        "ft_epochs": args.ft_epochs or (1 if quick else 3),
        "learning_rate": 1e-3,
        "batch_size": 64,
        "threads": args.threads,
        "variants": list(args.variants),
        "timing": {"budget_s": 1.0, "min_pairs": 7},
        "time_speed": not args.no_speed,
    }


# prunekit variants: extra params of the ``filter`` strategy and of ``fine_tune``
VARIANTS: dict[str, dict[str, Any]] = {
    "filter": {},
    "filter_norecal": {"strategy": {"recalibrate": False}},
    "filter_l2": {"strategy": {"criterion": "l2"}},
    "filter_distill": {"fine_tune": {"distill": {}}},
    "filter_steps3": {"strategy": {"steps": 3}},
    # the same 2 training epochs as one-shot with the default budget: 1 recovery + 1 fine-tune
    "filter_steps2_matched": {
        "strategy": {"steps": 2, "step_epochs": 1},
        "fine_tune": {"epochs": 1},
    },
}


def prunekit_side(cfg: dict[str, Any]) -> dict[str, Any]:
    import keras
    import numpy as np
    import tensorflow as tf

    threads = int(cfg["threads"])
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)

    from bench import architectures, data
    from prunekit.data import Dataset, Split
    from prunekit.losses import LossName, LossSpec
    from prunekit.metrics.timing import TimingConfig, interleaved_speedup, timing_context
    from prunekit.pipeline import prune
    from prunekit.spec import PruneSpec
    from prunekit.structured import model_cost
    from prunekit.structured.training import keras_trainer, train
    from prunekit.training import TrainConfig

    split = data.load(
        "fashion_mnist",
        channel_axis=True,
        val_size=cfg["val_size"],
        seed=0,
        train_subsample=cfg["n_train"],
        test_subsample=cfg["n_test"],
    )
    train_split = Split(split.x_train, split.y_train)
    test_split = Split(split.x_test, split.y_test)
    timing = TimingConfig(**cfg["timing"])
    lr, bs = cfg["learning_rate"], cfg["batch_size"]
    ft_recipe = {
        "epochs": cfg["ft_epochs"],
        "batch_size": bs,
        "learning_rate": lr,
        "schedule": "cosine",
    }

    def accuracy(model: Any) -> float:
        logits = model.predict(split.x_test, batch_size=1000, verbose=0)
        return float(np.mean(np.argmax(logits, axis=-1) == split.y_test))

    def costs(model: Any) -> dict[str, int]:
        c = model_cost(model)
        return {"macs": c.flops // 2, "params": c.params}

    def runner(model: Any, batch: int) -> Any:
        xb = tf.constant(np.random.default_rng(0).random((batch, 28, 28, 1), dtype=np.float32))
        fn = tf.function(lambda t: model(t, training=False))
        return lambda: fn(xb).numpy()

    def speed(dense: Any, pruned: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for batch in (1, 32):
            s = interleaved_speedup(runner(dense, batch), runner(pruned, batch), timing)
            out[f"batch{batch}"] = {
                "speedup": round(s.median, 3),
                "ci95": [round(v, 3) for v in s.ci95],
                "pairs": s.runs,
                "dense_ms": s.a.median_ms,
                "pruned_ms": s.b.median_ms,
            }
        return out

    runs: list[dict[str, Any]] = []
    WORK.mkdir(parents=True, exist_ok=True)
    for arch in cfg["archs"]:
        widths = tuple(cfg["widths"][arch])
        for seed in cfg["seeds"]:
            key = json.dumps([arch, seed, widths, cfg["n_train"], cfg["dense_epochs"], lr, bs])
            path = WORK / f"tp_dense_{hashlib.sha256(key.encode()).hexdigest()[:12]}.keras"
            started = time.perf_counter()
            if path.exists():  # the same seed, data and recipe: trained by an earlier run
                dense = keras.saving.load_model(path, safe_mode=True)
            else:
                keras.utils.set_random_seed(seed)
                dense = architectures.build(keras, arch, (28, 28, 1), widths=widths)
                dense.compile(
                    optimizer=keras.optimizers.Adam(lr),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                )
                dense.fit(
                    split.x_train,
                    split.y_train,
                    batch_size=bs,
                    epochs=cfg["dense_epochs"],
                    shuffle=True,
                    verbose=0,
                )
                dense.compile(
                    optimizer="adam",
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                )
                dense.save(path)
            row: dict[str, Any] = {
                "arch": arch,
                "seed": seed,
                "dense_accuracy": accuracy(dense),
                "dense_seconds": round(time.perf_counter() - started, 1),
                "dense_cost": costs(dense),
            }
            control = keras.saving.load_model(path, safe_mode=True)
            # the pruned side's fine-tune without the cut: the engine's trainer, the same
            # recipe (cosine), loss and seed as the job's fine-tune
            train(
                keras_trainer(
                    control,
                    LossSpec(LossName.SPARSE_CATEGORICAL, from_logits=True),
                    TrainConfig(
                        epochs=cfg["ft_epochs"],
                        batch_size=bs,
                        learning_rate=lr,
                        schedule="cosine",
                    ),
                    seed=seed + 1,
                ),
                split.x_train,
                split.y_train,
            )
            row["control_accuracy"] = accuracy(control)
            row["variants"] = {}
            for variant in cfg["variants"]:
                extra = VARIANTS[variant]
                per_ratio: dict[str, Any] = {}
                for ratio in cfg["ratios"]:
                    strategy = {"name": "filter", "ratio": ratio, **extra.get("strategy", {})}
                    ft = {**ft_recipe, **extra.get("fine_tune", {})}
                    # the job's own latency check at batch 1 only: the bench times both sides
                    spec = PruneSpec(
                        strategy=strategy,
                        fine_tune=ft,
                        seed=seed + 1,
                        measure={"latency_batch_sizes": [1], "latency_budget_s": 0.5},
                    )
                    started = time.perf_counter()
                    res = prune(
                        path,
                        "keras",
                        spec,
                        WORK / f"tp_out_{arch}_{seed}_{variant}_{ratio}",
                        data=Dataset(train=train_split, test=test_split),
                    )
                    pruned = keras.saving.load_model(res.model_path, safe_mode=True)
                    s = res.metrics["details"]["structured"]
                    entry: dict[str, Any] = {
                        "accuracy": accuracy(pruned),
                        "seconds": round(time.perf_counter() - started, 1),
                        "cost": costs(pruned),
                        "widths": [
                            int(layer.filters)
                            for layer in pruned.layers
                            if isinstance(layer, keras.layers.Conv2D)
                        ],
                        "recalibration": s.get("recalibration"),
                    }
                    if cfg["time_speed"]:
                        entry["speed"] = speed(dense, pruned)
                    per_ratio[str(ratio)] = entry
                    print(
                        json.dumps(
                            {
                                "arch": arch,
                                "seed": seed,
                                "variant": variant,
                                "ratio": ratio,
                                **entry,
                            }
                        )[:700],
                        flush=True,
                    )
                row["variants"][variant] = per_ratio
            runs.append(row)
            print(
                f"prunekit {arch} seed {seed}: dense {row['dense_accuracy']:.4f} "
                f"control {row['control_accuracy']:.4f}",
                flush=True,
            )
    return {
        "side": "prunekit",
        "environment": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "threads": threads,
        },
        "timing_context": timing_context(),
        "runs": runs,
    }


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def _drops(runs: list[dict[str, Any]], entries: list[Any]) -> list[float]:
    """Each seed's drop against its own control, in points."""
    return [
        100 * (r["control_accuracy"] - e["accuracy"]) for r, e in zip(runs, entries, strict=True)
    ]


def summarise(cfg: dict[str, Any], pk: dict[str, Any], tpr: dict[str, Any] | None) -> list[str]:
    """The markdown tables: one row per (arch, ratio, side), means over seeds; then per
    prunekit variant its drop minus Torch-Pruning's, with the standard error (the two
    sides' seed variances over their seed counts) and whether the kept widths matched."""
    lines = [
        "| arch | ratio | side | dense acc. | control acc. | pruned acc. | drop vs control "
        "(points, mean ± sd) | params (x fewer) | MACs (x fewer) | batch-1 speed-up | "
        "batch-32 speed-up |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    gaps = [
        "",
        "| arch | ratio | prunekit variant | drop gap vs Torch-Pruning (points, + = prunekit "
        "worse) | its standard error | same kept widths |",
        "|---|---:|---|---:|---:|---|",
    ]

    def row(
        arch: str, ratio: float, side: str, runs: list[dict[str, Any]], entries: list[Any]
    ) -> str:
        pairs = list(zip(runs, entries, strict=True))
        drops = _drops(runs, entries)
        sd = statistics.stdev(drops) if len(drops) > 1 else 0.0
        p_red = _mean([r["dense_cost"]["params"] / e["cost"]["params"] for r, e in pairs])
        m_red = _mean([r["dense_cost"]["macs"] / e["cost"]["macs"] for r, e in pairs])
        dense = 100 * _mean([r["dense_accuracy"] for r in runs])
        control = 100 * _mean([r["control_accuracy"] for r in runs])
        pruned = 100 * _mean([e["accuracy"] for e in entries])

        def sp(b: str) -> str:
            v = [e["speed"][b]["speedup"] for e in entries if "speed" in e]
            return f"{_mean(v):.2f}x" if v else "—"

        return (
            f"| {arch} | {ratio:g} | {side} | {dense:.2f}% | {control:.2f}% | {pruned:.2f}% "
            f"| {_mean(drops):.2f} ± {sd:.2f} | {entries[0]['cost']['params']:,} ({p_red:.2f}x) "
            f"| {entries[0]['cost']['macs']:,} ({m_red:.2f}x) | {sp('batch1')} | {sp('batch32')} |"
        )

    def gap(
        arch: str, ratio: float, variant: str, pk_side: tuple[list[Any], list[Any]],
        tp_side: tuple[list[Any], list[Any]],
    ) -> str:  # fmt: skip
        pk_drops, tp_drops = _drops(*pk_side), _drops(*tp_side)
        se = math.sqrt(
            sum(
                statistics.variance(d) / len(d) if len(d) > 1 else 0.0 for d in (pk_drops, tp_drops)
            )
        )
        same = all(p["widths"] == t["widths"] for p in pk_side[1] for t in tp_side[1])
        return (
            f"| {arch} | {ratio:g} | `{variant}` | {_mean(pk_drops) - _mean(tp_drops):+.2f} "
            f"| {se:.2f} | {'yes' if same else 'no'} |"
        )

    for arch in cfg["archs"]:
        for ratio in cfg["ratios"]:
            key = str(ratio)
            tp_runs = [r for r in (tpr or {}).get("runs", []) if r["arch"] == arch]
            tp_side = (tp_runs, [r["ratios"][key] for r in tp_runs])
            pk_runs = [r for r in pk["runs"] if r["arch"] == arch]
            for variant in cfg["variants"]:
                with_it = [r for r in pk_runs if key in r["variants"].get(variant, {})]
                entries = [r["variants"][variant][key] for r in with_it]
                if entries:
                    lines.append(row(arch, ratio, f"prunekit `{variant}`", with_it, entries))
                    if tp_side[1]:
                        gaps.append(gap(arch, ratio, variant, (with_it, entries), tp_side))
            if tp_side[1]:
                lines.append(row(arch, ratio, "Torch-Pruning", *tp_side))
    return lines + (gaps if len(gaps) > 3 else [])


def merge(paths: list[Path], out: Path | None) -> int:
    """One table from raw files of runs split by architecture or seed (same recipe)."""
    parts = [json.loads(p.read_text()) for p in paths]
    cfg = dict(parts[0]["config"])
    for key in ("archs", "seeds", "ratios", "variants"):
        cfg[key] = list(dict.fromkeys(v for p in parts for v in p["config"][key]))
    pk = {"runs": [r for p in parts for r in p["prunekit"]["runs"]]}
    tp_runs = [r for p in parts if p["torch_pruning"] for r in p["torch_pruning"]["runs"]]
    tpr = {"runs": tp_runs} if tp_runs else None
    # a variant a part did not run is left out of that part's rows
    for r in pk["runs"]:
        for v in cfg["variants"]:
            r["variants"].setdefault(v, {})
    table = summarise(cfg, pk, tpr)
    if out is not None:
        merged = {
            "benchmark": "compare_torch_pruning",
            "merged_from": [str(p) for p in paths],
            "commands": [p.get("command") for p in parts],
            "config": cfg,
            "prunekit": pk,
            "torch_pruning": tpr,
            "table": table,
        }
        out.write_text(json.dumps(merged, indent=1))
    print("\n".join(table))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--ratios", nargs="+", type=float)
    parser.add_argument("--variants", nargs="+", default=["filter"], choices=sorted(VARIANTS))
    parser.add_argument("--n-train", type=int)
    parser.add_argument("--n-test", type=int)
    parser.add_argument("--dense-epochs", type=int)
    parser.add_argument("--ft-epochs", type=int)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-speed", action="store_true", help="skip the latency timings")
    parser.add_argument("--no-torch", action="store_true", help="prunekit side only")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        help="raw result files of runs split by --archs/--seeds: print (and with --out "
        "write) their combined table, measuring nothing",
    )
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    cfg = config(args)
    out = args.out or ((WORK if args.quick else RAW) / "compare_torch_pruning.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"config: {json.dumps(cfg)}", flush=True)

    torch_proc = None
    tag = "_".join([*cfg["archs"], *map(str, cfg["seeds"])]) + ("_quick" if args.quick else "")
    torch_out = WORK / f"torch_side_{tag}.json"
    if not args.no_torch:
        if not TORCH_PYTHON.exists():
            print("bench/.venv-torch is missing: run `make bench-torch-venv`", file=sys.stderr)
            return 2
        cfg_path = WORK / f"torch_side_config_{tag}.json"
        cfg_path.write_text(json.dumps(cfg))
        torch_out.unlink(missing_ok=True)
        torch_proc = subprocess.Popen(
            [
                str(TORCH_PYTHON),
                "-m",
                "bench.torchprune.run_torch",
                "--config",
                str(cfg_path),
                "--out",
                str(torch_out),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    started = time.perf_counter()
    pk = prunekit_side(cfg)
    tpr = None
    if torch_proc is not None:
        rc = torch_proc.wait()
        if rc != 0:
            print(f"Torch-Pruning side failed (exit {rc})", file=sys.stderr)
        else:
            tpr = json.loads(torch_out.read_text())
    table = summarise(cfg, pk, tpr)
    result = {
        "benchmark": "compare_torch_pruning",
        "command": "python -m bench.compare_torch_pruning " + " ".join(argv or sys.argv[1:]),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "config": cfg,
        "prunekit": pk,
        "torch_pruning": tpr,
        "table": table,
    }
    out.write_text(json.dumps(result, indent=1))
    print("\n".join(table))
    print(f"raw results: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0 if tpr is not None or args.no_torch else 1


if __name__ == "__main__":
    raise SystemExit(main())

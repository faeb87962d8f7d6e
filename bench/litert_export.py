"""Deployable gains: LiteRT exports of a pruned LeNet-300-100, timed on the LiteRT interpreter.

The dense LeNet-300-100 (MNIST, the suite's cached baseline) is pruned by the service's own
engine (``prunekit.pipeline.prune``, exactly what a job runs) to 90% in three layouts, each
fine-tuned with the same budget and exported as the job spec's ``exports`` asks:

* ``unstructured``: one-shot global magnitude, single weights (what tfmot gives);
* ``1x4 blocks``: ``block: "litert_float32"``: whole 1x4 blocks along each kernel's input
  dimension, the layout XNNPACK's sparse fully-connected kernels run in float32;
* ``int8 preset``: ``block: "litert_int8"``: 1x16 blocks where a kernel's input tiles by 16,
  other kernels left dense (int8 weights stored sparse in smaller blocks fall back to builtin
  kernels slower than dense), exported with full-integer quantisation calibrated on training
  samples.

Every file (the dense float32 and int8 conversions of the original, and each export) is then
timed against the dense float32 file on the LiteRT interpreter, side by side in one run:
interleaved pairs, speed-up = median of per-pair ratios with a bootstrap 95% interval
(``prunekit/metrics/timing.py``), at batch 1 and 32 with one thread and with every core. Each
file's accuracy is its own, computed in the interpreter on the full MNIST test set; the TF
column is the pruned Keras model before conversion.

Run: ``python -m bench.run_all --only litert_export [--quick]`` (quick: 2 fine-tune epochs on
10k training images, shorter timing).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # after the log-level env var, which TF reads at import
import numpy as np

from bench import data as bench_data
from bench.common import bench_command, write_result
from bench.config import default_config
from bench.train_dense import train_dense
from prunekit.data import Dataset, Split
from prunekit.litert.convert import DENSE_FLOAT, convert
from prunekit.metrics.litert import litert_speedups, run, thread_label
from prunekit.metrics.timing import TimingConfig
from prunekit.model import load_model
from prunekit.pipeline import prune
from prunekit.spec import PruneSpec

SUITE = "litert_export"
SPARSITY = 0.9
FINE_TUNE = {"epochs": 10, "batch_size": 128, "learning_rate": 1e-2, "schedule": "cosine"}
# (label, strategy parameters, export format)
VARIANTS: list[tuple[str, dict[str, Any], str]] = [
    ("90% unstructured", {"name": "magnitude", "sparsity": SPARSITY}, "tflite"),
    ("90% in 1x4 blocks", {"name": "magnitude", "sparsity": SPARSITY, "block": "litert_float32"},
     "tflite"),
    ("90% unstructured, int8", {"name": "magnitude", "sparsity": SPARSITY}, "tflite_int8"),
    ("90% int8 preset (1x16)",
     {"name": "magnitude", "sparsity": SPARSITY, "block": "litert_int8"}, "tflite_int8"),
]  # fmt: skip
BENCH_TIMING = TimingConfig(warmup=5, min_pairs=21, max_pairs=2000, budget_s=6.0,
                            target_rel_halfwidth=0.02)  # fmt: skip
QUICK_TIMING = TimingConfig(warmup=3, min_pairs=11, max_pairs=500, budget_s=1.5)


def _accuracy(content: bytes, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(run(content, x), -1) == y))


def _tf_accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(model.predict(x, batch_size=1024, verbose=0), -1) == y))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    cfg = default_config(
        "lenet_300_100", **({"train_subsample": 10_000} if args.quick else {})
    )
    timing = QUICK_TIMING if args.quick else BENCH_TIMING
    baseline = train_dense(default_config("lenet_300_100"))  # cached: the suites' shared one
    split = bench_data.load_for(cfg)
    dataset = Dataset(
        train=Split(split.x_train, split.y_train),
        val=Split(split.x_val, split.y_val),
        test=Split(split.x_test, split.y_test),
    )
    fine_tune = {**FINE_TUNE, "epochs": 2 if args.quick else FINE_TUNE["epochs"]}
    calibration = split.x_train[:256]

    dense_model = keras.saving.load_model(baseline.keras_path, safe_mode=True)
    dense_acc = _tf_accuracy(dense_model, split.x_test, split.y_test)
    dense_loaded = load_model(baseline.keras_path, "keras")
    files: dict[str, bytes] = {}
    shape = list(split.x_train.shape[1:])
    for label, fmt in (("dense float32", DENSE_FLOAT), ("dense int8", "tflite_int8")):
        conv = convert(dense_loaded, fmt, shape, calibration=calibration)
        if conv.content is None:
            raise RuntimeError(f"{label}: conversion failed: {conv.error}")
        files[label] = conv.content
    rows: list[dict[str, Any]] = [
        {"variant": "dense float32", "tf_accuracy": dense_acc, "sparsity": 0.0},
        {"variant": "dense int8", "tf_accuracy": dense_acc, "sparsity": 0.0},
    ]
    jobs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, strategy, fmt in VARIANTS:
            spec = PruneSpec(strategy=strategy, fine_tune=fine_tune, seed=0, exports=[fmt])
            started = time.perf_counter()
            result = prune(baseline.keras_path, "keras", spec, Path(tmp) / label, data=dataset)
            pruned = keras.saving.load_model(result.model_path, safe_mode=True)
            export = result.metrics["exports"][fmt]
            if fmt not in result.exports:
                raise RuntimeError(f"{label}: the {fmt} export failed: {export}")
            files[label] = result.exports[fmt].read_bytes()
            rows.append(
                {
                    "variant": label,
                    "tf_accuracy": _tf_accuracy(pruned, split.x_test, split.y_test),
                    "sparsity": result.metrics["sparsity"],
                    "job_s": round(time.perf_counter() - started, 1),
                    "kernels": export.get("kernels"),
                }
            )
            jobs[label] = {
                "spec": spec.model_dump(mode="json"),
                "exports": result.metrics["exports"],
                "speedup": result.metrics.get("speedup"),
                "notes": result.notes,
            }

    reference = files["dense float32"]
    for row in rows:
        content = files[row["variant"]]
        row["file_bytes"] = len(content)
        row["smaller_x"] = round(len(reference) / len(content), 2)
        row["litert_accuracy"] = _accuracy(content, split.x_test, split.y_test)
        if row["variant"] == "dense float32":
            continue
        speedups = litert_speedups(reference, content, cfg=timing)
        for threads, per_batch in speedups.items():
            for batch, s in per_batch.items():
                key = f"{batch}_{threads}"
                row[f"speedup_{key}"] = round(s.median, 3)
                row[f"ci95_{key}"] = [round(v, 3) for v in s.ci95]
                row[f"runs_{key}"] = s.runs
                row[f"loaded_{key}"] = s.context["loaded"]
                row.setdefault("load_avg", []).append(s.context["load_avg_1m_end"])
    one = thread_label(1)
    headline = []
    for row in rows[1:]:
        key = f"batch_1_{one}"
        headline.append(
            {
                "metric": f"{row['variant']}: LiteRT batch-1 speed-up over dense float32 "
                f"(1 thread), 95% CI {row[f'ci95_{key}']}; file {row['smaller_x']}x smaller; "
                f"accuracy {100 * row['litert_accuracy']:.2f}% "
                f"(TF {100 * row['tf_accuracy']:.2f}%)",
                "value": row[f"speedup_{key}"],
                "unit": "x",
            }
        )
    write_result(
        SUITE,
        rows,
        bench_command(SUITE, args.quick),
        quick=args.quick,
        headline=headline,
        columns=["variant", "sparsity", "file_bytes", "smaller_x", "litert_accuracy",
                 "tf_accuracy", f"speedup_batch_1_{one}", f"ci95_batch_1_{one}",
                 f"speedup_batch_32_{one}", f"ci95_batch_32_{one}"],
        notes=[
            f"dense LeNet-300-100 test accuracy {100 * dense_acc:.2f}% (TF); fine-tune "
            f"{fine_tune}; speed-ups are interleaved against the dense float32 file on the "
            "same interpreter (median of per-pair ratios, bootstrap 95% CI)",
        ],
        extra={"jobs": jobs, "timing": vars(timing)},
    )  # fmt: skip
    for row in rows:
        print({k: v for k, v in row.items() if k != "kernels"})


if __name__ == "__main__":
    main()

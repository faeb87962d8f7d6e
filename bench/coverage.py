"""Coverage: which `keras.applications` models prunekit prunes, in which format, with what.

Every constructor in ``keras.applications`` is built with random weights (``weights=None``,
``classes=10``, the smallest input its constructor accepts), saved as a ``.keras`` file and
as a Keras 3 ``model.export`` SavedModel, and pruned through the engine's front door
(:func:`prunekit.pipeline.prune`) with

* ``magnitude`` at 80% (unstructured),
* ``nm`` 2:4 (semi-structured),
* ``filter`` at 30%, L1, uniform (structured: channels removed).

Before saving, 30% of the channels of every prunable channel group are set to exactly zero
(every weight slice of the channel, producer and consumers), so the L1 ranking removes
precisely those channels. Each result is reloaded with ``safe_mode`` (``load_model``) and:

* its output shape must equal the original's;
* unstructured (``magnitude``, ``nm``): the pruned weights may differ from the original only
  where they are zero, and the original with that mask applied (an identity otherwise) must
  give the reloaded model's output;
* ``filter``: the model must have fewer parameters and, having lost only zero channels,
  give the original's output (within 1e-4 relative to the output scale).

The saved original is loaded once per format and shared by its three runs: the unstructured
checks compare with it (its masked weights are put back after each), and its size and FLOPs
are passed to every job as ``before`` (as the service does from the upload's inspection), so
they are measured once, not three times. A row's ``seconds`` is its job and checks.

A run is ``ok``, ``refused`` (the engine raised an error the user can act on: its reason is
quoted; ``filter`` on a generic SavedModel is refused by design, ``keras_graph_required``:
there is no layer graph to rebuild, and the table says so) or ``failed`` (anything else, or
a check that did not hold). Each model runs in its own process with a time limit; results
go to ``bench/results/raw/coverage.json`` as they come (``--resume`` skips what is there) and
the table to ``docs/coverage.md``.

    .venv/bin/python -m bench.coverage                       # everything (hours on 2 cores)
    .venv/bin/python -m bench.coverage --only MobileNetV3Small,ResNet50 --formats keras
    .venv/bin/python -m bench.coverage --budget-min 60 --resume  # stop starting models after 1 h
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
RAW = REPO / "bench" / "results" / "raw" / "coverage.json"
DOC = REPO / "docs" / "coverage.md"
FORMATS = ("keras", "saved_model")
STRATEGIES: dict[str, dict[str, Any]] = {
    "magnitude": {"name": "magnitude", "sparsity": 0.8},
    "nm": {"name": "nm", "n": 2, "m": 4},
    "filter": {"name": "filter", "ratio": 0.3, "criterion": "l1", "scope": "uniform"},
}
ZERO_FRACTION = 0.3  # channels zeroed per prunable group before `filter` removes 30%
UNSTRUCTURED_RTOL = 1e-5
STRUCTURED_RTOL = 1e-4
# refusals that are the engine's design, not a gap: the table says so instead of counting
# them as misses (a generic SavedModel has traced functions and no layer graph to rebuild)
BY_DESIGN = {
    "keras_graph_required": "refused by design (no layer graph)",
}
# smallest input side each constructor accepts with weights=None (default: 32)
MIN_SIDE = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}
# approximate parameter counts at classes=10 decide the order (small first), so a run
# that stops on its time budget has covered the most constructors
ORDER_HINT = {
    "ConvNeXtXLarge": 348,
    "ConvNeXtLarge": 196,
    "VGG19": 139,
    "VGG16": 134,
    "EfficientNetV2L": 117,
    "ConvNeXtBase": 88,
    "NASNetLarge": 85,
    "EfficientNetB7": 64,
    "ResNet152V2": 58,
    "ResNet152": 58,
    "InceptionResNetV2": 54,
    "EfficientNetV2M": 53,
    "ConvNeXtSmall": 50,
    "ResNet101V2": 43,
    "ResNet101": 43,
    "EfficientNetB6": 41,
    "EfficientNetB5": 28,
    "ConvNeXtTiny": 28,
    "ResNet50": 24,
    "ResNet50V2": 24,
    "InceptionV3": 22,
    "Xception": 21,
    "EfficientNetV2S": 20,
    "DenseNet201": 18,
    "EfficientNetB4": 17,
    "EfficientNetV2B3": 13,
    "DenseNet169": 13,
    "EfficientNetB3": 11,
    "EfficientNetV2B2": 9,
    "EfficientNetB2": 8,
    "DenseNet121": 7,
    "EfficientNetV2B1": 7,
    "EfficientNetB1": 7,
    "EfficientNetV2B0": 6,
    "EfficientNetB0": 4,
    "NASNetMobile": 4,
    "MobileNetV3Large": 3,
    "MobileNet": 3,
    "MobileNetV2": 2.3,
    "MobileNetV3Small": 1,
}


@dataclass
class Row:
    model: str
    format: str
    strategy: str
    status: str  # ok | refused | failed | not_run
    reason: str = ""
    seconds: float = 0.0
    params: int | None = None
    params_after: int | None = None
    sparsity: float | None = None
    max_rel_diff: float | None = None


def constructors() -> list[str]:
    import keras

    apps = keras.applications
    names = [n for n in dir(apps) if n[:1].isupper() and callable(getattr(apps, n))]
    return sorted(names, key=lambda n: (ORDER_HINT.get(n, 10_000), n))


def build(name: str) -> Any:
    import keras

    side = MIN_SIDE.get(name, 32)
    ctor: Callable[..., Any] = getattr(keras.applications, name)
    return ctor(input_shape=(side, side, 3), weights=None, classes=10)


def zero_channels(model: Any, fraction: float = ZERO_FRACTION) -> int:
    """Set ``fraction`` of the channels of every prunable group exactly to zero in every
    weight slice of the group (producers' filters, biases, BN scale/shift, consumers' input
    slices); returns how many channels. The model computes what it would without them."""
    import numpy as np

    from prunekit.structured import build_dependency_graph

    graph = build_dependency_graph(model)
    rng = np.random.default_rng(1)
    values: dict[tuple[str, int], np.ndarray] = {}
    total = 0
    for grp in graph.prunable_groups:
        drop = rng.permutation(grp.size)[: int(fraction * grp.size)]
        if len(drop) == 0 or grp.size - len(drop) < 1:
            continue
        total += len(drop)
        for m in grp.members:
            if m.kind not in ("kernel", "bias", "gamma", "beta"):
                continue
            key = (m.layer, m.weight_index)
            if key not in values:
                values[key] = np.array(graph.layers[m.layer].weights[m.weight_index].numpy())
            index: list[Any] = [slice(None)] * values[key].ndim
            index[m.axis] = m.positions[drop].ravel()
            values[key][tuple(index)] = 0.0
    for (layer, i), value in values.items():
        graph.layers[layer].weights[i].assign(value)
    return total


def _rel_diff(a: Any, b: Any) -> float:
    import numpy as np

    scale = max(1.0, float(np.max(np.abs(b))))
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) / scale


def _spec(strategy: str) -> Any:
    from prunekit.spec import Measure, PruneSpec

    # latency is not what this suite checks: a tiny budget skips the timing
    return PruneSpec(
        strategy=dict(STRATEGIES[strategy]),
        seed=0,
        measure=Measure(latency_batch_sizes=[1], latency_budget_s=0.01),
    )


def check_unstructured(
    original: Any, fmt: str, result: Any, x: Any, ref_shape: tuple[int, ...]
) -> Row:
    """Reloaded output shape; pruned weights equal the original's where non-zero; the
    original with that mask applied gives the reloaded model's output.

    ``original``: the untouched original, loaded from the file the job pruned (one load per
    format, shared by the strategies): its masked weights are put back before returning."""
    import numpy as np

    from prunekit.model import load_model

    pruned = load_model(result.model_path, fmt)
    out = pruned.predict(x)
    row = Row("", fmt, "", "ok", sparsity=result.metrics.get("sparsity"))
    row.params = result.metrics["parameters"]["total_before"]
    row.params_after = result.metrics["parameters"]["total"]
    if tuple(out.shape) != ref_shape:
        return _fail(row, f"output shape {tuple(out.shape)} != original {ref_shape}")
    before = original.weights()
    by_name = {w.name: w for w in before}
    pruned_weights = pruned.weights()
    if len(pruned_weights) != len(by_name):
        return _fail(row, f"{len(pruned_weights)} weights after, {len(by_name)} before")
    # unnamed variables (ConvNeXt's layer scale) get a process-wide counter in their name,
    # different on every load: then weights pair up by position, as Keras orders them
    named = all(w.name in by_name for w in pruned_weights)
    masked: list[tuple[Any, Any]] = []  # (original weight, its untouched value)
    try:
        for i, w in enumerate(pruned_weights):
            o = by_name.get(w.name) if named else before[i]
            if o is None or o.shape != w.shape:
                return _fail(row, f"weight {w.name} not in the original with shape {w.shape}")
            pv, ov = w.numpy(), o.numpy()
            keep = pv != 0
            if not np.array_equal(pv[keep], ov[keep]):
                return _fail(row, f"weight {w.name} changed where it was not pruned")
            if not keep.all():
                masked.append((o, ov))
                o.assign(ov * keep)
        row.max_rel_diff = _rel_diff(out, original.predict(x))
    finally:
        for o, ov in masked:  # the next strategy's check needs the untouched original
            o.assign(ov)
    if row.max_rel_diff > UNSTRUCTURED_RTOL:
        return _fail(row, f"masked original differs by {row.max_rel_diff:.2e} (relative)")
    return row


def check_structured(result: Any, fmt: str, x: Any, ref: Any) -> Row:
    """Reloaded output shape, fewer parameters, and the original's output (only zero
    channels were removed)."""
    from prunekit.model import load_model

    pruned = load_model(result.model_path, fmt)
    out = pruned.predict(x)
    params = result.metrics["parameters"]
    row = Row("", fmt, "", "ok", params=params["total_before"], params_after=params["total"])
    if tuple(out.shape) != tuple(ref.shape):
        return _fail(row, f"output shape {tuple(out.shape)} != original {tuple(ref.shape)}")
    if params["total"] >= params["total_before"]:
        return _fail(row, "no channel removed (parameters did not shrink)")
    row.max_rel_diff = _rel_diff(out, ref)
    if row.max_rel_diff > STRUCTURED_RTOL:
        return _fail(row, f"output differs by {row.max_rel_diff:.2e} after removing zero channels")
    return row


def _fail(row: Row, reason: str) -> Row:
    row.status, row.reason = "failed", reason
    return row


def _first_line(exc: BaseException, limit: int = 1000) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:limit]


def _no_copy_timing() -> Any:
    """Latency rules that never load a second copy of the original (no memory for it):
    the comparison is timed sequentially, and with :func:`_spec`'s tiny budget skipped."""
    from prunekit.speedup import SpeedupConfig

    return SpeedupConfig(available_memory=lambda: 0)


def run_one(
    name: str,
    formats: Sequence[str],
    strategies: Sequence[str],
    work: Path,
    builder: Callable[[], Any] | None = None,
) -> list[Row]:
    """Every (format, strategy) run of one constructor, in this process (``builder``: a
    smaller variant of it, as the fast test sample uses)."""
    import keras
    import numpy as np

    from prunekit.errors import PrunekitError
    from prunekit.inspection import before_figures
    from prunekit.model import load_model
    from prunekit.pipeline import prune

    keras.utils.set_random_seed(0)
    no_copy = _no_copy_timing()
    started = time.perf_counter()
    try:
        model = builder() if builder is not None else build(name)
        zero_note = ""
        try:
            zero_channels(model)
        except Exception as exc:  # the graph is filter's business: its run will say
            zero_note = f"channels not zeroed ({type(exc).__name__}: {_first_line(exc)}); "
        side = int(model.inputs[0].shape[1])
        x = np.random.default_rng(2).uniform(0, 255, size=(2, side, side, 3)).astype("float32")
        ref = np.asarray(model(x, training=False))
        sources = {}
        if "keras" in formats:
            sources["keras"] = work / "model.keras"
            model.save(sources["keras"])
        if "saved_model" in formats:
            sources["saved_model"] = work / "saved_model"
            model.export(str(sources["saved_model"]), verbose=False)
    except Exception as exc:
        reason = f"could not build/save: {type(exc).__name__}: {_first_line(exc)}"
        return [
            Row(name, f, s, "failed", reason, time.perf_counter() - started)
            for f in formats
            for s in strategies
        ]
    del model  # the saved files are what the jobs and the checks read
    rows = []
    for fmt, source in sources.items():
        try:
            # the untouched original, loaded once per format: what the unstructured checks
            # compare with, and its size and FLOPs, passed to every job as the service does
            # (`before`, from the upload's inspection) instead of measured three times
            original = load_model(source, fmt)
            before = before_figures(original, source)
        except Exception as exc:
            reason = f"could not load the saved original: {type(exc).__name__}: {_first_line(exc)}"
            for strategy in strategies:
                rows.append(Row(name, fmt, strategy, "failed", reason))
                print(json.dumps(asdict(rows[-1])), flush=True)
            continue
        for strategy in strategies:
            t0 = time.perf_counter()
            out_dir = work / f"{fmt}-{strategy}"
            try:
                result = prune(source, fmt, _spec(strategy), out_dir, before=before, timing=no_copy)
                if strategy == "filter":
                    row = check_structured(result, fmt, x, ref)
                else:
                    row = check_unstructured(original, fmt, result, x, tuple(ref.shape))
                if row.status == "failed" and strategy == "filter" and zero_note:
                    row.reason = zero_note + row.reason
            except PrunekitError as exc:
                row = Row("", fmt, strategy, "refused", f"{exc.reason}: {_first_line(exc)}")
            except Exception as exc:
                row = Row("", fmt, strategy, "failed", f"{type(exc).__name__}: {_first_line(exc)}")
            row.model, row.format, row.strategy = name, fmt, strategy
            row.seconds = round(time.perf_counter() - t0, 1)
            rows.append(row)
            print(json.dumps(asdict(row)), flush=True)
        del original
    return rows


# ---------------------------------------------------------------------------- driver
def _load_raw(path: Path) -> dict[str, Any]:
    if path.exists():
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    return {"rows": [], "runs": []}


def _key(r: dict[str, Any]) -> tuple[str, str, str]:
    return (r["model"], r["format"], r["strategy"])


def _child(
    name: str, formats: Sequence[str], strategies: Sequence[str], timeout: float
) -> list[dict[str, Any]]:
    """Run one constructor in a fresh, niced process; rows it printed, then failures for
    the runs it never reached (timeout, crash)."""
    with tempfile.TemporaryDirectory(prefix="prunekit-coverage-") as tmp:
        cmd = [
            sys.executable, "-m", "bench.coverage", "--child", name,
            "--formats", ",".join(formats), "--strategies", ",".join(strategies),
            "--workdir", tmp,
        ]  # fmt: skip
        rows: list[dict[str, Any]] = []
        why = ""
        try:
            proc = subprocess.run(
                cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
            )
            stdout, code = proc.stdout, proc.returncode
            if code != 0:
                tail = (proc.stderr or "").strip().splitlines()[-1:] or [""]
                why = f"process exited {code}: {tail[0][:200]}"
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout or ""
            stdout = out.decode() if isinstance(out, bytes) else out
            why = f"timeout: over the suite's {timeout:.0f} s per-model limit (not an engine error)"
        for line in stdout.splitlines():
            if line.startswith("{"):
                rows.append(json.loads(line))
        done = {_key(r) for r in rows}
        for f in formats:
            for s in strategies:
                if (name, f, s) not in done:
                    status = "timeout" if why.startswith("timeout") else "failed"
                    rows.append(asdict(Row(name, f, s, status, why or "no result")))
        return rows


def render(raw: dict[str, Any], all_models: Sequence[str]) -> str:
    rows = {_key(r): r for r in raw["rows"]}
    lines = [
        "# Coverage: keras.applications",
        "",
        "Generated by `.venv/bin/python -m bench.coverage` (see the module docstring for the",
        "checks); do not edit by hand. Every constructor is built with random weights",
        "(`weights=None`, `classes=10`, input 32x32, 71x71 for Xception, 75x75 for the Inception",
        "models), saved as `.keras` and as a Keras 3 `model.export` SavedModel, pruned through",
        "`prunekit.pipeline.prune` and reloaded with `safe_mode`. `magnitude` 80% and `nm` 2:4:",
        "the original with the pruned model's zeros applied must give the reloaded model's",
        f"output (relative {UNSTRUCTURED_RTOL:g}). `filter` 30% (L1, uniform): 30% of the",
        "channels of every prunable group are set to exactly zero before saving; the reloaded",
        f"model must be smaller and give the original's output (relative {STRUCTURED_RTOL:g}).",
        "",
    ]
    strategies = list(STRATEGIES)
    not_run: dict[str, list[str]] = {}
    for fmt in FORMATS:
        counts = []
        for s in strategies:
            ran = [rows[(m, fmt, s)] for m in all_models if (m, fmt, s) in rows]
            ok = sum(r["status"] == "ok" for r in ran)
            late = sum(r["status"] == "timeout" for r in ran)
            refused = sum(_by_design(r) is not None for r in ran)
            if ran and refused == len(ran):
                counts.append(f"`{s}` refused by design on all {refused} run (no layer graph)")
                continue
            text = f"`{s}` {ok}/{len(ran)} ok ({ok / len(all_models):.0%} of all)"
            extra = [f"{refused} refused by design"] if refused else []
            extra += [f"{late} over the time limit"] if late else []
            counts.append(text + (f", {', '.join(extra)}" if extra else ""))
        lines.append(f"- **{fmt}**: " + ", ".join(counts) + f" (of {len(all_models)} constructors)")
        not_run[fmt] = [m for m in all_models if not any((m, fmt, s) in rows for s in strategies)]
    runs = raw.get("runs", [])
    if runs:  # every run that wrote rows (1-min load average: 2 cores shared with other work)
        lines.append(
            "- runs: "
            + "; ".join(
                f"{r.get('finished', '?')}, {r.get('models', '?')} models"
                + (f" as {r['formats']}" if r.get("formats") else "")
                + f" in {r.get('minutes', '?')} min, load average {r.get('load', '?')} at its end"
                for r in runs
            )
        )
    lines += ["", "| model | format | " + " | ".join(strategies) + " |"]
    lines.append("|---|---|" + "---|" * len(strategies))
    misses: list[str] = []
    design: dict[str, list[dict[str, Any]]] = {}
    for m in all_models:
        for fmt in FORMATS:
            cells = []
            for s in strategies:
                r = rows.get((m, fmt, s))
                if r is None:
                    cells.append("not run")
                    continue
                cell = r["status"]
                if r["status"] == "ok" and r.get("params_after") and s == "filter":
                    cell += f" ({r['params'] / r['params_after']:.2f}x fewer params)"
                code = _by_design(r)
                if code is not None:
                    cell = BY_DESIGN[code]
                    design.setdefault(code, []).append(r)
                elif r["status"] != "ok":
                    misses.append(f"- {m}, {fmt}, `{s}`: **{r['status']}**: {r['reason']}")
                cells.append(cell)
            if all(c == "not run" for c in cells):
                continue
            lines.append(f"| {m} | {fmt} | " + " | ".join(cells) + " |")
    for fmt, models in not_run.items():
        if models:
            misses.append(f"- not run as {fmt} (the suite's time budget): {', '.join(models)}")
    lines += ["", "## Every miss and its reason", ""]
    lines += misses or ["None."]
    for code, group in design.items():
        # the engine's whole message, once (the longest recorded: older rows cut it short)
        reason = max((r["reason"] for r in group), key=len)
        which = sorted({f"{r['model']} ({r['format']}, `{r['strategy']}`)" for r in group})
        lines += [
            "",
            f"### Refused by design: `{code}`",
            "",
            f"Not a miss: the engine refuses these runs on purpose, with this reason: {reason}",
            "",
            f"Runs ({len(which)}): " + ", ".join(which),
        ]
    lines += [
        "",
        "## Beyond keras.applications",
        "",
        "| model kind | unstructured (`magnitude`, `nm`) | structured (`filter`, `slimming`) |",
        "|---|---|---|",
        "| generic SavedModel (Keras 3 `model.export`, `tf.saved_model.save`) | ok | refused: "
        "`keras_graph_required` (traced functions, no layer graph) |",
        "| SavedModel written by prunekit or tf_keras | ok | ok |",
        "| subclassed `keras.Model` with `get_config` (.keras), its module allow-listed in "
        "`PRUNEKIT_CUSTOM_OBJECT_MODULES` | ok (`tests/unit/test_custom_objects.py`) | refused: "
        "`untraceable_graph`, naming the class and the Functional rewrite |",
        "| custom class whose module is not allow-listed | refused: `custom_class_not_allowed` "
        "| same |",
        "| Transformer encoder (`MultiHeadAttention`, FFN, LayerNorm) | ok | heads and FFN "
        "width ([transformers.md](transformers.md)); the residual width is kept |",
        "| `Conv1D`, `LSTM`/`GRU` (kernel, recurrent_kernel) | ok "
        "(`tests/unit/test_sequence_layers.py`) | Conv1D channels ok; recurrent layers block "
        "their groups |",
        "| `Embedding` | kept dense, named in a job note | kept |",
        "",
        "keras-hub 0.32.0 would install here without changing TensorFlow 2.21 / Keras 3.15",
        "(`pip install --dry-run`: it adds tensorflow-text 2.21.1, tokenizers, sentencepiece,",
        "huggingface_hub, kagglehub), but its presets are downloaded from Kaggle/Hugging Face",
        "and this machine has no access to them; it is not a dependency and its backbones are",
        "not in this table.",
        "",
    ]
    return "\n".join(lines)


def _by_design(row: dict[str, Any]) -> str | None:
    """The :data:`BY_DESIGN` code of a refusal the engine makes on purpose, else None."""
    if row["status"] != "refused":
        return None
    code = row["reason"].split(":", 1)[0]
    return code if code in BY_DESIGN else None


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated constructor names")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--budget-min", type=float, default=0.0, help="start no model after this")
    ap.add_argument("--per-model-s", type=float, default=1800.0)
    ap.add_argument("--resume", action="store_true", help="skip runs already in the raw file")
    ap.add_argument("--retry-failed", action="store_true", help="with --resume: redo failures")
    ap.add_argument("--raw", type=Path, default=RAW)
    ap.add_argument("--doc", type=Path, default=DOC)
    ap.add_argument(
        "--merge",
        default="",
        help="comma-separated raw files of other runs (--raw elsewhere): their rows replace "
        "these ones, the table is written again, nothing runs",
    )
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]
    strategies = [s for s in args.strategies.split(",") if s]
    if args.child:
        run_one(args.child, formats, strategies, args.workdir)
        return

    all_models = constructors()
    if args.merge:
        raw = _load_raw(args.raw)
        for other in args.merge.split(","):
            new = _load_raw(Path(other))["rows"]
            keys = {_key(r) for r in new}
            raw["rows"] = [r for r in raw["rows"] if _key(r) not in keys] + new
        _write(args, raw, all_models)
        return
    # --only runs in the order given; by default the smallest models come first
    models = [m for m in args.only.split(",") if m in all_models] if args.only else all_models
    raw = _load_raw(args.raw) if args.resume or args.raw.exists() else {"rows": [], "runs": []}
    if not args.resume:
        wanted = {(m, f, s) for m in models for f in formats for s in strategies}
        raw["rows"] = [r for r in raw["rows"] if _key(r) not in wanted]
    done = {_key(r) for r in raw["rows"] if not (args.retry_failed and r["status"] == "failed")}
    started = time.time()
    ran = 0
    for m in models:
        todo_f = [f for f in formats if any((m, f, s) not in done for s in strategies)]
        if not todo_f:
            continue
        if args.budget_min and time.time() - started > args.budget_min * 60:
            print(f"time budget spent: {m} and later not started", flush=True)
            break
        print(f"{m} ...", flush=True)
        new = _child(m, todo_f, strategies, args.per_model_s)
        raw["rows"] = [r for r in raw["rows"] if _key(r) not in {_key(n) for n in new}] + new
        ran += 1
        for r in new:
            print(f"  {r['format']:<11} {r['strategy']:<9} {r['status']:<7} {r['reason'][:120]}")
        _write(args, raw, all_models)
    raw.setdefault("runs", []).append(
        {
            "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "models": ran,
            "minutes": round((time.time() - started) / 60, 1),
            "load": round(os.getloadavg()[0], 1),
            "formats": ",".join(formats),
        }
    )
    _write(args, raw, all_models)


def _write(args: argparse.Namespace, raw: dict[str, Any], all_models: Sequence[str]) -> None:
    args.raw.parent.mkdir(parents=True, exist_ok=True)
    args.raw.write_text(json.dumps(raw, indent=1))
    args.doc.write_text(render(raw, all_models))


if __name__ == "__main__":
    main()

"""A small ViT on MNIST: half its attention heads and half its FFN width removed.

The encoder (pre-LayerNorm, ``--blocks`` blocks of ``MultiHeadAttention`` + GELU FFN) reads
MNIST as ``(28 / --patch)^2`` patches, each with a one-hot position appended (so no custom
layer is needed). It is trained here, pruned with :func:`prunekit.structured.prune_channels`
at ratio 0.5 (the residual stream goes through LayerNorm and is kept, so the prunable groups
are exactly the heads of every attention layer and the inner width of every FFN), then
fine-tuned. Reported: dims, parameters, FLOPs (``model_cost``, attention included, and the
graph's matmul count), the saved ``.keras`` and LiteRT sizes, accuracy on the MNIST test set
(dense, pruned before fine-tuning, after; the pruned LiteRT file's too), and the batch-32
speed-up on four runtimes, each timed in interleaved pairs
(:func:`prunekit.metrics.timing.interleaved_speedup`) with a dense-against-itself control:

- ``tf``: a ``tf.function`` (TF graph executor, oneDNN kernels, TF's default threads);
- ``xla``: the same with ``jit_compile=True``;
- ``litert_1thread`` / ``litert_2threads``: the float32 LiteRT files a job exports (dense
  reference: the original converted plain; pruned: the job's ``tflite`` export) on the
  LiteRT interpreter (XNNPACK), one thread and one per core.

All four are repeated ``--rounds`` times, the runtimes interleaved within a round, with the
load average of each. Also measured once: the pruned model against a model of the same dims
built from scratch (TF; the surgery's own overhead, 1.0 when there is none), and a per-op
profile of one TF run at batch 32 (median op time per layer over traced runs), summed into
the pruned parts (attention, FFN) and the rest (embedding, LayerNorm, residual adds,
pooling, head), which do not shrink.

    python -m bench.transformer_vit                          # d 256, 16 tokens (~10 min)
    python -m bench.transformer_vit --patch 4 --d 128 --heads 4 --ff 512 --blocks 4 \\
        --out bench/results/raw/transformer_vit_p4.json       # 49 tokens of 4x4
    python -m bench.transformer_vit --time-only               # re-time the kept models
    python -m bench.transformer_vit --time-only --tf-threads 1   # TF on one thread

``--time-only`` re-times the two models the training run saved under ``--keep`` and
replaces the result's ``timing`` and ``profile`` (the earlier ones move to
``earlier_timings``); with ``--tf-threads 1`` it times TF and XLA alone on one intra- and
one inter-op thread, into ``timing_tf_1thread`` and ``profile_tf_1thread``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from bench.data import data_dir

REPO = Path(__file__).resolve().parent.parent
RAW = REPO / "bench" / "results" / "raw" / "transformer_vit.json"
KEEP = REPO / "bench" / "work" / "transformer_vit"
BATCH = 32
RUNTIMES = ("tf", "xla", "litert_1thread", "litert_2threads")
PRUNED_PARTS = ("mha_", "ff1_", "ff2_")  # the layers whose work shrinks


def patches(x: np.ndarray, patch: int) -> np.ndarray:
    """(n, 28, 28) uint8 -> (n, T, patch^2 + T) float32, T = (28 / patch)^2: the patches,
    each with a one-hot position."""
    n, side = len(x), 28 // patch
    tokens = side * side
    p = x.reshape(n, side, patch, side, patch).transpose(0, 1, 3, 2, 4)
    p = p.reshape(n, tokens, patch * patch).astype("float32") / 255.0
    pos = np.broadcast_to(np.eye(tokens, dtype="float32"), (n, tokens, tokens))
    return np.concatenate([p, pos], axis=-1)


def vit(d: int, heads: int, ff: int, blocks: int, patch: int, key_dim: int | None = None) -> Any:
    """The encoder; ``heads=0`` and ``ff=0`` leave out attention and FFN (the skeleton: what
    pruning never shrinks, the embedding, LayerNorms, residual adds, pooling and head)."""
    import keras

    tokens = (28 // patch) ** 2
    x_in = keras.Input((tokens, patch * patch + tokens), name="patches")
    x = keras.layers.Dense(d, name="embed")(x_in)
    for i in range(blocks):
        h = keras.layers.LayerNormalization(epsilon=1e-6, name=f"ln1_{i}")(x)
        if heads:
            mha = keras.layers.MultiHeadAttention(
                heads, key_dim=key_dim or d // heads, name=f"mha_{i}"
            )
            h = mha(h, h)
        x = keras.layers.Add(name=f"res1_{i}")([x, h])
        h = keras.layers.LayerNormalization(epsilon=1e-6, name=f"ln2_{i}")(x)
        if ff:
            h = keras.layers.Dense(ff, activation="gelu", name=f"ff1_{i}")(h)
            h = keras.layers.Dense(d, name=f"ff2_{i}")(h)
        x = keras.layers.Add(name=f"res2_{i}")([x, h])
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="ln_out")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(x_in, keras.layers.Dense(10, name="logits")(x), name="vit")


def rebuilt_like(pruned: Any, cfg: dict[str, Any]) -> Any:
    """A model of the pruned one's dims built from scratch (its weights copied in)."""
    heads = {int(layer.num_heads) for layer in pruned.layers if layer.name.startswith("mha_")}
    widths = {int(layer.units) for layer in pruned.layers if layer.name.startswith("ff1_")}
    if len(heads) != 1 or len(widths) != 1:
        raise ValueError(f"uneven pruned dims: heads {heads}, FFN {widths}")
    d, key_dim = int(cfg["d"]), int(cfg["d"]) // int(cfg["heads"])  # head width is kept
    fresh = vit(d, heads.pop(), widths.pop(), int(cfg["blocks"]), int(cfg["patch"]), key_dim)
    fresh.set_weights(pruned.get_weights())
    return fresh


def _compile(model: Any, lr: float, steps: int) -> None:
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(lr, max(1, steps))
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def _accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    logits = np.asarray(model.predict(x, batch_size=256, verbose=0))
    return float(np.mean(np.argmax(logits, axis=1) == y))


def _saved_bytes(model: Any) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.keras"
        model.save(path)
        return path.stat().st_size


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def litert_files(dense: Any, pruned: Any) -> tuple[bytes, bytes]:
    """The dense reference (plain float32) and the pruned ``tflite`` export, as a job
    converts them."""
    from prunekit.litert.convert import DENSE_FLOAT, convert
    from prunekit.model import LoadedModel

    shape = [int(d) for d in dense.input_shape[1:]]
    out = []
    for model, fmt in ((dense, DENSE_FLOAT), (pruned, "tflite")):
        conv = convert(LoadedModel(format="keras", keras_model=model), fmt, shape)
        if conv.content is None:
            raise RuntimeError(f"{fmt}: {conv.error}")
        out.append(conv.content)
    return out[0], out[1]


def _tf_callable(model: Any, x: Any, jit: bool) -> Callable[[], object]:
    import tensorflow as tf

    fn = tf.function(lambda: model(x, training=False), jit_compile=jit, autograph=False)
    return lambda: fn().numpy()


def _sides(
    runtime: str, dense: Any, twin: Any, pruned: Any, files: tuple[bytes, ...], x: Any
) -> tuple[Callable[[], object], Callable[[], object], Callable[[], object]]:
    """(dense, dense again, pruned) callables of one runtime at batch 32."""
    if runtime in ("tf", "xla"):
        jit = runtime == "xla"
        return (
            _tf_callable(dense, x, jit),
            _tf_callable(twin, x, jit),
            _tf_callable(pruned, x, jit),
        )
    from prunekit.metrics.litert import TimedInterpreter

    threads = 1 if runtime == "litert_1thread" else os.cpu_count() or 1
    dense_file, pruned_file = files
    return (
        TimedInterpreter(dense_file, threads, BATCH),
        TimedInterpreter(dense_file, threads, BATCH),
        TimedInterpreter(pruned_file, threads, BATCH),
    )


def measure(
    dense: Any,
    pruned: Any,
    cfg: dict[str, Any],
    x: np.ndarray,
    rounds: int,
    runtimes: tuple[str, ...] = RUNTIMES,
) -> dict[str, Any]:
    """The batch-32 speed-up on every runtime, ``rounds`` times, with controls."""
    import keras
    import tensorflow as tf

    from prunekit.metrics.timing import TimingConfig, interleaved_speedup

    timing = TimingConfig(
        warmup=5, min_pairs=40, max_pairs=400, budget_s=10.0, target_rel_halfwidth=0.02
    )
    xb = tf.constant(x)
    twin = keras.models.clone_model(dense)
    twin.set_weights(dense.get_weights())
    files = litert_files(dense, pruned)
    sides = {rt: _sides(rt, dense, twin, pruned, files, xb) for rt in runtimes}
    out: dict[str, Any] = {"rounds": []}
    for r in range(rounds):
        row: dict[str, Any] = {"load_average_start": _load()}
        for rt in runtimes:
            a, a2, b = sides[rt]
            row[rt] = {
                "pruned": interleaved_speedup(a, b, timing).as_dict(),
                "control": interleaved_speedup(a, a2, timing).as_dict(),
            }
            print(
                f"round {r + 1} {rt}: {row[rt]['pruned']['median']:.2f}x "
                f"(control {row[rt]['control']['median']:.2f}x), load {_load()[0]}",
                flush=True,
            )
        row["load_average_end"] = _load()
        out["rounds"].append(row)
    out["summary"] = {
        rt: {
            "medians": [row[rt]["pruned"]["median"] for row in out["rounds"]],
            "control_medians": [row[rt]["control"]["median"] for row in out["rounds"]],
            "dense_ms": [row[rt]["pruned"]["a"]["median_ms"] for row in out["rounds"]],
            "pruned_ms": [row[rt]["pruned"]["b"]["median_ms"] for row in out["rounds"]],
        }
        for rt in runtimes
    }
    out["skeleton"] = skeleton_bound(dense, pruned, cfg, xb, files, timing, runtimes)
    fresh = rebuilt_like(pruned, cfg)
    out["surgery_overhead_tf"] = interleaved_speedup(
        _tf_callable(fresh, xb, False), _tf_callable(pruned, xb, False), timing
    ).as_dict()
    out["litert_bytes"] = {"dense": len(files[0]), "pruned": len(files[1])}
    out["load_average"] = _load()
    return out


def skeleton_bound(
    dense: Any,
    pruned: Any,
    cfg: dict[str, Any],
    x: Any,
    files: tuple[bytes, bytes],
    timing: Any,
    runtimes: tuple[str, ...],
) -> dict[str, Any]:
    """Per runtime: the dense model against its skeleton (attention and FFN left out), so
    ``s = skeleton time / dense time`` is the share of the dense time pruning cannot touch,
    and ``1 / (s + (1 - s) / f)`` the speed-up if the pruned parts ran ``f`` = their FLOPs
    ratio faster (Amdahl's bound for this runtime)."""
    from prunekit.metrics.flops import model_cost
    from prunekit.metrics.timing import interleaved_speedup

    skeleton = vit(int(cfg["d"]), 0, 0, int(cfg["blocks"]), int(cfg["patch"]))
    for layer in skeleton.layers:
        if layer.weights:
            layer.set_weights(dense.get_layer(layer.name).get_weights())
    parts = [(k, v) for k, v in model_cost(dense).per_layer.items()]
    shrinking = sum(v for k, v in parts if k.startswith(PRUNED_PARTS))
    kept = sum(v for k, v in model_cost(pruned).per_layer.items() if k.startswith(PRUNED_PARTS))
    factor = shrinking / kept
    skeleton_file = litert_files(skeleton, skeleton)[0]
    out: dict[str, Any] = {"pruned_parts_flops_ratio": round(factor, 4), "load_start": _load()}
    for rt in runtimes:
        a, _, _ = _sides(rt, dense, dense, pruned, files, x)
        b, _, _ = _sides(rt, skeleton, skeleton, skeleton, (skeleton_file, skeleton_file), x)
        ratio = interleaved_speedup(a, b, timing).as_dict()
        share = 1.0 / ratio["median"]
        out[rt] = {
            "dense_over_skeleton": ratio,
            "untouched_share": round(share, 4),
            "amdahl_bound": round(1.0 / (share + (1.0 - share) / factor), 4),
        }
        print(f"skeleton {rt}: share {share:.3f}, bound {out[rt]['amdahl_bound']:.2f}x", flush=True)
    out["load_end"] = _load()
    return out


class _TracedSession:
    """One model frozen into a graph, in a session with ``threads`` intra- and inter-op
    threads (0: TF's default), whose traced runs collect each op's time."""

    def __init__(self, model: Any, x: np.ndarray, threads: int) -> None:
        import tensorflow as tf
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2,
        )

        spec = tf.TensorSpec([BATCH, *model.input_shape[1:]], tf.float32)
        fn = tf.function(lambda t: model(t, training=False), autograph=False)
        frozen = convert_variables_to_constants_v2(fn.get_concrete_function(spec))
        graph = tf.Graph()
        with graph.as_default():
            tf.graph_util.import_graph_def(frozen.graph.as_graph_def(), name="")
        self.feed, self.fetch = {frozen.inputs[0].name: x}, frozen.outputs[0].name
        config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads
        )
        self.sess = tf.compat.v1.Session(graph=graph, config=config)
        self.options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
        self.per_node: dict[str, list[float]] = {}
        for _ in range(20):
            self.sess.run(self.fetch, self.feed)

    def traced_run(self) -> None:
        import tensorflow as tf

        meta = tf.compat.v1.RunMetadata()
        self.sess.run(self.fetch, self.feed, options=self.options, run_metadata=meta)
        for dev in meta.step_stats.dev_stats:
            for node in dev.node_stats:
                if node.node_name not in ("_SOURCE", "_SINK"):
                    us = node.op_end_rel_micros - node.op_start_rel_micros
                    self.per_node.setdefault(node.node_name, []).append(float(us))

    def summary(self) -> dict[str, Any]:
        per_layer: dict[str, float] = {}
        for name, times in self.per_node.items():
            parts = name.split("/")
            layer = parts[1].rsplit("_", 1)[0] if len(parts) > 2 else parts[0]
            per_layer[layer] = per_layer.get(layer, 0.0) + float(np.median(times))
        pruned_us = sum(v for k, v in per_layer.items() if k.startswith(PRUNED_PARTS))
        attention_us = sum(v for k, v in per_layer.items() if k.startswith("mha_"))
        total = sum(per_layer.values())
        return {
            "op_time_us": round(total),
            "attention_us": round(attention_us),
            "ffn_us": round(pruned_us - attention_us),
            "unpruned_us": round(total - pruned_us),
            "per_layer_us": {k: round(v) for k, v in sorted(per_layer.items())},
        }


def profiles(
    dense: Any, pruned: Any, x: np.ndarray, threads: int = 0, traced: int = 60
) -> dict[str, Any]:
    """Median op time (µs) per layer of a batch-32 TF run of each model, from the
    executor's step stats; the two models' traced runs alternate, so both see the same
    load. Summed into attention, FFN and the rest (``unpruned_us``)."""
    sessions = {
        "dense": _TracedSession(dense, x, threads),
        "pruned": _TracedSession(pruned, x, threads),
    }
    load = _load()
    for _ in range(traced):
        for session in sessions.values():
            session.traced_run()
    out: dict[str, Any] = {k: s.summary() for k, s in sessions.items()}
    for session in sessions.values():
        session.sess.close()
    out.update(traced_runs=traced, threads=threads, load_start=load, load_end=_load())
    return out


def time_only(args: argparse.Namespace) -> None:
    import keras

    out = json.loads(args.out.read_text())
    cfg = out["config"]
    with np.load(data_dir() / "mnist.npz", allow_pickle=False) as d:
        x = patches(d["x_test"][:BATCH], int(cfg["patch"]))
    dense = keras.saving.load_model(args.keep / "dense.keras")
    pruned = keras.saving.load_model(args.keep / "pruned.keras")
    suffix, runtimes = "", RUNTIMES
    if args.tf_threads:  # TF alone, on that many threads (the LiteRT rows do not change)
        suffix, runtimes = f"_tf_{args.tf_threads}thread", ("tf", "xla")
    earlier = out.setdefault("earlier_timings", [])
    if out.get("timing" + suffix) is not None:
        earlier.append({k + suffix: out.get(k + suffix) for k in ("timing", "profile")})
    out["profile" + suffix] = profiles(dense, pruned, x, args.tf_threads)
    out["timing" + suffix] = measure(dense, pruned, cfg, x, args.rounds, runtimes)
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out["timing" + suffix]["summary"], indent=1))


def _relative(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train", type=int, default=10000, help="MNIST training samples used")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--ft-epochs", type=int, default=2)
    ap.add_argument("--patch", type=int, default=7, choices=[4, 7, 14])
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--ff", type=int, default=1024)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--criterion", default="l2", choices=["l1", "l2", "taylor"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds (all runtimes each)")
    ap.add_argument("--out", type=Path, default=RAW)
    ap.add_argument("--keep", type=Path, default=None, help="where dense/pruned.keras go")
    ap.add_argument("--time-only", action="store_true", help="re-time the kept models")
    ap.add_argument(
        "--tf-threads",
        type=int,
        default=0,
        help="with --time-only: TF's intra- and inter-op threads (0: its default); other "
        "than 0 times TF and XLA only, into timing_tf_<n>thread",
    )
    args = ap.parse_args()
    if args.tf_threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.tf_threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.tf_threads)
    if args.keep is None:
        args.keep = KEEP / args.out.stem
    if args.time_only:
        time_only(args)
        return

    import keras

    from prunekit.litert.convert import convert
    from prunekit.metrics.flops import count_flops
    from prunekit.metrics.litert import run as litert_run
    from prunekit.model import LoadedModel
    from prunekit.structured import compute_gradients, prune_channels

    keras.utils.set_random_seed(args.seed)
    with np.load(data_dir() / "mnist.npz", allow_pickle=False) as d:
        x_train, y_train = (
            patches(d["x_train"][: args.train], args.patch),
            d["y_train"][: args.train],
        )
        x_test, y_test = patches(d["x_test"], args.patch), d["y_test"]
    batch = 64
    steps = args.epochs * (len(x_train) // batch)
    model = vit(args.d, args.heads, args.ff, args.blocks, args.patch)
    _compile(model, 1e-3, steps)
    t0 = time.perf_counter()
    model.fit(x_train, y_train, batch_size=batch, epochs=args.epochs, verbose=2)
    train_s = time.perf_counter() - t0
    dense_acc = _accuracy(model, x_test, y_test)

    gradients = None
    if args.criterion == "taylor":
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        gradients = compute_gradients(model, x_train[:512], y_train[:512], loss)
    result = prune_channels(model, args.ratio, criterion=args.criterion, gradients=gradients)
    pruned = result.model
    pruned_groups = [g for g in result.groups if g.kept < g.size]
    pruned_acc = _accuracy(pruned, x_test, y_test)
    ft_steps = args.ft_epochs * (len(x_train) // batch)
    _compile(pruned, 5e-4, ft_steps)
    t0 = time.perf_counter()
    if args.ft_epochs:
        pruned.fit(x_train, y_train, batch_size=batch, epochs=args.ft_epochs, verbose=2)
    ft_s = time.perf_counter() - t0
    ft_acc = _accuracy(pruned, x_test, y_test)
    lite = convert(
        LoadedModel(format="keras", keras_model=pruned), "tflite", list(x_test.shape[1:])
    )
    if lite.content is None:
        raise RuntimeError(f"tflite: {lite.error}")
    lite_acc = float(np.mean(np.argmax(litert_run(lite.content, x_test), axis=1) == y_test))

    args.keep.mkdir(parents=True, exist_ok=True)
    model.save(args.keep / "dense.keras")
    pruned.save(args.keep / "pruned.keras")
    shape = list(x_test.shape[1:])
    graph_flops = {
        name: count_flops(LoadedModel(format="keras", keras_model=m), shape).dense
        for name, m in (("dense", model), ("pruned", pruned))
    }
    config = {
        k: v for k, v in vars(args).items() if k not in ("keep", "time_only", "out", "rounds")
    }
    command = "python -m bench.transformer_vit " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in config.items()
    )
    out = {
        "command": f"{command} --out {_relative(args.out)}",
        "config": config,
        "tokens": (28 // args.patch) ** 2,
        "key_dim": args.d // args.heads,
        "heads": [
            {"layer": g.sources[0], "before": g.size, "after": g.kept}
            for g in pruned_groups
            if g.sources[0].startswith("mha")
        ],
        "ffn": [
            {"layer": g.sources[0], "before": g.size, "after": g.kept}
            for g in pruned_groups
            if g.sources[0].startswith("ff")
        ],
        "params": {"dense": model.count_params(), "pruned": pruned.count_params()},
        "keras_bytes": {"dense": _saved_bytes(model), "pruned": _saved_bytes(pruned)},
        "flops_all_ops": {"dense": result.cost_before.flops, "pruned": result.cost_after.flops},
        "flops_matmul_graph": graph_flops,
        "accuracy": {
            "dense": dense_acc,
            "pruned_before_ft": pruned_acc,
            "after_ft": ft_acc,
            "after_ft_litert": lite_acc,
        },
        "seconds": {"train": round(train_s, 1), "fine_tune": round(ft_s, 1)},
        "load_average_after_training": _load(),
    }
    x32 = x_test[:BATCH]
    out["profile"] = profiles(model, pruned, x32)
    out["timing"] = measure(model, pruned, config, x32, args.rounds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k not in ("timing", "profile")}, indent=1))
    print(json.dumps(out["timing"]["summary"], indent=1))


if __name__ == "__main__":
    main()

"""A LiteRT flatbuffer on the LiteRT interpreter: its outputs, its kernels, its latency.

- :func:`run` feeds an array through the interpreter in fixed-size batches, quantising the
  input and dequantising the output with the tensors' scale and zero point when the file is
  integer-only, so quality metrics see the file's real outputs (never TensorFlow's);
- :func:`kernel_paths` says which kernels run each op: the interpreter applies the XNNPACK
  delegate by default, and a node XNNPACK takes is replaced by a ``DELEGATE`` node whose
  inputs and outputs bound the subgraph it took; every other node runs a builtin kernel
  (which for a weight stored sparse is the builtin sparse kernel);
- :func:`litert_speedups` times a dense reference against an export, each in its own
  interpreter resized to the batch, with :func:`~prunekit.metrics.timing.interleaved_speedup`
  for every thread count and batch size, so both sides share the machine's load.

The interpreter and numpy only; no TensorFlow import.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from prunekit.metrics.timing import Speedup, TimingConfig, interleaved_speedup, timing_context

ALL_CORES = os.cpu_count() or 1
BATCH_SIZES = (1, 32)
RUN_BATCH = 256  # rows per invoke when computing outputs over a whole split
# per (thread count, batch size) comparison: enough pairs for a usable interval, bounded time
LITERT_TIMING = TimingConfig(warmup=2, min_pairs=7, max_pairs=200, budget_s=0.4)
SLOW_RUN_S = 0.2  # a run this long (a big model at batch 32) gets the few-pairs config below
SLOW_MIN_PAIRS = 3
XNNPACK = "xnnpack"
BUILTIN = "builtin"


def thread_counts() -> tuple[int, ...]:
    """One thread, and every core of this machine (one entry when there is one core)."""
    return (1,) if ALL_CORES == 1 else (1, ALL_CORES)


def thread_label(n: int) -> str:
    return f"{n}thread" if n == 1 else f"{n}threads"


def load(content: bytes, num_threads: int = 1, batch: int | None = None) -> Interpreter:
    """:func:`load_reporting` without the reason XNNPACK refused the file."""
    return load_reporting(content, num_threads, batch)[0]


def load_reporting(
    content: bytes, num_threads: int = 1, batch: int | None = None
) -> tuple[Interpreter, str | None]:
    """An interpreter over ``content`` with its first input resized to ``batch``, allocated,
    and why XNNPACK refused the file (``None`` when it did not).

    The default interpreter applies XNNPACK; when the delegate claims a node and then fails
    to prepare it (int8 weights stored sparse in blocks it has no kernel for, say),
    allocation or the first invoke raises (the delegate may be applied lazily, so one
    invoke is made here). The file still runs on the builtin kernels with the default
    delegate off, which is what a deployment has to do too: that is the interpreter
    returned then.
    """
    try:
        interp = _allocated(content, num_threads, batch, OpResolverType.AUTO)
        interp.invoke()
        return interp, None
    except RuntimeError as exc:
        refusal = " ".join(str(exc).split())[:300]
    resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return _allocated(content, num_threads, batch, resolver), refusal


def _allocated(
    content: bytes, num_threads: int, batch: int | None, resolver: OpResolverType
) -> Interpreter:
    interp = Interpreter(
        model_content=content, num_threads=num_threads, experimental_op_resolver_type=resolver
    )
    if batch is not None:
        inp = interp.get_input_details()[0]
        if int(inp["shape"][0]) != batch:
            interp.resize_tensor_input(inp["index"], [batch, *inp["shape"][1:]], strict=False)
    interp.allocate_tensors()
    return interp


def quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """``x`` as the input tensor takes it: integer tensors get ``round(x / scale) + zero``."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind not in "iu":
        return np.asarray(x, dtype=dtype)
    scale, zero = detail["quantization"]
    if scale == 0:  # an integer input that is not quantised (token ids, say)
        return np.asarray(x).astype(dtype)
    info = np.iinfo(dtype)
    q = np.clip(np.round(np.asarray(x, np.float64) / scale) + zero, info.min, info.max)
    return np.asarray(q).astype(dtype)


def dequantize(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """The real values of an output tensor: ``(y - zero) * scale`` for quantised ones."""
    scale, zero = detail["quantization"]
    if np.dtype(detail["dtype"]).kind in "iu" and scale != 0:
        return (np.asarray(y, np.float32) - np.float32(zero)) * np.float32(scale)
    return np.asarray(y, np.float32)


def run(
    content: bytes, x: np.ndarray, batch_size: int = RUN_BATCH, num_threads: int = ALL_CORES
) -> np.ndarray:
    """The file's first output for every row of ``x`` (float32, dequantised).

    Rows go through in batches of ``batch_size``; the last one is padded with zeros and the
    padding's outputs dropped, so the interpreter is allocated once.
    """
    x = np.asarray(x)
    if not len(x):
        raise ValueError("no rows to run")
    batch = min(batch_size, len(x))
    interp = load(content, num_threads, batch)
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    rows = []
    for start in range(0, len(x), batch):
        chunk = x[start : start + batch]
        if len(chunk) < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - len(chunk), *x.shape[1:]), x.dtype)])
        interp.set_tensor(inp["index"], quantize(chunk, inp))
        interp.invoke()
        rows.append(dequantize(interp.get_tensor(out["index"]), out))
    return np.concatenate(rows)[: len(x)]


def _delegated_nodes(ops: list[dict[str, Any]]) -> set[int]:
    """Indices of the nodes a delegate took: walking back from each DELEGATE node's outputs
    to its inputs through the nodes that produce them."""
    producer = {
        int(t): op for op in ops if op["op_name"] != "DELEGATE" for t in op["outputs"] if t >= 0
    }
    taken: set[int] = set()
    for delegate in (op for op in ops if op["op_name"] == "DELEGATE"):
        boundary = {int(t) for t in delegate["inputs"]}
        wanted = [int(t) for t in delegate["outputs"]]
        while wanted:
            op = producer.get(wanted.pop())
            if op is None or op["index"] in taken:
                continue
            taken.add(op["index"])
            wanted.extend(int(t) for t in op["inputs"] if t >= 0 and int(t) not in boundary)
    return taken


def kernel_paths(content: bytes, num_threads: int = 1) -> dict[str, Any]:
    """Which kernels run the file on the default interpreter (XNNPACK delegate applied).

    ``ops``: per op, in execution order: the op, the tensor it writes, whether a weight it
    reads is stored sparse, and its kernel path (``xnnpack`` or ``builtin``); ``summary``:
    the counts; ``xnnpack_refused``: the interpreter's error when XNNPACK claimed a node and
    failed to prepare it, so that every op runs builtin (``None`` otherwise).
    """
    interp, refusal = load_reporting(content, num_threads)
    ops = interp._get_ops_details()
    tensors = {int(t["index"]): t for t in interp.get_tensor_details()}
    taken = _delegated_nodes(ops)
    rows = []
    for op in ops:
        if op["op_name"] == "DELEGATE":
            continue
        outputs = [tensors[int(t)]["name"] for t in op["outputs"] if int(t) in tensors]
        sparse = any(
            tensors[int(t)].get("sparsity_parameters")
            for t in op["inputs"]
            if t >= 0 and int(t) in tensors
        )
        rows.append(
            {
                "op": op["op_name"],
                "output": outputs[0] if outputs else None,
                "kernel": XNNPACK if op["index"] in taken else BUILTIN,
                "sparse_weights": bool(sparse),
            }
        )
    return {"ops": rows, "summary": kernel_summary(rows), "xnnpack_refused": refusal}


def sparse_tensors(content: bytes) -> list[dict[str, Any]]:
    """The weights the file stores sparse: tensor name, shape, dtype, and ``block``, the
    number of consecutive elements along the blocked (input) dimension each stored entry
    holds (1: plain CSR, unstructured)."""
    interp = Interpreter(
        model_content=content,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    return [
        {
            "tensor": t["name"],
            "shape": [int(d) for d in t["shape"]],
            "dtype": np.dtype(t["dtype"]).name,
            "block": block,
        }
        for t in interp.get_tensor_details()
        if (block := _sparse_block(t)) is not None
    ]


def _sparse_block(tensor: dict[str, Any]) -> int | None:
    """A tensor's stored block along its blocked (input) dimension: ``None`` when it is
    stored dense, 1 for plain CSR (unstructured)."""
    params = tensor.get("sparsity_parameters")
    if not params:
        return None
    dims = params["dim_metadata"]
    blocked = len(params["block_map"]) > 0 and len(dims) > len(tensor["shape"])
    return int(dims[-1]["dense_size"]) if blocked else 1


WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV")


def weight_storage(content: bytes) -> list[dict[str, Any]]:
    """How the file stores each weight of a fully connected or convolution op, and which
    kernel reads it, in graph order: ``stored`` ``"sparse"`` or ``"dense"``; ``block`` (the
    sparse layout's block along the input dimension, 1 for plain CSR); ``read_as``
    ``"sparse"`` (the op's sparse kernel reads the sparse tensor) or ``"dense"`` (a dense
    weight, or a sparse one a DENSIFY op expands once when the file loads, read by the dense
    kernel). The op's output tensor names the layer."""
    interp = Interpreter(
        model_content=content,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    tensors = {int(t["index"]): t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()
    producer = {int(t): op for op in ops for t in op["outputs"] if t >= 0}
    rows = []
    for op in ops:
        if op["op_name"] not in WEIGHT_OPS or len(op["inputs"]) < 2:
            continue
        weight = int(op["inputs"][1])
        source = producer.get(weight)
        densified = source is not None and source["op_name"] == "DENSIFY"
        stored = tensors[int(source["inputs"][0]) if source is not None and densified else weight]
        block = _sparse_block(stored)
        rows.append(
            {
                "op": op["op_name"],
                "output": tensors[int(op["outputs"][0])]["name"],
                "tensor": stored["name"],
                "shape": [int(d) for d in stored["shape"]],
                "dtype": np.dtype(stored["dtype"]).name,
                "stored": "dense" if block is None else "sparse",
                "block": block,
                "read_as": "sparse" if block is not None and not densified else "dense",
            }
        )
    return rows


def wrong_output_hazards(tensors: Sequence[dict[str, Any]]) -> list[str]:
    """Sparse weights stored in a layout seen to compute wrong outputs on ai-edge-litert 2.3:
    int8 in 1x16 blocks over an input dimension that is not a multiple of 16 (top-1
    agreement with TF fell to 0.59 on LeNet-300-100's 300-input layer)."""
    return [
        f"{t['tensor']} ({t['shape'][-1]} inputs, int8 in 1x16 blocks)"
        for t in tensors
        if t["dtype"] == "int8" and t["block"] == 16 and t["shape"][-1] % 16
    ]


def kernel_summary(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many ops each kernel path runs, and how many read a sparse weight."""
    return {
        XNNPACK: sum(r["kernel"] == XNNPACK for r in rows),
        BUILTIN: sum(r["kernel"] == BUILTIN for r in rows),
        "sparse_weights": sum(bool(r["sparse_weights"]) for r in rows),
    }


class TimedInterpreter:
    """One invoke of a file at a fixed batch and thread count, on a fixed random input.

    ``xnnpack=False`` runs the builtin kernels only (the default XNNPACK delegate off): what
    a layer gets when XNNPACK does not take it."""

    def __init__(
        self, content: bytes, num_threads: int, batch: int, seed: int = 0, xnnpack: bool = True
    ) -> None:
        self.interp = (
            load(content, num_threads, batch)
            if xnnpack
            else _allocated(
                content, num_threads, batch, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            )
        )
        inp = self.interp.get_input_details()[0]
        self._out = self.interp.get_output_details()[0]["index"]
        rng = np.random.default_rng(seed)
        x = rng.normal(size=tuple(int(d) for d in inp["shape"])).astype(np.float32)
        self.interp.set_tensor(inp["index"], quantize(x, inp))
        started = time.perf_counter()
        self()
        self.first_run_s = time.perf_counter() - started  # after the allocating invoke

    def __call__(self) -> np.ndarray:
        self.interp.invoke()
        return np.asarray(self.interp.get_tensor(self._out))


def _bounded(cfg: TimingConfig, a: TimedInterpreter, b: TimedInterpreter) -> TimingConfig:
    """``cfg``, or fewer warm-ups and minimum pairs when one run of either side takes longer
    than :data:`SLOW_RUN_S`: the minimum pairs, not the budget, bound a big model's time."""
    slowest = max(a.first_run_s, b.first_run_s)
    if slowest <= SLOW_RUN_S:
        return cfg
    return replace(cfg, warmup=min(cfg.warmup, 1), min_pairs=min(cfg.min_pairs, SLOW_MIN_PAIRS))


def litert_speedups(
    dense: bytes,
    export: bytes,
    threads: Sequence[int] | None = None,
    batches: Sequence[int] = BATCH_SIZES,
    cfg: TimingConfig = LITERT_TIMING,
    export_xnnpack: bool = True,
) -> dict[str, dict[str, Speedup]]:
    """``{thread label: {"batch_<n>": Speedup}}`` of ``export`` over ``dense`` (``a`` is the
    dense file, ``b`` the export; a median above 1 means the export is faster).
    ``export_xnnpack=False`` times the export on the builtin kernels only."""
    out: dict[str, dict[str, Speedup]] = {}
    for n in threads or thread_counts():
        per_batch: dict[str, Speedup] = {}
        for batch in batches:
            a = TimedInterpreter(dense, n, batch)
            b = TimedInterpreter(export, n, batch, xnnpack=export_xnnpack)
            context = timing_context(runtime="litert", num_threads=n, batch=batch)
            per_batch[f"batch_{batch}"] = interleaved_speedup(a, b, _bounded(cfg, a, b), context)
        out[thread_label(n)] = per_batch
    return out

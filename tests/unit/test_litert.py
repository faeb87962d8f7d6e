"""LiteRT exports: conversion, the file's outputs on the interpreter, kernels, the pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from prunekit.evaluation import agreement
from prunekit.formats import ModelFormat
from prunekit.litert.convert import DENSE_FLOAT, convert, unsupported_ops
from prunekit.litert.exports import (
    DenseReference,
    _fallback_note,
    _fidelity_warning,
    _not_faster,
    _runnable_conversion,
)
from prunekit.losses import LossName, LossSpec
from prunekit.metrics import litert as runtime
from prunekit.metrics.timing import SideStats, Speedup
from prunekit.model import LoadedModel, load_model
from prunekit.pipeline import prune
from prunekit.spec import PruneSpec

INPUTS, HIDDEN, CLASSES = 256, 128, 10
LOGITS = LossSpec(LossName.SPARSE_CATEGORICAL, from_logits=True)


def block_sparse(w: np.ndarray, k: int, sparsity: float, rng: np.random.Generator) -> np.ndarray:
    """``w`` (inputs, outputs) with exactly round(sparsity * blocks) 1xk blocks of k
    consecutive inputs of one output set to zero (inputs past the last whole block stay)."""
    rows = (w.shape[0] // k) * k
    blocks = rows // k * w.shape[1]
    drop = rng.permutation(blocks)[: round(sparsity * blocks)]
    keep = np.ones(blocks, bool)
    keep[drop] = False
    mask = np.ones(w.shape, bool)
    mask[:rows] = np.repeat(keep.reshape(rows // k, w.shape[1]), k, axis=0)
    return np.where(mask, w, 0).astype(w.dtype)


def mlp(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((INPUTS,), name="features")
    x = keras.layers.Dense(HIDDEN, activation="relu", name="hidden")(inp)
    return keras.Model(inp, keras.layers.Dense(CLASSES, name="logits")(x))


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    dense = mlp()
    sparse = mlp()
    rng = np.random.default_rng(0)
    for layer in sparse.layers[1:]:
        kernel, bias = layer.get_weights()
        layer.set_weights([block_sparse(kernel, 4, 0.9, rng), bias])
    x = np.random.default_rng(1).normal(size=(300, INPUTS)).astype("float32")
    return {
        "dense": LoadedModel(ModelFormat.KERAS, keras_model=dense),
        "sparse": LoadedModel(ModelFormat.KERAS, keras_model=sparse),
        "x": x,
    }


def test_block_sparse_weights_make_a_smaller_file_stored_sparse(models: dict) -> None:
    dense = convert(models["dense"], DENSE_FLOAT, [INPUTS])
    sparse = convert(models["sparse"], "tflite", [INPUTS])
    same_weights_plain = convert(models["sparse"], DENSE_FLOAT, [INPUTS])
    assert dense.succeeded and sparse.succeeded and same_weights_plain.succeeded
    assert dense.content is not None and sparse.content is not None
    # 90% of 256x128 + 128x10 float32 weights gone: the file keeps ~10% plus indices
    assert len(sparse.content) < len(dense.content) / 4
    assert same_weights_plain.content is not None
    assert len(same_weights_plain.content) > len(dense.content) * 0.95  # zeros alone: no gain
    kernels = runtime.kernel_paths(sparse.content)
    fc = [op for op in kernels["ops"] if op["op"] == "FULLY_CONNECTED"]
    assert len(fc) == 2 and all(op["sparse_weights"] for op in fc)


def test_float_export_computes_what_tf_computes(models: dict) -> None:
    conversion = convert(models["sparse"], "tflite", [INPUTS])
    assert conversion.content is not None and conversion.quantization == "none"
    x = models["x"]
    expected = models["sparse"].predict(x)
    np.testing.assert_allclose(runtime.run(conversion.content, x), expected, atol=1e-4, rtol=1e-4)
    # a batch that does not divide the run batch: padding rows are dropped
    np.testing.assert_allclose(
        runtime.run(conversion.content, x[:37], batch_size=16), expected[:37], atol=1e-4, rtol=1e-4
    )


def test_int8_export_is_full_integer_with_data_and_agrees(models: dict) -> None:
    x = models["x"]
    full = convert(models["sparse"], "tflite_int8", [INPUTS], calibration=x[:100])
    assert full.content is not None and full.quantization == "full_integer"
    interp = runtime.load(full.content)
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8
    outputs = runtime.run(full.content, x[100:])
    top1 = agreement(outputs, models["sparse"].predict(x[100:]), LOGITS)["top1"]
    assert top1 >= 0.9, top1

    dynamic = convert(models["sparse"], "tflite_int8", [INPUTS])
    assert dynamic.content is not None and dynamic.quantization == "dynamic_range"
    assert dynamic.note is not None and "no dataset" in dynamic.note
    assert runtime.load(dynamic.content).get_input_details()[0]["dtype"] == np.float32


class Erfinv(tf.Module):
    """A real model whose op (Erfinv) has no LiteRT builtin kernel."""

    def __init__(self) -> None:
        super().__init__()
        self.w = tf.Variable(np.random.default_rng(0).normal(size=(4, 3)).astype("float32"))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def __call__(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": tf.matmul(tf.math.erfinv(tf.clip_by_value(x, -0.9, 0.9)), self.w)}


@pytest.fixture(scope="module")
def erfinv_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("erfinv") / "sm"
    module = Erfinv()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})
    return path


def test_an_unconvertible_op_is_named_and_nothing_raises(erfinv_model: Path) -> None:
    model = load_model(erfinv_model, ModelFormat.SAVED_MODEL)
    result = convert(model, "tflite", [4])
    assert not result.succeeded and result.content is None
    assert result.unsupported_ops == ["Erfinv"]
    assert result.error is not None and "Erfinv" in result.error


def test_op_names_are_parsed_from_converter_messages() -> None:
    message = (
        "error: 'tf.Digamma' op is neither a custom op nor a flex op\n"
        "Some ops are not supported by the native TFLite runtime\n"
        "Flex ops: FlexBetainc, FlexDigamma\nDetails:\n\ttf.Betainc(tensor<?xf32>) -> ...\n"
    )
    assert unsupported_ops(message) == ["Digamma", "Betainc"]
    assert unsupported_ops("Could not translate MLIR to FlatBuffer") == []


def test_xnnpack_runs_a_dense_float_file(models: dict) -> None:
    dense = convert(models["dense"], DENSE_FLOAT, [INPUTS])
    assert dense.content is not None
    report = runtime.kernel_paths(dense.content)
    assert [op["op"] for op in report["ops"]] == ["FULLY_CONNECTED", "FULLY_CONNECTED"]
    assert all(op["kernel"] == runtime.XNNPACK for op in report["ops"])
    assert report["summary"] == {"xnnpack": 2, "builtin": 0, "sparse_weights": 0}
    assert report["xnnpack_refused"] is None


def test_delegated_nodes_are_the_ones_between_a_delegates_inputs_and_outputs() -> None:
    def op(index: int, name: str, inputs: list[int], outputs: list[int]) -> dict[str, Any]:
        return {"index": index, "op_name": name, "inputs": inputs, "outputs": outputs}

    # 0 -> A -> 2 -> B -> 3 -> C -> 4; the delegate took A and B (inputs 0 and weight 1)
    ops = [
        op(0, "FULLY_CONNECTED", [0, 1, -1], [2]),
        op(1, "RELU", [2], [3]),
        op(2, "CUSTOM", [3], [4]),
        op(3, "DELEGATE", [0, 1], [3]),
    ]
    assert runtime._delegated_nodes(ops) == {0, 1}


def test_int8_values_are_quantised_with_the_tensors_scale_and_zero_point() -> None:
    detail = {"dtype": np.int8, "quantization": (0.5, -3)}
    q = runtime.quantize(np.array([0.0, 1.0, 100.0, -100.0]), detail)
    np.testing.assert_array_equal(q, np.array([-3, -1, 127, -128], np.int8))
    np.testing.assert_allclose(runtime.dequantize(q, detail), [0.0, 1.0, 65.0, -62.5])


def _dataset(tmp: Path, model: keras.Model) -> Path:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, INPUTS)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=-1)  # labels the model mostly gets right
    path = tmp / "data.npz"
    np.savez(path, x_train=x[:300], y_train=y[:300], x_test=x[300:], y_test=y[300:])
    return path


def test_pipeline_exports_measures_and_reports(tmp_path: Path) -> None:
    model = mlp(3)
    source = tmp_path / "m.keras"
    model.save(source)
    spec = PruneSpec(
        strategy={"name": "magnitude", "sparsity": 0.9}, exports=["tflite", "tflite_int8"]
    )
    result = prune(source, "keras", spec, tmp_path / "out", data=_dataset(tmp_path, model))
    metrics = result.metrics
    assert set(result.exports) == {"tflite", "tflite_int8"}
    assert result.exports["tflite"] == tmp_path / "out" / "model.tflite"
    for fmt, path in result.exports.items():
        record = metrics["exports"][fmt]
        assert record["status"] == "succeeded"
        assert record["size_bytes"] == path.stat().st_size
        assert record["kernels"] and {"op", "kernel"} <= set(record["kernels"][0])
        assert 0.0 <= record["quality"]["accuracy"] <= 1.0
        assert record["agreement"]["top1"] >= 0.0
        latency = metrics["after"]["litert"][fmt]["latency"]
        for n in runtime.thread_counts():
            figures = metrics["speedup"][f"litert_{fmt}_{runtime.thread_label(n)}"]
            assert set(figures) == {"batch_1", "batch_32"}
            for batch, s in figures.items():
                assert s["ci95"][0] <= s["median"] <= s["ci95"][1]
                assert s["b"] == latency[runtime.thread_label(n)][batch]
    assert metrics["exports"]["tflite_int8"]["quantization"] == "full_integer"
    # the float file computes what the pruned TF model computes
    np.testing.assert_allclose(
        metrics["exports"]["tflite"]["agreement_with_tf_pruned"]["relative_l2"], 0.0, atol=1e-4
    )
    dense = metrics["before"]["litert"]
    assert (
        dense["status"] == "succeeded"
        and dense["size_bytes"] > result.exports["tflite"].stat().st_size
    )
    assert set(dense["latency"]) == {runtime.thread_label(n) for n in runtime.thread_counts()}
    assert [row["layer"] for row in metrics["eligibility"]["layers"]] == ["hidden", "logits"]


def test_pipeline_a_failed_export_leaves_the_job_and_names_the_op(
    erfinv_model: Path, tmp_path: Path
) -> None:
    spec = PruneSpec(strategy={"name": "magnitude", "sparsity": 0.5}, exports=["tflite"])
    result = prune(erfinv_model, "saved_model", spec, tmp_path / "out")
    assert result.download.exists() and result.exports == {}
    record = result.metrics["exports"]["tflite"]
    assert record["status"] == "failed" and record["unsupported_ops"] == ["Erfinv"]
    assert "Erfinv" in record["error"]
    assert any("Erfinv" in note for note in result.notes)
    assert not (tmp_path / "out" / "model.tflite").exists()


def test_a_file_that_computes_something_else_is_warned_about() -> None:
    faithful_float = {"quantization": "none", "agreement_with_tf_pruned": {"relative_l2": 2e-7}}
    drifted_float = {"quantization": "none", "agreement_with_tf_pruned": {"relative_l2": 0.02}}
    int8_ok = {
        "quantization": "full_integer",
        "agreement_with_tf_pruned": {"top1": 0.99, "relative_l2": 0.3},
    }
    int8_wrong = {
        "quantization": "full_integer",
        "agreement_with_tf_pruned": {"top1": 0.59, "relative_l2": 0.9},
    }
    assert _fidelity_warning("tflite", faithful_float) is None
    assert "relative L2 distance 0.02" in (_fidelity_warning("tflite", drifted_float) or "")
    assert _fidelity_warning("tflite_int8", int8_ok) is None
    assert "top-1 agreement 0.590" in (_fidelity_warning("tflite_int8", int8_wrong) or "")
    assert _fidelity_warning("tflite", {"quantization": "none"}) is None  # no data: no check


def _speedup(median: float, lo: float, hi: float) -> Speedup:
    side = SideStats(1.0, 1.1, 9)
    return Speedup(median, (lo, hi), 9, "interleaved", 0.01, True, side, side)


def test_a_sparse_export_not_faster_somewhere_is_named_there() -> None:
    pairs = {
        "1thread": {"batch_1": _speedup(2.0, 1.9, 2.1), "batch_32": _speedup(0.9, 0.85, 1.02)},
        "2threads": {"batch_1": _speedup(1.0, 0.97, 1.06), "batch_32": _speedup(1.5, 1.4, 1.6)},
    }
    warning = _not_faster("tflite", pairs, 0.9)
    assert warning is not None and "90% sparse" in warning
    assert "1thread batch 32 (0.90x, 95% CI 0.85-1.02)" in warning
    assert "2threads batch 1" not in warning  # its interval reaches past 1.05
    assert _not_faster("tflite", {"1thread": {"batch_1": _speedup(2.0, 1.9, 2.1)}}, 0.9) is None


def test_a_saved_model_converts_through_its_signature(tmp_path: Path, models: dict) -> None:
    keras_model = models["sparse"].keras_model
    keras_model.export(str(tmp_path / "sm"), verbose=False)
    model = load_model(tmp_path / "sm", ModelFormat.SAVED_MODEL)
    conversion = convert(model, "tflite", [INPUTS])
    assert conversion.content is not None
    x = models["x"][:50]
    np.testing.assert_allclose(
        runtime.run(conversion.content, x), keras_model.predict(x, verbose=0), atol=1e-4, rtol=1e-4
    )


def test_slow_models_are_timed_with_fewer_pairs(models: dict) -> None:
    dense = convert(models["dense"], DENSE_FLOAT, [INPUTS]).content
    assert dense is not None
    a, b = runtime.TimedInterpreter(dense, 1, 1), runtime.TimedInterpreter(dense, 1, 1)
    assert runtime._bounded(runtime.LITERT_TIMING, a, b) == runtime.LITERT_TIMING  # fast
    b.first_run_s = 2 * runtime.SLOW_RUN_S
    slow = runtime._bounded(runtime.LITERT_TIMING, a, b)
    assert slow.min_pairs == runtime.SLOW_MIN_PAIRS and slow.warmup == 1
    assert slow.budget_s == runtime.LITERT_TIMING.budget_s


def test_a_file_can_be_timed_on_the_builtin_kernels_only(models: dict) -> None:
    """XNNPACK off, no op of a dense float file is delegated; on, its layers are."""
    dense = convert(models["dense"], DENSE_FLOAT, [INPUTS]).content
    assert dense is not None
    ops = {o["op_name"] for o in runtime.TimedInterpreter(dense, 1, 1).interp._get_ops_details()}
    assert "DELEGATE" in ops
    builtin = runtime.TimedInterpreter(dense, 1, 1, xnnpack=False).interp._get_ops_details()
    assert "DELEGATE" not in {o["op_name"] for o in builtin}
    assert [o["op_name"] for o in builtin].count("FULLY_CONNECTED") == 2


def test_an_int8_file_xnnpack_refuses_is_stored_dense_instead(models: dict) -> None:
    """int8 weights in 1x4 blocks, stored sparse, make the default interpreter fail (XNNPACK
    claims the layers and cannot prepare them); the export is then stored dense."""
    calibration = models["x"][:100]
    sparse = convert(models["sparse"], "tflite_int8", [INPUTS], calibration=calibration)
    assert sparse.content is not None and sparse.sparse_storage
    with pytest.raises(RuntimeError, match="failed to prepare"):
        interp = runtime._allocated(sparse.content, 1, None, runtime.OpResolverType.AUTO)
        interp.invoke()
    reference = DenseReference(convert(models["dense"], DENSE_FLOAT, [INPUTS]), [INPUTS])
    problems: list[str] = []
    chosen, refused = _runnable_conversion(
        models["sparse"], "tflite_int8", reference, calibration, problems
    )
    assert chosen.content is not None and not chosen.sparse_storage and problems == []
    assert refused is not None and refused["size_bytes"] == len(sparse.content)
    assert "failed to prepare" in refused["reason"]
    assert chosen.note is not None and "weights stored dense" in chosen.note
    kernels = runtime.kernel_paths(chosen.content)
    assert kernels["xnnpack_refused"] is None
    assert {op["kernel"] for op in kernels["ops"]} == {runtime.XNNPACK}


def test_sparse_layouts_are_read_off_the_file_and_a_wrong_output_one_is_named(
    models: dict,
) -> None:
    sparse = convert(models["sparse"], "tflite", [INPUTS]).content
    assert sparse is not None
    tensors = runtime.sparse_tensors(sparse)
    assert sorted((t["shape"], t["block"], t["dtype"]) for t in tensors) == [
        ([CLASSES, HIDDEN], 4, "float32"),
        ([HIDDEN, INPUTS], 4, "float32"),
    ]
    assert runtime.wrong_output_hazards(tensors) == []
    rows = [
        {"tensor": "fc2", "shape": [100, 300], "dtype": "int8", "block": 16},
        {"tensor": "fc1", "shape": [300, 784], "dtype": "int8", "block": 16},
        {"tensor": "fc3", "shape": [10, 100], "dtype": "float32", "block": 16},
    ]
    assert runtime.wrong_output_hazards(rows) == ["fc2 (300 inputs, int8 in 1x16 blocks)"]


def test_int8_blocks_over_inputs_that_do_not_tile_by_16_are_stored_dense() -> None:
    keras.utils.set_random_seed(4)
    inp = keras.Input((64,), name="features")
    hidden = keras.layers.Dense(100, activation="relu", name="hidden")(inp)
    model = keras.Model(inp, keras.layers.Dense(CLASSES, name="logits")(hidden))
    logits = model.get_layer("logits")
    kernel, bias = logits.get_weights()  # (100 inputs, 10): blocks over the first 96
    logits.set_weights([block_sparse(kernel, 16, 0.9, np.random.default_rng(5)), bias])
    loaded = LoadedModel(ModelFormat.KERAS, keras_model=model)
    x = np.random.default_rng(6).normal(size=(200, 64)).astype("float32")
    sparse = convert(loaded, "tflite_int8", [64], calibration=x[:100])
    assert sparse.content is not None
    assert runtime.wrong_output_hazards(runtime.sparse_tensors(sparse.content))

    reference = DenseReference(convert(loaded, DENSE_FLOAT, [64]), [64])
    chosen, dropped = _runnable_conversion(loaded, "tflite_int8", reference, x[:100], [])
    assert chosen.content is not None and not chosen.sparse_storage
    assert dropped is not None and "100 inputs, int8 in 1x16 blocks" in dropped["reason"]
    assert runtime.sparse_tensors(chosen.content) == []
    top1 = agreement(
        runtime.run(chosen.content, x[100:]), model.predict(x[100:], verbose=0), LOGITS
    )
    assert top1["top1"] >= 0.95


def test_weight_storage_says_per_weight_what_is_stored_sparse_and_how_it_is_read() -> None:
    # the litert_int8 preset's layout: 256 inputs tile by 16 (1x16 blocks), 100 do not
    # (unstructured): int8 runs the first with its sparse kernel, expands the second once
    # (DENSIFY) for the dense kernel
    keras.utils.set_random_seed(7)
    inp = keras.Input((INPUTS,), name="features")
    hidden = keras.layers.Dense(100, activation="relu", name="hidden")(inp)
    model = keras.Model(inp, keras.layers.Dense(CLASSES, name="logits")(hidden))
    rng = np.random.default_rng(8)
    kernel, bias = model.get_layer("hidden").get_weights()
    model.get_layer("hidden").set_weights([block_sparse(kernel, 16, 0.9, rng), bias])
    kernel, bias = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([block_sparse(kernel, 1, 0.9, rng), bias])
    loaded = LoadedModel(ModelFormat.KERAS, keras_model=model)
    x = rng.normal(size=(100, INPUTS)).astype("float32")
    int8 = convert(loaded, "tflite_int8", [INPUTS], calibration=x).content
    assert int8 is not None
    rows = runtime.weight_storage(int8)
    assert [(r["shape"], r["dtype"], r["stored"], r["block"], r["read_as"]) for r in rows] == [
        ([100, INPUTS], "int8", "sparse", 16, "sparse"),
        ([CLASSES, 100], "int8", "sparse", 1, "dense"),
    ]
    plain = convert(loaded, DENSE_FLOAT, [INPUTS]).content
    assert plain is not None
    assert [(r["stored"], r["block"], r["read_as"]) for r in runtime.weight_storage(plain)] == [
        ("dense", None, "dense"),
        ("dense", None, "dense"),
    ]
    # LiteRT 2.3's behaviour, measured (bench/README.md, litert_export): once one
    # FULLY_CONNECTED reads a sparse weight, the default XNNPACK delegate takes no op of the
    # file, the dense ones included; this fails when a runtime delegates around it
    kernels = runtime.kernel_paths(int8)
    assert kernels["xnnpack_refused"] is None
    assert {op["kernel"] for op in kernels["ops"]} == {runtime.BUILTIN}


def test_fallback_note_says_why_xnnpack_took_nothing() -> None:
    dense = {"kernel_summary": {runtime.XNNPACK: 3, runtime.BUILTIN: 0}}
    storage = [
        {"tensor": "fc1", "read_as": "sparse"},
        {"tensor": "fc2", "read_as": "dense"},
    ]
    export = {"kernel_summary": {runtime.XNNPACK: 0, runtime.BUILTIN: 3}, "weight_storage": storage}
    note = _fallback_note("tflite_int8", dense, export)
    assert note is not None and note.startswith(
        "the tflite_int8 export runs 3 fewer op(s) on XNNPACK than the dense model (0 of 3)"
    )
    assert "a sparse kernel reads 1 weight(s) stored sparse" in note
    refused = {**export, "xnnpack_refused": "failed to prepare"}
    assert "XNNPACK refused the file (failed to prepare)" in (
        _fallback_note("tflite_int8", dense, refused) or ""
    )
    all_xnnpack = {"kernel_summary": {runtime.XNNPACK: 3}, "weight_storage": storage}
    assert _fallback_note("tflite_int8", dense, all_xnnpack) is None

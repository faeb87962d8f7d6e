"""A job's latency speed-up (interleaved, or sequential when memory is short) and the
"before" figures cached at inspection."""

from __future__ import annotations

import os
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from pydantic import ValidationError

from prunekit.formats import ModelFormat
from prunekit.inspection import inspect_model
from prunekit.metrics.flops import count_flops
from prunekit.metrics.latency import LatencyConfig
from prunekit.metrics.size import CODEC, ZIP_LEVEL, compressed_size, zip_directory
from prunekit.metrics.timing import TimingConfig
from prunekit.model import LoadedModel, load_model
from prunekit.pipeline import prune
from prunekit.spec import PruneSpec
from prunekit.speedup import SpeedupConfig, SpeedupMeasurement
from tests import tiny_models

QUICK = LatencyConfig(
    batch_sizes=(1, 32), timing=TimingConfig(warmup=1, min_pairs=5, max_pairs=40, budget_s=0.2)
)
SPEC = PruneSpec(strategy={"name": "magnitude", "sparsity": 0.5})


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "mlp.keras"
    tiny_models.mlp(seed=3).save(path)
    keras.backend.clear_session()
    return path


def _check_speedup_row(row: dict, method: str, batch: int) -> None:
    lo, hi = row["ci95"]
    assert row["method"] == method
    assert 0 < lo <= row["median"] <= hi
    assert row["runs"] >= 3 and row["a"]["runs"] >= 3 and row["b"]["runs"] >= 3
    assert row["rel_halfwidth"] == pytest.approx((hi - lo) / 2 / row["median"], abs=1e-3)
    ctx = row["context"]
    assert ctx["batch_size"] == batch and ctx["runtime"] == "tensorflow"
    assert ctx["device"].endswith("CPU:0") or "GPU" in ctx["device"]
    assert {"inter_op_threads", "intra_op_threads", "cpu_model", "logical_cpus"} <= set(ctx)
    assert "load_avg_1m_start" in ctx and "load_avg_1m_end" in ctx
    assert isinstance(ctx["loaded"], bool)
    assert ctx["sides"] == {"a": "original", "b": "pruned"}


@pytest.mark.timing
def test_a_job_reports_an_interleaved_speedup_with_its_interval(
    keras_file: Path, tmp_path: Path
) -> None:
    result = prune(keras_file, "keras", SPEC, tmp_path, timing=SpeedupConfig(latency=QUICK))
    m = result.metrics
    tf_rows = m["speedup"]["tf"]
    assert set(tf_rows) == {"batch_1", "batch_32"}
    for batch in (1, 32):
        row = tf_rows[f"batch_{batch}"]
        _check_speedup_row(row, "interleaved", batch)
        # before/after latency are the interleaved run's two sides
        assert m["before"]["latency"][f"batch_{batch}"] == row["a"]
        assert m["after"]["latency"][f"batch_{batch}"] == row["b"]
    assert not any("sequentially" in n for n in result.notes)
    keras.backend.clear_session()


def test_without_memory_for_a_second_copy_the_job_times_sequentially_and_says_so(
    keras_file: Path, tmp_path: Path
) -> None:
    cfg = SpeedupConfig(latency=QUICK, available_memory=lambda: 0)
    result = prune(keras_file, "keras", SPEC, tmp_path, timing=cfg)
    for batch in (1, 32):
        row = result.metrics["speedup"]["tf"][f"batch_{batch}"]
        _check_speedup_row(row, "sequential", batch)
        assert not row["converged"]
        assert result.metrics["before"]["latency"][f"batch_{batch}"]["median_ms"] > 0
    assert any("timed sequentially" in n and "does not fit" in n for n in result.notes)
    keras.backend.clear_session()


def test_the_memory_rule_compares_weight_bytes_with_the_available_memory() -> None:
    loaded = LoadedModel(ModelFormat.KERAS, keras_model=tiny_models.mlp())
    quick = LatencyConfig(batch_sizes=(1,), timing=TimingConfig(warmup=1, min_pairs=3, budget_s=0))

    def start(available: int) -> SpeedupMeasurement:
        cfg = SpeedupConfig(
            latency=quick,
            copy_memory_factor=3.0,
            memory_share=0.5,
            available_memory=lambda: available,
        )
        return SpeedupMeasurement.start(loaded, [8], "float32", 100, cfg)

    assert start(600).interleaved  # 100 bytes x 3 = 300 <= 0.5 x 600
    assert not start(599).interleaved
    keras.backend.clear_session()


def test_inspection_measures_the_before_figures_a_job_would(
    keras_file: Path, tmp_path: Path
) -> None:
    cached = inspect_model(keras_file, "keras")["before"]
    assert cached["size_bytes"] == {
        "raw": keras_file.stat().st_size,
        "compressed": compressed_size(keras_file),
        "codec": CODEC,
    }
    dense = 2 * (8 * 16 + 16 * 16 + 16 * 3)  # the MLP 8-16-16-3's multiply-accumulates x 2
    assert cached["flops"] == {"dense": dense, "nonzero": dense}
    assert cached["flops_sample_shape"] == [8]
    measured = prune(keras_file, "keras", SPEC, tmp_path / "a", timing=SpeedupConfig(latency=QUICK))
    before = measured.metrics["before"]
    assert before["size_bytes"] == cached["size_bytes"] and before["flops"] == cached["flops"]
    keras.backend.clear_session()


def test_a_job_uses_cached_before_figures_unless_their_codec_differs(
    keras_file: Path, tmp_path: Path
) -> None:
    flops = {"dense": 7, "nonzero": 5}
    cached = {
        "size_bytes": {"raw": 11, "compressed": 9, "codec": CODEC},
        "flops": flops,
        "flops_sample_shape": [8],
    }
    cfg = SpeedupConfig(latency=QUICK)
    used = prune(keras_file, "keras", SPEC, tmp_path / "a", before=cached, timing=cfg).metrics
    # the cache is what the job reports: it was not measured again
    assert used["before"]["size_bytes"] == cached["size_bytes"]
    assert used["before"]["flops"] == flops and used["size_bytes"]["original"] == 11
    stale = {**cached, "size_bytes": {"raw": 11, "compressed": 9, "codec": "zip, DEFLATE level 6"}}
    stale["flops_sample_shape"] = [9]  # counted for another input shape: not this job's
    remeasured = prune(keras_file, "keras", SPEC, tmp_path / "b", before=stale, timing=cfg)
    before = remeasured.metrics["before"]
    assert before["size_bytes"]["raw"] == keras_file.stat().st_size
    assert before["flops"]["dense"] == 2 * (8 * 16 + 16 * 16 + 16 * 3)
    keras.backend.clear_session()


def test_compressed_size_is_the_size_of_the_zip_without_writing_it(tmp_path: Path) -> None:
    src = tmp_path / "artifact"
    (src / "variables").mkdir(parents=True)
    np.save(src / "variables" / "w.npy", np.random.default_rng(0).normal(size=5000))
    (src / "zeros.bin").write_bytes(bytes(100_000))
    written = zip_directory(src, tmp_path / "a.zip")
    assert compressed_size(src) == os.path.getsize(written)
    with zipfile.ZipFile(written) as zf:
        infos = {i.filename: i for i in zf.infolist()}
    assert set(infos) == {"variables/", "variables/w.npy", "zeros.bin"}
    assert infos["zeros.bin"].compress_size < 1000  # DEFLATE level 1 still folds the zeros
    assert ZIP_LEVEL == 1 and CODEC == "zip, DEFLATE level 1"


# The job's latency budget. Batch 1 never converges (target 0) and may take pairs until the
# budget runs out, so once it is timed nothing is left for batch 32: the budget, not a mock,
# decides. 2 s hold batch 1's traces and warm-up even on a loaded machine.
GREEDY = LatencyConfig(
    batch_sizes=(1, 32),
    timing=TimingConfig(
        warmup=2, min_pairs=5, max_pairs=100_000, budget_s=60.0, floor_pairs=3,
        target_rel_halfwidth=0.0,
    ),
)  # fmt: skip
TIGHT = SpeedupConfig(latency=GREEDY, budget_s=2.0, budget_origin="PRUNEKIT_LATENCY_BUDGET_S")


def test_a_batch_size_the_latency_budget_cannot_hold_is_skipped_and_says_how_to_ask(
    keras_file: Path, tmp_path: Path
) -> None:
    result = prune(keras_file, "keras", SPEC, tmp_path, timing=TIGHT)
    m = result.metrics
    _check_speedup_row(m["speedup"]["tf"]["batch_1"], "interleaved", 1)
    skipped = m["speedup"]["tf"]["batch_32"]
    assert set(skipped) == {"skipped"}
    why = skipped["skipped"]
    assert why.startswith("batch 32 not timed: one batch-1 pass takes")
    assert "latency budget of 2 s (PRUNEKIT_LATENCY_BUDGET_S)" in why
    assert "measure.latency_force: true" in why and "measure.latency_budget_s" in why
    assert any(n == f"TF latency speed-up at {why}" for n in result.notes)
    # each side's latency block holds only what was timed
    assert (
        set(m["before"]["latency"])
        == set(m["after"]["latency"])
        == {
            "device",
            "device_name",
            "batch_1",
        }
    )
    assert "batch_32" not in m["delta"].get("latency", {})
    keras.backend.clear_session()


def test_the_spec_forces_every_batch_size_whatever_the_budget(
    keras_file: Path, tmp_path: Path
) -> None:
    spec = PruneSpec(
        strategy={"name": "magnitude", "sparsity": 0.5},
        measure={"latency_batch_sizes": [1, 32], "latency_force": True},
    )
    # forced: no budget cuts the pairs either, so the pairs' own budget must end batch 1
    forced = SpeedupConfig(
        latency=replace(GREEDY, timing=replace(GREEDY.timing, budget_s=0.3)), budget_s=0.001
    )
    result = prune(keras_file, "keras", spec, tmp_path, timing=forced)
    for batch in (1, 32):
        _check_speedup_row(result.metrics["speedup"]["tf"][f"batch_{batch}"], "interleaved", batch)
    assert not any("not timed" in n for n in result.notes)
    keras.backend.clear_session()


def test_the_spec_sets_the_batch_sizes_and_the_budget() -> None:
    spec = PruneSpec(
        strategy={"name": "magnitude", "sparsity": 0.5},
        measure={"latency_batch_sizes": [4, 1], "latency_budget_s": 90},
    )
    assert spec.measure is not None
    cfg = TIGHT.requested(
        spec.measure.latency_batch_sizes, spec.measure.latency_budget_s, spec.measure.latency_force
    )
    assert cfg.latency.batch_sizes == (4, 1) and cfg.latency.timing == GREEDY.timing
    assert cfg.budget_s == 90 and cfg.budget_origin == "measure.latency_budget_s"
    assert not cfg.force
    unset = TIGHT.requested([1, 32], None, False)  # no budget in the spec: the service's
    assert unset.budget_s == 2.0 and unset.budget_origin == "PRUNEKIT_LATENCY_BUDGET_S"


@pytest.mark.parametrize(
    ("measure", "field"),
    [
        ({"latency_budget_s": 0}, ("measure", "latency_budget_s")),
        ({"latency_budget_s": -1}, ("measure", "latency_budget_s")),
        ({"latency_budget_s": 3601}, ("measure", "latency_budget_s")),
        ({"latency_batch_sizes": []}, ("measure", "latency_batch_sizes")),
        ({"latency_batch_sizes": [0]}, ("measure", "latency_batch_sizes", 0)),
        ({"latency_batch_sizes": [1, 5000]}, ("measure", "latency_batch_sizes", 1)),
        ({"latency_batch_sizes": [1, 32, 1]}, ("measure", "latency_batch_sizes")),
        ({"latency_force": "sometimes"}, ("measure", "latency_force")),
        ({"latency_budget": 5}, ("measure", "latency_budget")),
    ],
)
def test_bad_measure_values_are_rejected_naming_the_field(
    measure: dict[str, Any], field: tuple[str | int, ...]
) -> None:
    with pytest.raises(ValidationError) as err:
        PruneSpec(strategy={"name": "magnitude", "sparsity": 0.5}, measure=measure)
    assert [e["loc"] for e in err.value.errors()] == [field]


def test_the_worker_passes_the_service_budget_to_the_engine() -> None:
    from prunekit.speedup import DEFAULT_BUDGET_S
    from worker.tasks import _speedup_config

    unset = _speedup_config(None)
    assert unset.budget_s == DEFAULT_BUDGET_S and "PRUNEKIT_LATENCY_BUDGET_S" in unset.budget_origin
    assert _speedup_config(40.0).budget_s == 40.0
    assert _speedup_config(40.0).budget_origin == "PRUNEKIT_LATENCY_BUDGET_S"


def test_an_in_place_job_recounts_flops_from_the_original_split_by_weight(
    keras_file: Path, tmp_path: Path
) -> None:
    cached = inspect_model(keras_file, "keras")["before"]
    assert cached["flops_by_weight"]["weights"] == {
        "dense_1/kernel": 2 * 8 * 16,
        "dense_2/kernel": 2 * 16 * 16,
        "logits/kernel": 2 * 16 * 3,
    }
    cfg = SpeedupConfig(latency=QUICK)
    result = prune(keras_file, "keras", SPEC, tmp_path, before=cached, timing=cfg)
    after = result.metrics["after"]["flops"]
    # by hand: every kernel weight is one multiply-accumulate per sample
    pruned = load_model(result.model_path, "keras")
    kernels = [w.numpy() for w in pruned.weights() if w.name.endswith("/kernel")]
    assert after == {"dense": cached["flops"]["dense"], "nonzero": 2 * sum(
        int(np.count_nonzero(k)) for k in kernels
    )}  # fmt: skip
    assert after["nonzero"] < after["dense"]
    assert after == count_flops(pruned).summary()  # freezing the pruned graph agrees
    keras.backend.clear_session()

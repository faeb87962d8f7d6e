"""The benchmark harness's pure parts: statistics, the result schema, the report renderer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import common, report
from bench.service_load import jobs_per_minute, parse_time


def test_median_odd_even_and_unsorted() -> None:
    assert common.median([3.0, 1.0, 2.0]) == 2.0
    assert common.median([4, 1, 3, 2]) == 2.5  # (2 + 3) / 2
    with pytest.raises(ValueError):
        common.median([])


def test_percentile_hand_computed() -> None:
    xs = [10.0, 20.0, 30.0, 40.0, 50.0]
    assert common.percentile(xs, 0) == 10.0
    assert common.percentile(xs, 100) == 50.0
    assert common.percentile(xs, 50) == 30.0
    # rank 0.25 * 4 = 1.0 -> 20; rank 0.99 * 4 = 3.96 -> 40 + 0.96 * 10
    assert common.percentile(xs, 25) == 20.0
    assert common.percentile(xs, 99) == pytest.approx(49.6)
    # 1..100: p99 at rank 98.01 -> 99 + 0.01 * 1
    assert common.percentile(range(1, 101), 99) == pytest.approx(99.01)
    assert common.percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        common.percentile(xs, 101)


def test_ratio() -> None:
    assert common.ratio(3.0, 2.0) == 1.5
    with pytest.raises(ValueError):
        common.ratio(1.0, 0.0)


def test_jobs_per_minute_from_service_timestamps() -> None:
    jobs = [
        {"created_at": "2025-01-01T00:00:00.000Z", "finished_at": "2025-01-01T00:00:10.000Z"},
        {"created_at": "2025-01-01T00:00:01.000Z", "finished_at": "2025-01-01T00:00:30.000Z"},
        {"created_at": "2025-01-01T00:00:02.500Z", "finished_at": "2025-01-01T00:00:20.000Z"},
    ]
    per_min, elapsed = jobs_per_minute(jobs)
    assert elapsed == pytest.approx(30.0)  # first created -> last finished
    assert per_min == pytest.approx(6.0)  # 3 jobs in half a minute
    assert parse_time("1970-01-01T00:01:00.500Z") == pytest.approx(60.5)


def _write(tmp: Path, suite: str, rows: list[dict], quick: bool = False, **kw: object) -> Path:
    machine = {"cpu": "Test CPU", "usable_cores": 2, "ram_gib": 8.0, "tensorflow": "2.21.0"}
    return common.write_result(
        suite,
        rows,
        f"python -m bench.run_all --only {suite}",
        quick=quick,
        machine=machine,
        results_dir=tmp,
        **kw,  # type: ignore[arg-type]
    )


def test_write_result_schema_and_quick_file_name(tmp_path: Path) -> None:
    full = _write(tmp_path, "demo", [{"a": 1}], extra={"k": [1, 2]})
    quick = _write(tmp_path, "demo", [{"a": 2}], quick=True)
    assert full.name == "demo.json" and quick.name == "demo.quick.json"
    doc = json.loads(full.read_text())
    assert doc["schema"] == 1 and doc["suite"] == "demo" and doc["quick"] is False
    assert doc["rows"] == [{"a": 1}] and doc["extra"] == {"k": [1, 2]}
    assert doc["machine"]["cpu"] == "Test CPU" and doc["created_at"].endswith("Z")
    with pytest.raises(ValueError):
        _write(tmp_path, "../evil", [])


def test_load_results_prefers_full_run_and_orders_suites(tmp_path: Path) -> None:
    _write(tmp_path, "service_load", [{"x": 1}], quick=True)
    _write(tmp_path, "engine_overhead", [{"x": "quick"}], quick=True)
    _write(tmp_path, "engine_overhead", [{"x": "full"}])
    _write(tmp_path, "quality_lenet300", [{"x": 3}])
    results = report.load_results(tmp_path)
    assert [r["suite"] for r in results] == ["quality_lenet300", "engine_overhead", "service_load"]
    assert results[1]["rows"] == [{"x": "full"}]
    (tmp_path / "junk.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="missing"):
        report.load_results(tmp_path)


def test_markdown_table_alignment_and_cells() -> None:
    rows = [
        {"strategy": "magnitude", "sparsity": 0.5, "accuracy": 0.98123, "note": None},
        {"strategy": "a|b", "sparsity": 0.9, "accuracy": 0.9, "params": 266610},
    ]
    table = report.markdown_table(rows)
    lines = table.strip().splitlines()
    assert lines[0] == "| strategy | sparsity | accuracy | note | params |"
    assert lines[1] == "|---|---:|---:|---|---:|"
    assert lines[2] == "| magnitude | 0.5 | 0.9812 |  |  |"
    assert lines[3] == "| a\\|b | 0.9 | 0.9 |  | 266,610 |"
    assert report.markdown_table(rows, ["accuracy"]).splitlines()[0] == "| accuracy |"
    assert report.markdown_table([]) == "_no rows_\n"


def test_plot_kinds_follow_columns() -> None:
    quality = [{"strategy": "m", "sparsity": 0.5, "accuracy": 0.9}]
    structured = [{"ratio": 0.5, "flops": 1e6, "latency_ms_b32": 3.0}]
    overhead = [{"measurement": "x", "time_ratio": 1.2}]
    assert report.plot_kinds(quality) == ["accuracy_vs_sparsity"]
    assert report.plot_kinds(structured) == ["latency_flops_vs_ratio"]
    assert report.plot_kinds(overhead) == ["overhead"]
    assert report.plot_kinds([{"workers": 1, "jobs_per_min": 10.0}]) == []


def test_render_document_from_synthetic_results(tmp_path: Path) -> None:
    results_dir = tmp_path / "results"
    _write(
        results_dir,
        "quality_lenet300",
        [
            {"strategy": "magnitude", "sparsity": 0.5, "accuracy": 0.98},
            {"strategy": "magnitude", "sparsity": 0.9, "accuracy": 0.97},
            {"strategy": "random", "sparsity": 0.9, "accuracy": 0.4},
        ],
        headline=[{"metric": "accuracy at 90 %", "value": 0.97, "unit": ""}],
        notes=["trained on train, reported on test"],
    )
    _write(
        results_dir,
        "engine_overhead",
        [{"measurement": "prune vs save", "time_ratio": 1.5, "memory_ratio": 2.0}],
        quick=True,
        headline=[{"metric": "prune / save", "value": 1.5, "unit": "x"}],
    )
    out = tmp_path / "docs" / "benchmarks.md"
    text = report.render(report.load_results(results_dir), out, plots=False)
    assert out.read_text() == text
    assert "## quality_lenet300\n" in text and "## engine_overhead (quick run)" in text
    assert "| strategy | sparsity | accuracy |" in text
    assert "| random | 0.9 | 0.4 |" in text
    assert "Reproduce: `python -m bench.run_all --only quality_lenet300`" in text
    assert "Test CPU, 2 cores, 8.0 GiB RAM, TF 2.21.0" in text
    assert "- trained on train, reported on test" in text
    assert "structured_vgg" not in text  # absent suites are simply not rendered
    heads = report.headline_rows(report.load_results(results_dir))
    assert heads[0].startswith("| accuracy at 90 % | 0.97 | `python -m bench.run_all")
    assert heads[1].startswith("| prune / save (quick) | 1.5x |")


def test_render_with_no_results(tmp_path: Path) -> None:
    text = report.render([], tmp_path / "b.md", plots=False)
    assert "No results yet" in text and "## Headline" not in text


def test_render_puts_the_hand_written_summary_after_the_introduction(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("## Results at a glance\n\nwritten by hand\n")
    text = report.render([], tmp_path / "b.md", plots=False, summary=summary)
    assert text.index("Generated by") < text.index("## Results at a glance\n\nwritten by hand")
    assert "written by hand" not in report.render([], tmp_path / "c.md", plots=False)


def test_the_committed_page_is_what_the_generator_writes(tmp_path: Path) -> None:
    """docs/benchmarks.md is generated: editing it by hand, or editing bench/summary.md or a
    result without re-running ``python -m bench.report``, fails here (plots aside)."""

    def text_only(page: str) -> list[str]:
        return [line for line in page.splitlines() if line and not line.startswith("![")]

    fresh = report.render(
        report.load_results(), tmp_path / "benchmarks.md", plots=False, summary=report.SUMMARY
    )
    assert text_only(fresh) == text_only(report.DOC.read_text())


def test_plots_are_written_when_matplotlib_is_installed(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    results_dir = tmp_path / "results"
    _write(results_dir, "structured_vgg", [
        {"ratio": 0.0, "flops": 3e8, "latency_ms_b32": 40.0},
        {"ratio": 0.5, "flops": 1e8, "latency_ms_b32": 15.0},
    ])  # fmt: skip
    _write(results_dir, "quality_lenet300", [
        {"strategy": "magnitude", "sparsity": 0.5, "accuracy": 0.98},
        {"strategy": "magnitude", "sparsity": 0.9, "accuracy": 0.97},
    ])  # fmt: skip
    _write(results_dir, "engine_overhead", [
        {"measurement": "prune", "time_ratio": 30.0, "memory_ratio": 2.0},
        {"measurement": "step", "time_ratio": 1.01, "memory_ratio": None},
    ])  # fmt: skip
    out = tmp_path / "docs" / "benchmarks.md"
    text = report.render(report.load_results(results_dir), out)
    for name in (
        "structured_vgg-latency_flops_vs_ratio",
        "quality_lenet300-accuracy_vs_sparsity",
        "engine_overhead-overhead",
    ):
        png = tmp_path / "docs" / "img" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](img/{name}.png)" in text


def test_service_code_never_imports_bench() -> None:
    root = Path(__file__).resolve().parents[2]
    offenders = [
        str(p.relative_to(root))
        for pkg in ("app", "worker", "prunekit")
        for p in (root / pkg).rglob("*.py")
        if any(
            line.strip().startswith(("import bench", "from bench"))
            for line in p.read_text().splitlines()
        )
    ]
    assert offenders == []
    assert (root / "app").is_dir() and (root / "prunekit").is_dir()


def test_suite_rank_groups_per_model_suites() -> None:
    assert report.suite_rank("compare_tfmot_lenet5") == report.suite_rank("compare_tfmot")
    assert report.suite_rank("compare_tfmot_lenet5") < report.suite_rank("engine_overhead")
    assert report.suite_rank("unknown") == len(report.SUITE_ORDER)


def test_tfmot_headline_picks_on_validation_not_test() -> None:
    from bench.compare_tfmot import headline

    rows = [
        {"strategy": "dense", "side": "keras3", "sparsity": 0.0, "accuracy": 0.98},
        {"strategy": "tfmot_polynomial", "side": "tfmot", "sparsity": 0.9, "accuracy": 0.97},
        # higher test accuracy but lower validation accuracy: must not be picked
        {"strategy": "l0", "side": "prunekit", "sparsity": 0.9, "accuracy": 0.99,
         "val_accuracy": 0.90},
        {"strategy": "gradual", "side": "prunekit", "sparsity": 0.9, "accuracy": 0.975,
         "val_accuracy": 0.95, "wall_ratio_vs_tfmot": 0.5},
        {"strategy": "gradual", "side": "prunekit", "sparsity": 0.5, "accuracy": 0.98,
         "val_accuracy": 0.96, "wall_ratio_vs_tfmot": 1.0},
    ]  # fmt: skip
    heads = headline(rows, "M")
    assert heads[0]["value"] == 98.0 and heads[0]["unit"] == "%"
    assert heads[1]["prunekit_strategy"] == "gradual"
    assert heads[1]["value"] == "97.50% (gradual) vs tfmot 97.00%"
    assert len(heads) == 3  # no 95 % rows: no 95 % entry
    assert heads[2]["value"] == 0.75 and heads[2]["unit"] == "x"  # median of 0.5 and 1.0


def test_cosine_runs_get_their_own_files_and_reproduce_with_schedule() -> None:
    from bench.compare_tfmot import raw_path, reproduce_command, suite_name
    from bench.config import default_config

    assert suite_name("lenet_300_100") == "compare_tfmot_lenet_300_100"
    assert suite_name("lenet_300_100", "constant") == "compare_tfmot_lenet_300_100"
    assert suite_name("lenet_300_100", "cosine") == "compare_tfmot_lenet_300_100_cosine"
    constant = default_config("lenet_300_100")
    assert raw_path(constant, False).name == "tfmot_lenet_300_100.json"
    assert raw_path(default_config("lenet5"), True).name == "tfmot_lenet5_cosine_quick.json"
    constant5 = default_config("lenet5", finetune_schedule="constant")
    assert raw_path(constant5, False).name == "tfmot_lenet5.json"
    config = default_config("lenet_300_100", finetune_schedule="cosine", finetune_lr=0.01)
    command, unexpressed = reproduce_command(config.to_dict(), quick=False)
    assert "--schedule cosine" in command and "--finetune-lr 0.01" in command
    assert unexpressed == []
    # distillation and seeds: their own files, and a command line that says so
    distilled = default_config(
        "lenet_300_100",
        finetune_schedule="cosine",
        seed=2,
        prunekit_distill={"alpha": 0.7, "temperature": 4.0},
    )
    assert raw_path(distilled, False).name == "tfmot_lenet_300_100_cosine_distill_seed2.json"
    command, unexpressed = reproduce_command(distilled.to_dict(), quick=False)
    assert "--distill 0.7,4" in command and "--seed 2" in command
    assert unexpressed == []
    smoothed = default_config(
        "lenet_300_100", finetune_schedule="cosine", seed=1, prunekit_label_smoothing=0.1
    )
    assert raw_path(smoothed, False).name == "tfmot_lenet_300_100_cosine_ls_seed1.json"
    command, unexpressed = reproduce_command(smoothed.to_dict(), quick=False)
    assert "--label-smoothing 0.1" in command and unexpressed == []


def _comparison(tmp: Path, seed: int, dense: float, rows: list[tuple]) -> Path:
    """A seed's comparison file: rows of (side, strategy, sparsity, accuracy, val)."""
    from bench.compare_tfmot import suite_name

    body = [{"side": "keras3", "strategy": "dense", "sparsity": 0.0, "accuracy": dense,
             "val_accuracy": dense}]  # fmt: skip
    body += [
        {"side": s, "strategy": n, "sparsity": sp, "accuracy": a, "val_accuracy": v}
        for s, n, sp, a, v in rows
    ]
    return _write(tmp, suite_name("lenet_300_100", "cosine", seed), body)


def test_seed_spread_drops_are_against_each_seeds_own_dense(tmp_path: Path) -> None:
    from bench import seed_spread

    # seed 0: dense 98.0, magnitude 97.9 (drop 0.1); seed 1: dense 98.4, magnitude 98.1
    # (drop 0.3); tfmot drops 0.5 and 0.7. gradual exists only in seed 0: left out.
    _comparison(
        tmp_path,
        0,
        0.980,
        [
            ("prunekit", "magnitude", 0.95, 0.979, 0.975),
            ("prunekit", "gradual", 0.95, 0.990, 0.990),
            ("tfmot", "tfmot_polynomial", 0.95, 0.975, 0.970),
        ],
    )
    seed1 = [
        ("prunekit", "magnitude", 0.95, 0.981, 0.977),
        ("tfmot", "tfmot_polynomial", 0.95, 0.977, 0.972),
    ]
    _comparison(tmp_path, 1, 0.984, seed1)
    path = seed_spread.summarise([0, 1], quick=False, results_dir=tmp_path)
    doc = common.read_result(path)
    rows = {(r["side"], r["strategy"]): r for r in doc["rows"]}
    assert ("prunekit", "gradual") not in rows
    mag = rows[("prunekit", "magnitude")]
    assert mag["seeds"] == 2
    assert mag["drop_mean"] == pytest.approx(0.2)
    # sample std of (0.1, 0.3) = sqrt(((-0.1)^2 + 0.1^2) / 1)
    assert mag["drop_std"] == pytest.approx(0.1414, abs=1e-3)
    assert (mag["drop_min"], mag["drop_max"]) == (pytest.approx(0.1), pytest.approx(0.3))
    assert mag["accuracy_mean"] == pytest.approx(98.0)
    assert mag["val_accuracy_mean"] == pytest.approx(97.6)
    assert rows[("tfmot", "tfmot_polynomial")]["drop_mean"] == pytest.approx(0.6)
    assert any("`magnitude` (best by validation)" in h["metric"] for h in doc["headline"])
    with pytest.raises(FileNotFoundError, match="seed"):
        seed_spread.summarise([0, 1, 2], quick=False, results_dir=tmp_path)

    # the label-smoothing variant reads its own files and writes its own suite
    from bench.compare_tfmot import suite_name

    dense = [{"side": "keras3", "strategy": "dense", "sparsity": 0.0, "accuracy": 0.98}]
    for seed in (0, 1):
        _write(tmp_path, suite_name("lenet_300_100", "cosine", seed, None, 0.1), dense)
    ls = common.read_result(
        seed_spread.summarise([0, 1], quick=False, results_dir=tmp_path, label_smoothing=0.1)
    )
    assert ls["suite"] == "seed_spread_ls" and "--label-smoothing 0.1" in ls["command"]
    assert seed_spread.seeds_to_run([0, 1, 2], False, 0.1) == [0, 1, 2]
    assert seed_spread.seeds_to_run([0, 1, 2], False) == [1, 2]


def test_report_leaves_per_seed_files_to_the_seed_spread(tmp_path: Path) -> None:
    _comparison(tmp_path, 0, 0.98, [])
    _comparison(tmp_path, 2, 0.98, [])
    suites = [d["suite"] for d in report.load_results(tmp_path)]
    assert suites == ["compare_tfmot_lenet_300_100_cosine"]


def test_run_all_suites_are_complete_commands() -> None:
    from bench import run_all

    assert run_all.SUITES["compare_tfmot_lenet5"].argv(False)[1:] == [
        "-m", "bench.compare_tfmot", "--model", "lenet5"]  # fmt: skip
    assert run_all.SUITES["structured_vgg"].argv(True)[-1] == "--quick"
    for name, suite in run_all.SUITES.items():
        assert (Path(common.REPO_ROOT) / "bench" / f"{suite.module}.py").exists(), name

"""Render every benchmark result into ``docs/benchmarks.md`` plus PNG plots.

Reads ``bench/results/*.json`` (schema in ``bench/common.py``). For each suite the full
run's file is used when there is one, else the quick run's (marked as such). Each suite gets
a section: the command that reproduces it, the machine, a Markdown table of its rows, its
notes and, when its rows have the right columns, a plot:

* rows with ``strategy``, ``sparsity``, ``accuracy``: accuracy vs sparsity, one line per
  strategy (the quality and tfmot suites); a ``dense`` strategy is drawn as a level line;
* rows with ``ratio``, ``flops``, ``latency_ms_b32``: FLOPs and latency vs channel ratio,
  one line per strategy from the ratio-0 row(s) when rows have a ``strategy`` (the
  structured suite);
* rows with ``measurement`` and ``time_ratio``: overhead bars (engine_overhead).

Suites that have not been run are simply absent. :func:`headline_rows` gives the headline
table rows from each result's ``headline`` entries. The hand-written part of the page (the
results at a glance, the suites, and the analysis of the structured and LiteRT runs) lives in
``bench/summary.md``; it is copied in after the page's introduction, so edit it there.

Run: ``python -m bench.report [--results DIR] [--out docs/benchmarks.md] [--summary FILE]``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, REPO_ROOT, RESULTS_DIR, describe_machine, read_result

DOC = REPO_ROOT / "docs" / "benchmarks.md"
SUMMARY = BENCH_DIR / "summary.md"  # the page's hand-written part
SEED_SUITE = re.compile(r"_seed\d+$")
IMG_SUBDIR = "img"  # plots go to docs/img/, linked relatively from docs/benchmarks.md

# Suites in the order the document shows them; others follow alphabetically.
SUITE_ORDER = [
    "quality_lenet300",
    "compare_tfmot",
    "seed_spread",
    "seed_spread_ls",
    "structured_vgg",
    "engine_overhead",
    "service_load",
    "chaos_drill",
]


# ------------------------------------------------------------------------------ loading
def load_results(results_dir: Path = RESULTS_DIR) -> list[dict[str, Any]]:
    """One result per suite (the full run's, else the quick run's), in document order.

    The extra seeds of a comparison (``..._seed<N>``) are left out: ``seed_spread``
    summarises them, and the seed-0 file is the comparison's own section."""
    by_suite: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        doc = read_result(path)
        suite = str(doc["suite"])
        if SEED_SUITE.search(suite):
            continue
        current = by_suite.get(suite)
        if current is None or (current.get("quick") and not doc.get("quick")):
            by_suite[suite] = doc
    return sorted(by_suite.values(), key=lambda d: (suite_rank(d["suite"]), d["suite"]))


def suite_rank(suite: str) -> int:
    """Position in ``SUITE_ORDER``; ``compare_tfmot_lenet5`` ranks as ``compare_tfmot``."""
    for i, name in enumerate(SUITE_ORDER):
        if suite == name or suite.startswith(f"{name}_"):
            return i
    return len(SUITE_ORDER)


# ------------------------------------------------------------------------------ tables
def format_value(value: Any) -> str:
    """A table cell: numbers shortened sensibly, ``None`` as an empty cell, pipes escaped."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 100_000 else str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value == 0:
            return "0"
        magnitude = abs(value)
        if magnitude >= 1e6:
            return f"{value:.3g}"
        if magnitude >= 100:
            return f"{value:.1f}"
        if magnitude >= 0.01:
            return f"{value:.4g}"
        return f"{value:.2e}"
    if isinstance(value, dict | list):
        value = json.dumps(value, separators=(",", ":"))
    return str(value).replace("|", "\\|").replace("\n", " ")


def table_columns(
    rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None
) -> list[str]:
    """``columns`` when given, else every key of the rows in first-seen order."""
    if columns:
        return list(columns)
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table; numeric columns are right-aligned."""
    cols = table_columns(rows, columns)
    if not rows or not cols:
        return "_no rows_\n"

    def numeric(col: str) -> bool:
        values = [r.get(col) for r in rows if r.get(col) is not None]
        return bool(values) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values
        )

    header = "| " + " | ".join(cols) + " |"
    rule = "|" + "|".join("---:" if numeric(c) else "---" for c in cols) + "|"
    body = ["| " + " | ".join(format_value(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join([header, rule, *body]) + "\n"


# ------------------------------------------------------------------------------ plots
def _has(rows: Iterable[dict[str, Any]], *keys: str) -> bool:
    rows = list(rows)
    return bool(rows) and all(any(r.get(k) is not None for r in rows) for k in keys)


def plot_kinds(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Which plots a suite's rows support."""
    kinds = []
    if _has(rows, "strategy", "sparsity", "accuracy"):
        kinds.append("accuracy_vs_sparsity")
    if _has(rows, "ratio", "flops", "latency_ms_b32"):
        kinds.append("latency_flops_vs_ratio")
    if _has(rows, "measurement", "time_ratio"):
        kinds.append("overhead")
    return kinds


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_vs_sparsity(rows: Sequence[dict[str, Any]], title: str, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    strategies = sorted({str(r["strategy"]) for r in rows if r.get("strategy") is not None})
    if "dense" in strategies:
        strategies.remove("dense")
        dense = [float(r["accuracy"]) for r in rows if r.get("strategy") == "dense"]
        if dense:
            ax.axhline(dense[0], color="black", linestyle="--", linewidth=0.9, label="dense")
    for strategy in strategies:
        points = sorted(
            (float(r["sparsity"]), float(r["accuracy"]))
            for r in rows
            if str(r.get("strategy")) == strategy
            and r.get("sparsity") is not None
            and r.get("accuracy") is not None
        )
        if points:
            xs, ys = zip(*points, strict=True)
            if strategy.startswith("tfmot"):  # the reference: black, drawn on top
                ax.plot(xs, ys, marker="D", color="black", linewidth=2.2, zorder=5,
                        label=strategy)  # fmt: skip
            else:
                ax.plot(xs, ys, marker="o", label=strategy)
    ax.set_xlabel("sparsity")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, plt, path)


def plot_latency_flops_vs_ratio(rows: Sequence[dict[str, Any]], title: str, path: Path) -> Path:
    plt = _pyplot()
    usable = [
        r
        for r in rows
        if r.get("ratio") is not None
        and r.get("flops") is not None
        and r.get("latency_ms_b32") is not None
    ]
    base = [r for r in usable if float(r["ratio"]) == 0]
    names = sorted({str(r["strategy"]) for r in usable if r.get("strategy") is not None} - {
        str(r.get("strategy")) for r in base
    })  # fmt: skip
    lines = {n: base + [r for r in usable if str(r.get("strategy")) == n] for n in names}
    if not lines:  # no strategies: one line through every row
        lines = {"": usable}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax2 = ax.twinx()
    for i, (name, line) in enumerate(lines.items()):
        points = sorted(
            (float(r["ratio"]), float(r["flops"]), float(r["latency_ms_b32"])) for r in line
        )
        if not points:
            continue
        xs, flops, lat = zip(*points, strict=True)
        suffix = f" ({name})" if name else ""
        style = ["-", "--", ":", "-."][i % 4]
        ax.plot(xs, [f / 1e6 for f in flops], marker="o", linestyle=style, color="tab:blue",
                label=f"MFLOPs{suffix}")  # fmt: skip
        ax2.plot(xs, lat, marker="s", linestyle=style, color="tab:red",
                 label=f"latency{suffix}")  # fmt: skip
    ax.set_xlabel("channel ratio pruned")
    ax.set_ylabel("MFLOPs per sample", color="tab:blue")
    ax2.set_ylabel("latency at batch 32 (ms)", color="tab:red")
    handles = ax.get_legend_handles_labels()
    handles2 = ax2.get_legend_handles_labels()
    if handles[0] or handles2[0]:
        ax.legend(handles[0] + handles2[0], handles[1] + handles2[1], fontsize=8)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, plt, path)


def plot_overhead(rows: Sequence[dict[str, Any]], title: str, path: Path) -> Path:
    plt = _pyplot()
    bars = [
        (str(r["measurement"]), float(r["time_ratio"]), r.get("memory_ratio"))
        for r in rows
        if r.get("time_ratio") is not None
    ]
    fig, ax = plt.subplots(figsize=(7.5, 0.6 + 0.55 * max(1, len(bars)) * 2))
    labels = [b[0] for b in bars]
    ys = list(range(len(bars)))
    timed = ax.barh([y * 2 + 0.4 for y in ys], [b[1] for b in bars], height=0.8, label="time")
    ax.bar_label(timed, fmt="%.2fx", fontsize=8, padding=2)
    mem = [(y, b[2]) for y, b in zip(ys, bars, strict=True) if b[2] is not None]
    if mem:
        held = ax.barh([y * 2 - 0.4 for y, _ in mem], [float(m) for _, m in mem], height=0.8,
                       label="peak memory")  # fmt: skip
        ax.bar_label(held, fmt="%.2fx", fontsize=8, padding=2)
    values = [b[1] for b in bars] + [float(m) for _, m in mem]
    if values and max(values) / max(min(values), 1e-9) > 20:
        ax.set_xscale("log")  # a 30x bar would flatten the 1.0x ones
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks([y * 2 for y in ys])
    ax.set_yticklabels([_wrap(label, 38) for label in labels], fontsize=8)
    ax.set_xlabel("prunekit / baseline (1 = no overhead)")
    ax.set_title(title)
    ax.legend()
    ax.invert_yaxis()
    return _save(fig, plt, path)


def _wrap(text: str, width: int) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return "\n".join([*lines, line])


def _save(fig: Any, plt: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


PLOTTERS = {
    "accuracy_vs_sparsity": plot_accuracy_vs_sparsity,
    "latency_flops_vs_ratio": plot_latency_flops_vs_ratio,
    "overhead": plot_overhead,
}


# ------------------------------------------------------------------------------ document
def render_section(doc: dict[str, Any], img_dir: Path | None, doc_dir: Path) -> str:
    """One suite's Markdown section; writes its plots into ``img_dir`` (``None``: no plots)."""
    suite = str(doc["suite"])
    rows = doc["rows"]
    quick = " (quick run)" if doc.get("quick") else ""
    lines = [f"## {suite}{quick}", ""]
    lines += [
        f"Reproduce: `{doc['command']}`  ",
        f"Machine: {describe_machine(doc.get('machine') or {})}  ",
        f"Measured: {doc.get('created_at', '?')}",
        "",
        markdown_table(rows, doc.get("columns")),
    ]
    for note in doc.get("notes") or []:
        lines.append(f"- {note}")
    if doc.get("notes"):
        lines.append("")
    if img_dir is not None:
        for kind in plot_kinds(rows):
            path = PLOTTERS[kind](
                rows, f"{suite}: {kind.replace('_', ' ')}", img_dir / f"{suite}-{kind}.png"
            )
            rel = path.relative_to(doc_dir).as_posix() if path.is_relative_to(doc_dir) else path
            lines += [f"![{suite} {kind}]({rel})", ""]
    return "\n".join(lines)


def headline_rows(results: Sequence[dict[str, Any]]) -> list[str]:
    """README headline table rows, ``| figure | value | command | machine |``, one per
    ``headline`` entry of every result (suites without a headline contribute nothing)."""
    rows = []
    for doc in results:
        machine = describe_machine(doc.get("machine") or {})
        quick = " (quick)" if doc.get("quick") else ""
        for h in doc.get("headline") or []:
            unit = h.get("unit") or ""
            value = format_value(h.get("value"))
            value = f"{value}{unit}" if unit == "x" else f"{value} {unit}".strip()
            rows.append(
                f"| {format_value(h.get('metric'))}{quick} | {value} | `{doc['command']}` "
                f"| {format_value(machine)} |"
            )
    return rows


def headline_table(results: Sequence[dict[str, Any]]) -> str:
    rows = headline_rows(results)
    if not rows:
        return ""
    return (
        "\n".join(["| figure | value | reproduce | machine |", "|---|---:|---|---|", *rows]) + "\n"
    )


def render(
    results: Sequence[dict[str, Any]],
    out: Path = DOC,
    plots: bool = True,
    summary: Path | None = None,
) -> str:
    """The whole document (also written to ``out``, with plots next to it under img/);
    ``summary``, a hand-written Markdown file, goes in after the introduction."""
    out = Path(out)
    img_dir = out.parent / IMG_SUBDIR if plots else None
    parts = [
        "# Benchmarks",
        "",
        "Generated by `bench/report.py` from `bench/results/*.json` and the hand-written "
        "`bench/summary.md`; do not edit this page by hand. `make bench` runs every suite and "
        "regenerates it (`make bench-quick`: a subset, in minutes; `make bench-report`: only "
        "the page). Ratios compare two things measured in the same run; times are medians.",
        "",
    ]
    if summary is not None and Path(summary).is_file():
        parts += [Path(summary).read_text().strip(), ""]
    if not results:
        parts += ["No results yet: run `make bench-quick` or `make bench`.", ""]
    headline = headline_table(results)
    if headline:
        parts += ["## Headline", "", headline]
    parts += [render_section(doc, img_dir, out.parent) for doc in results]
    text = "\n".join(parts).rstrip() + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--out", type=Path, default=DOC)
    parser.add_argument("--summary", type=Path, default=SUMMARY, help="hand-written part")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    results = load_results(args.results)
    render(results, args.out, plots=not args.no_plots, summary=args.summary)
    print(f"wrote {args.out} from {len(results)} suite(s)")
    return Path(args.out)


if __name__ == "__main__":
    main()

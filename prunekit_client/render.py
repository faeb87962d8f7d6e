"""What the CLI prints for people: tables of jobs, models, datasets, strategies and the
before/after table of a finished job (``--json`` prints the API's documents instead)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.table import Column, Table


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _get(doc: dict[str, Any] | None, *path: str) -> Any:
    for name in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(name)
    return doc


def _percent(x: Any) -> str:
    return "-" if x is None else f"{100 * float(x):.1f}%"


def _count(x: Any) -> str:
    return "-" if x is None else f"{int(x):,}"


def _ms(x: Any) -> str:
    return "-" if x is None else f"{float(x):.3f} ms"


def _number(x: Any) -> str:
    return "-" if x is None else f"{float(x):.4f}"


def _ratio(before: Any, after: Any) -> str:
    if not before or after is None:
        return ""
    return f"x{float(after) / float(before):.2f}"


def _change(before: Any, after: Any) -> str:
    if before is None or after is None:
        return ""
    return f"{float(after) - float(before):+.4f}"


Row = tuple[str, Sequence[str], Callable[[Any], str], Callable[[Any, Any], str]]

ROWS: list[Row] = [
    ("parameters", ("parameters", "total"), _count, _ratio),
    ("non-zero parameters", ("parameters", "nonzero"), _count, _ratio),
    ("sparsity", ("sparsity",), _percent, lambda b, a: ""),
    ("size", ("size_bytes", "raw"), human_bytes, _ratio),
    ("size compressed", ("size_bytes", "compressed"), human_bytes, _ratio),
    ("FLOPs (non-zero)", ("flops", "nonzero"), _count, _ratio),
    ("accuracy", ("accuracy",), _percent, _change),
    ("macro F1", ("macro_f1",), _number, _change),
    ("loss", ("loss",), _number, _change),
    ("latency batch 1", ("latency", "batch_1", "median_ms"), _ms, _ratio),
    ("latency batch 32", ("latency", "batch_32", "median_ms"), _ms, _ratio),
]


def report_table(report: dict[str, Any]) -> Table:
    """Before, after and change of the numbers a person checks first; the speed-up with its
    95% interval; each export's size; rows the report lacks are left out."""
    before, after = report.get("before") or {}, report.get("after") or {}
    table = Table(title=f"job {report.get('job_id')}: {_strategy(report.get('strategy'))}")
    for column in ("", "before", "after", "change"):
        table.add_column(column, justify="left" if not column else "right")
    for label, path, fmt, change in ROWS:
        b, a = _get(before, *path), _get(after, *path)
        if b is None and a is None:
            continue
        table.add_row(label, fmt(b), fmt(a), change(b, a))
    agreement = _get(after, "agreement", "top1")
    if agreement is not None:
        table.add_row("top-1 agreement", "", _percent(agreement), "")
    for runtime, batches in sorted((report.get("speedup") or {}).items()):
        for batch, row in sorted((batches or {}).items()):
            if not isinstance(row, dict) or row.get("median") is None:
                continue
            low, high = (row.get("ci95") or [None, None])[:2]
            interval = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
            label = f"speed-up {runtime} {batch.replace('_', ' ')}"
            table.add_row(label, "", "", f"x{row['median']:.2f}{interval}")
    for fmt_name, export in sorted((report.get("exports") or {}).items()):
        if not isinstance(export, dict):
            continue
        if export.get("status") == "succeeded" or export.get("size_bytes") is not None:
            table.add_row(f"export {fmt_name}", "", human_bytes(export.get("size_bytes")), "")
        else:
            table.add_row(f"export {fmt_name}", "", str(export.get("status")), "")
    return table


def _strategy(strategy: Any) -> str:
    if not isinstance(strategy, dict):
        return str(strategy)
    params = ", ".join(f"{k}={v}" for k, v in strategy.items() if k != "name" and v is not None)
    return f"{strategy.get('name')}({params})"


def _id_column() -> Column:
    """Ids are copied into the next command: never cut or wrapped."""
    return Column("id", no_wrap=True, min_width=32)


def jobs_table(jobs: Sequence[dict[str, Any]]) -> Table:
    table = Table("status", "strategy", "phase", "progress", "created")
    table.columns.insert(0, _id_column())
    for job in jobs:
        progress = job.get("progress") or {}
        table.add_row(
            job.get("id", ""),
            job.get("status", ""),
            _strategy((job.get("spec") or {}).get("strategy")),
            str(progress.get("phase", "")),
            _percent(progress.get("fraction")),
            job.get("created_at", ""),
        )
    return table


def job_table(job: dict[str, Any]) -> Table:
    table = Table("field", "value", show_header=False)
    progress = job.get("progress") or {}
    error = job.get("error") or {}
    rows = [
        ("id", job.get("id")),
        ("status", job.get("status")),
        ("model", job.get("model_id")),
        ("dataset", job.get("dataset_id")),
        ("strategy", _strategy((job.get("spec") or {}).get("strategy"))),
        ("progress", f"{progress.get('phase', '')} {_percent(progress.get('fraction'))}"),
        ("attempts", job.get("attempts")),
        ("created", job.get("created_at")),
        ("started", job.get("started_at")),
        ("finished", job.get("finished_at")),
        ("error", f"{error.get('reason')}: {error.get('message')}" if error else None),
    ]
    for name, value in rows:
        if value is not None:
            table.add_row(name, str(value))
    return table


def _event_cells(event: dict[str, Any]) -> list[str]:
    data = event.get("data") or {}
    return [
        str(event.get("seq", "")),
        str(event.get("at", "")),
        str(event.get("type", "")),
        str(event.get("message") or ""),
        ", ".join(f"{k}={v}" for k, v in data.items()),
    ]


def events_table(events: Sequence[dict[str, Any]]) -> Table:
    table = Table("seq", "at", "type", "message", "data")
    for event in events:
        table.add_row(*_event_cells(event))
    return table


def event_line(event: dict[str, Any]) -> str:
    """One event as one line, for ``jobs events --follow``."""
    return "  ".join(cell for cell in _event_cells(event) if cell)


def models_table(models: Sequence[dict[str, Any]]) -> Table:
    table = Table("filename", "format", "size", "inspection", "sha256", "created")
    table.columns.insert(0, _id_column())
    for m in models:
        table.add_row(
            m.get("id", ""),
            m.get("filename", ""),
            m.get("format", ""),
            human_bytes(m.get("size_bytes")),
            str((m.get("inspection") or {}).get("status", "")),
            str(m.get("sha256", ""))[:12],
            m.get("created_at", ""),
        )
    return table


def datasets_table(datasets: Sequence[dict[str, Any]]) -> Table:
    table = Table("filename", "size", "splits", "sha256", "created")
    table.columns.insert(0, _id_column())
    for d in datasets:
        splits = ", ".join(f"{k}: {v.get('samples')}" for k, v in (d.get("splits") or {}).items())
        table.add_row(
            d.get("id", ""),
            d.get("filename", ""),
            human_bytes(d.get("size_bytes")),
            splits,
            str(d.get("sha256", ""))[:12],
            d.get("created_at", ""),
        )
    return table


def strategies_table(strategies: Sequence[dict[str, Any]]) -> Table:
    table = Table("name", "aliases", "kind", "needs data", "parameters")
    for s in strategies:
        params = (s.get("parameters") or {}).get("properties") or {}
        table.add_row(
            str(s.get("name", "")),
            ", ".join(s.get("aliases") or []),
            str(s.get("kind", "")),
            "yes" if s.get("needs_data") else "no",
            ", ".join(p for p in params if p != "name"),
        )
    return table

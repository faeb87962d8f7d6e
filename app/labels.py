"""Labels (``metadata``): a small string -> string map on models, datasets and jobs.

Set at creation (jobs: ``"metadata"`` in the JSON body; models and datasets: query
parameters of the upload, ``POST /v1/models?metadata[team]=vision``), returned with the
record, and matched exactly in lists (``GET /v1/jobs?metadata[team]=vision``; several
``metadata[...]`` parameters must all match). Bounded: at most ``MAX_KEYS`` keys, each
``[a-z0-9_.-]{1,63}``, each value at most ``MAX_VALUE_CHARS`` characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from app.problems import validation_problem
from core.records import page_ids

MAX_KEYS = 16
MAX_VALUE_CHARS = 256
KEY_PATTERN = re.compile(r"[a-z0-9_.-]{1,63}")
QUERY_KEY = re.compile(r"metadata\[(.*)\]")
MAX_SCANNED = 5000  # records one filtered list page looks at, at most


def problems(metadata: Mapping[str, str]) -> list[tuple[str | None, str]]:
    """What is wrong with ``metadata``: (key or None for the whole map, message) pairs."""
    out: list[tuple[str | None, str]] = []
    if len(metadata) > MAX_KEYS:
        out.append((None, f"at most {MAX_KEYS} keys, not {len(metadata)}"))
    for k, v in metadata.items():
        if not KEY_PATTERN.fullmatch(k):
            out.append((k, "a key is 1-63 characters of a-z, 0-9, '_', '.', '-'"))
        if len(v) > MAX_VALUE_CHARS:
            out.append((k, f"a value is at most {MAX_VALUE_CHARS} characters, not {len(v)}"))
    return out


def check(metadata: dict[str, str]) -> dict[str, str]:
    """A pydantic validator: ``metadata`` when within bounds, else ValueError naming why."""
    found = problems(metadata)
    if found:
        raise ValueError("; ".join(f"{k!r}: {m}" if k else m for k, m in found))
    return metadata


def from_query(params: Any) -> dict[str, str]:
    """``metadata[key]=value`` query parameters as a map; 422 naming the parameter when
    they break the bounds (or one key is given twice)."""
    out: dict[str, str] = {}
    errors = []
    for name, value in params.multi_items():
        match = QUERY_KEY.fullmatch(name)
        if match is None:
            continue
        if match.group(1) in out:
            errors.append({"field": f"query.{name}", "message": "given twice", "type": "value"})
        out[match.group(1)] = value
    for k, message in problems(out):
        field = "query.metadata" if k is None else f"query.metadata[{k}]"
        errors.append({"field": field, "message": message, "type": "value"})
    if errors:
        raise validation_problem(errors)
    return out


def matches(record: Mapping[str, Any], wanted: Mapping[str, str]) -> bool:
    labels = record.get("metadata") or {}
    return all(labels.get(k) == v for k, v in wanted.items())


R = TypeVar("R", bound=Mapping[str, Any])  # a record type (core.records)


def filtered_page(
    r: Any,
    index_key: str,
    get: Callable[[str], R | None],
    limit: int,
    after: str | None,
    keep: Callable[[R], bool],
    floor_ms: int | None = None,
) -> tuple[list[R], str | None]:
    """One page of records (newest first) that ``keep`` accepts, after the id ``after``.

    The index is read in chunks until ``limit`` records are kept, the index ends, an id's
    score (creation time in ms) is at or below ``floor_ms``, or ``MAX_SCANNED`` records were
    looked at; in the last case the page may be short and ``next_after`` still continues
    the scan. ``next_after`` is None when nothing is left.
    """
    items: list[R] = []
    scanned = 0
    cursor = after
    while scanned < MAX_SCANNED:
        ids = page_ids(r, index_key, min(200, MAX_SCANNED - scanned), cursor)
        if not ids:
            return items, None
        scores = r.zmscore(index_key, ids) if floor_ms is not None else [None] * len(ids)
        for record_id, score in zip(ids, scores, strict=True):
            if floor_ms is not None and score is not None and score <= floor_ms:
                return items, None
            scanned += 1
            cursor = record_id
            record = get(record_id)
            if record is not None and keep(record):
                items.append(record)
                if len(items) == limit:
                    return items, record_id
    return items, cursor

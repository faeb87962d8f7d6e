"""Shared helpers for records kept as Redis hashes (JSON-encoded field values)."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def new_id() -> str:
    return uuid.uuid4().hex


def is_record_id(ident: str) -> bool:
    """Whether ``ident`` could name a record. Ids from a URL become part of a Redis key, so
    ``<id>:events`` would reach another key (of another type, maybe another tenant's):
    such an id names nothing, and its lookup answers 404 like any unknown id."""
    return ID_PATTERN.fullmatch(ident) is not None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_ms() -> int:
    return int(time.time() * 1000)


def encode(fields: dict[str, Any]) -> dict[str, str]:
    """Hash fields: each value JSON-encoded, so types survive the round trip."""
    return {k: json.dumps(v) for k, v in fields.items()}


def decode(raw: dict[str, str]) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in raw.items()}


def page_ids(r: Any, index_key: str, limit: int, after: str | None) -> list[str]:
    """Ids from a sorted-set index, newest first, starting after the id ``after``."""
    start = 0
    if after is not None:
        rank = r.zrevrank(index_key, after)
        if rank is None:
            return []
        start = rank + 1
    return list(r.zrevrange(index_key, start, start + limit - 1))


def load_page(
    ids: list[str], get: Callable[[str], dict[str, Any] | None], limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """The records of one page of ``ids`` (skipping any deleted meanwhile) and the cursor
    for the next page (the last id, when the page is full)."""
    items = [r for r in (get(i) for i in ids) if r is not None]
    return items, (ids[-1] if len(ids) == limit else None)

"""Which jobs a list shows: by status, creation time and labels (``GET /v1/jobs``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app import labels


def _parse_time(raw: str) -> datetime:
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))


@dataclass(frozen=True)
class JobFilter:
    statuses: frozenset[str] = frozenset()
    created_after: datetime | None = None  # timezone-aware
    metadata: dict[str, str] = field(default_factory=dict)

    def active(self) -> bool:
        return bool(self.statuses or self.created_after or self.metadata)

    def floor_ms(self) -> int | None:
        """Jobs indexed at or before this time (ms) were created before ``created_after``."""
        return int(self.created_after.timestamp() * 1000) if self.created_after else None

    def keep(self, record: Mapping[str, Any]) -> bool:
        if self.statuses and record.get("status") not in self.statuses:
            return False
        if self.created_after and _parse_time(record["created_at"]) <= self.created_after:
            return False
        return labels.matches(record, self.metadata)

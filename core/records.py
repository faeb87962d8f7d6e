"""The records kept as Redis hashes (JSON-encoded field values): their types and helpers.

A record is a Redis hash whose fields are JSON values; the stores (``core.<kind>.store``) read
and write whole records or single fields, so records travel as plain dicts, typed here as
:class:`~typing.TypedDict` s: mypy checks every field name and value type, and a record still
encodes, updates field by field and answers through the API's response models unchanged.
Fields a record gains after creation (``lease_token``, a job's deadline or webhook) are
``NotRequired``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, NotRequired, TypedDict, TypeVar

from redis.typing import EncodableT, FieldT

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


def encode(fields: Mapping[str, object]) -> dict[FieldT, EncodableT]:
    """Hash fields: each value JSON-encoded, so types survive the round trip."""
    return {k: json.dumps(v) for k, v in fields.items()}


def decode(raw: Mapping[bytes | str, bytes | str]) -> dict[str, Any]:
    return {text(k): json.loads(v) for k, v in raw.items()}


def text(value: bytes | str) -> str:
    """A value read from Redis (the client decodes responses: always ``str`` at run time)."""
    return value if isinstance(value, str) else value.decode()


def texts(values: Iterable[bytes | str]) -> list[str]:
    return [text(v) for v in values]


def page_ids(r: Any, index_key: str, limit: int, after: str | None) -> list[str]:
    """Ids from a sorted-set index, newest first, starting after the id ``after``."""
    start = 0
    if after is not None:
        rank = r.zrevrank(index_key, after)
        if rank is None:
            return []
        start = rank + 1
    return list(r.zrevrange(index_key, start, start + limit - 1))


R = TypeVar("R")


def load_page(
    ids: list[str], get: Callable[[str], R | None], limit: int
) -> tuple[list[R], str | None]:
    """The records of one page of ``ids`` (skipping any deleted meanwhile) and the cursor
    for the next page (the last id, when the page is full)."""
    items = [r for r in (get(i) for i in ids) if r is not None]
    return items, (ids[-1] if len(ids) == limit else None)


# ------------------------------------------------------------------ record types
class ErrorRecord(TypedDict):
    """Why a job or an inspection failed: a machine-readable reason and what to do."""

    reason: str
    message: str


class Inspection(TypedDict):
    """A model's inspection by a worker: pending until one records its outcome, once."""

    status: Literal["pending", "succeeded", "failed"]
    details: NotRequired[dict[str, Any] | None]  # signatures, parameters, layers
    error: NotRequired[ErrorRecord | None]
    attempts: NotRequired[int]  # deliveries to an inspector so far
    inspector: NotRequired[str]  # host:pid:token of the latest (core.holders)
    finished_at: NotRequired[str]


class ModelRecord(TypedDict):
    """An uploaded model (``<prefix>:model:<id>``); its file is under ``path``."""

    id: str
    tenant: str
    filename: str
    format: str  # a prunekit.formats.ModelFormat value
    size_bytes: int
    sha256: str
    created_at: str
    metadata: dict[str, str]
    path: str  # relative to the artifacts root (core.storage.resolve)
    inspection: Inspection


class SplitRecord(TypedDict):
    """One split of a dataset (train, val, test) as its header describes it."""

    samples: int
    x_shape: list[int]
    x_dtype: str
    y_shape: list[int]
    y_dtype: str


class DatasetRecord(TypedDict):
    """An uploaded ``.npz`` dataset (``<prefix>:dataset:<id>``)."""

    id: str
    tenant: str
    filename: str
    size_bytes: int
    sha256: str
    created_at: str
    metadata: dict[str, str]
    path: str
    splits: dict[str, SplitRecord]


class ProgressRecord(TypedDict):
    phase: str
    fraction: float
    detail: NotRequired[dict[str, Any] | None]


class ArtifactRecord(TypedDict):
    """A downloadable output of a succeeded job, as published (the bytes hashed are those)."""

    path: str  # relative to the artifacts root
    format: str  # a prunekit.formats.ArtifactFormat value
    filename: str
    media_type: str
    size_bytes: int
    sha256: str
    alternates: NotRequired[dict[str, ArtifactRecord]]  # the other formats, by format


class JobHandling(TypedDict, total=False):
    """How the service handles a job, beside the engine's spec: its webhook and deadline."""

    webhook: dict[str, Any] | None  # core.webhooks.dispatch reads it
    deadline_seconds: float
    deadline_at: str


class JobRecord(JobHandling):
    """A pruning job (``<prefix>:job:<id>``): what was asked, where it stands, what came of
    it. ``status`` is a :class:`core.jobs.status.JobStatus` value; only
    :func:`core.jobs.store.transition` changes it."""

    id: str
    tenant: str
    model_id: str
    dataset_id: str | None
    metadata: dict[str, str]
    request_id: str | None  # the submitting request, for the worker's logs
    status: str
    progress: ProgressRecord
    spec: dict[str, Any]  # the engine's PruneSpec, as JSON
    metrics: dict[str, Any] | None
    error: ErrorRecord | None
    attempts: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    updated_at: str
    artifact: NotRequired[ArtifactRecord]  # once succeeded: the pruned model
    lease_token: NotRequired[int]  # the latest lease acquisition (core.jobs.store.Fence)
    queue: NotRequired[str]  # where it was sent (core.routing); absent: PRUNEKIT_QUEUE
    routing: NotRequired[dict[str, Any]]  # core.routing.Route.as_dict(), shown to the client


class DeliveryAttempt(TypedDict):
    """One try at delivering a webhook: what the receiver answered, or why it failed."""

    attempt: int
    at: str
    status_code: int | None
    latency_ms: float
    error: str | None
    next_retry_at: str | None


class DeliveryRecord(TypedDict):
    """One webhook delivery of a job event (in the job's ``<prefix>:job:<id>:webhooks``)."""

    id: str  # the webhook-id header: the same on every retry
    seq: int  # orders deliveries created in the same millisecond
    tenant: str
    event: str
    url: str
    status: Literal["pending", "retrying", "delivered", "failed", "superseded"]
    created_at: str
    attempts: list[DeliveryAttempt]
    payload: dict[str, Any]

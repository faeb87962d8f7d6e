"""Per-tenant limits: unfinished jobs at once (429) and bytes of uploads kept (413).

* ``PRUNEKIT_TENANT_MAX_ACTIVE_JOBS``: a tenant's queued, running and cancelling jobs. A
  submission beyond it is ``429 too-many-active-jobs`` (``Retry-After`` set); counting and
  recording happen under a per-tenant Redis lock, so concurrent submissions cannot overshoot.
* ``PRUNEKIT_TENANT_MAX_STORED_BYTES``: the sizes of a tenant's models and datasets as
  uploaded. An upload that would pass it is ``413 storage-quota-exceeded``, refused while it
  streams (the cap of that upload is what is left) and checked again before it is recorded.

``0`` turns a limit off. Usage is computed from the tenant's own indexes, so deleting a model
or dataset frees its bytes at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from app.problems import Problem
from core.records import texts
from core.redis import get_redis, key, tenant_index, zset_members
from core.settings import get_settings

UNFINISHED = ("queued", "running", "cancelling")
RETRY_AFTER_S = 30


def active_jobs(tenant: str) -> int:
    """How many of the tenant's jobs are unfinished (from the set of all unfinished jobs)."""
    r = get_redis()
    ids = texts(r.smembers(key("jobs", "active")))
    with r.pipeline(transaction=False) as p:
        for job_id in ids:
            p.hmget(key("job", job_id), "tenant", "status")
        rows = p.execute()
    return sum(
        1
        for owner, status in rows
        if owner is not None
        and json.loads(owner) == tenant
        and status is not None
        and json.loads(status) in UNFINISHED
    )


@contextmanager
def _guarded(
    tenant: str, lock: str, limit: int, refusal: Callable[[], Problem | None]
) -> Iterator[None]:
    """Under the tenant's ``lock``: raise ``refusal()`` if it is a problem, else run the body
    (which records what was counted). A ``limit`` of 0 or less checks nothing."""
    if limit <= 0:
        yield
        return
    with get_redis().lock(key("tenant", tenant, lock), timeout=60, blocking_timeout=60):
        problem = refusal()
        if problem is not None:
            raise problem
        yield


def too_many_jobs(count: int, limit: int) -> Problem | None:
    if count < limit:
        return None
    return Problem(
        429,
        "too-many-active-jobs",
        "Too many unfinished jobs",
        f"this tenant has {count} unfinished jobs, the limit is {limit} "
        "(PRUNEKIT_TENANT_MAX_ACTIVE_JOBS on the server); wait for one to finish or cancel one",
        headers={"Retry-After": str(RETRY_AFTER_S)},
        limit=limit,
        setting="PRUNEKIT_TENANT_MAX_ACTIVE_JOBS",
    )


def job_slot(tenant: str) -> AbstractContextManager[None]:
    """Count and record a job under the tenant's lock; 429 when the tenant already has
    ``PRUNEKIT_TENANT_MAX_ACTIVE_JOBS`` unfinished jobs."""
    limit = get_settings().tenant_max_active_jobs
    return _guarded(tenant, "submit-lock", limit, lambda: too_many_jobs(active_jobs(tenant), limit))


def stored_bytes(tenant: str) -> int:
    """The sizes of the tenant's models and datasets, as uploaded."""
    r = get_redis()
    total = 0
    for kind in ("model", "dataset"):
        ids = zset_members(tenant_index(tenant, f"{kind}s"))
        with r.pipeline(transaction=False) as p:
            for ident in ids:
                p.hget(key(kind, ident), "size_bytes")
            total += sum(json.loads(v) for v in p.execute() if v is not None)
    return total


def storage_exceeded(used: int, limit: int) -> Problem:
    return Problem(
        413,
        "storage-quota-exceeded",
        "Storage quota exceeded",
        f"this tenant's models and datasets take {used} bytes; with this upload they would "
        f"pass the limit of {limit} bytes (PRUNEKIT_TENANT_MAX_STORED_BYTES on the server). "
        "Delete models or datasets you no longer need",
        limit_bytes=limit,
        used_bytes=used,
        setting="PRUNEKIT_TENANT_MAX_STORED_BYTES",
    )


def upload_allowance(tenant: str) -> tuple[int, Problem | None]:
    """The most bytes the tenant's next upload may have, and the problem that refuses more
    (``None``: the upload cap, not the quota, is the binding limit)."""
    settings = get_settings()
    limit = settings.tenant_max_stored_bytes
    if limit <= 0:
        return settings.max_upload_bytes, None
    used = stored_bytes(tenant)
    left = limit - used
    if left <= 0:
        raise storage_exceeded(used, limit)
    if left < settings.max_upload_bytes:
        return left, storage_exceeded(used, limit)
    return settings.max_upload_bytes, None


def storage_slot(tenant: str, incoming: int) -> AbstractContextManager[None]:
    """Check ``incoming`` more bytes against the tenant's quota (413 if they would pass it)
    and record them, under the tenant's upload lock."""
    limit = get_settings().tenant_max_stored_bytes

    def refusal() -> Problem | None:
        used = stored_bytes(tenant)
        return storage_exceeded(used, limit) if used + incoming > limit else None

    return _guarded(tenant, "store-lock", limit, refusal)

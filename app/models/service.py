"""Model uploads: receive, recognise, unpack, record, then ask a worker to inspect."""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import Request

from app import labels, quotas
from app.auth.tenancy import owned_or_404
from app.models import archive
from app.offload import off_loop
from app.problems import Problem
from app.publishing import publish_then_record
from app.uploads import ReceivedFile, receive_file
from core import storage
from core.models import store
from core.queue import INSPECT_MODEL, enqueue
from core.records import ModelRecord, load_page, new_id, now_iso
from core.redis import get_redis, tenant_index
from core.settings import get_settings
from prunekit.formats import ModelFormat

MODEL_FILES = {ModelFormat.SAVED_MODEL: "saved_model", ModelFormat.KERAS: "model.keras"}


def _limits() -> archive.Limits:
    s = get_settings()
    return archive.Limits(
        max_members=s.max_archive_members,
        max_total_bytes=s.max_extracted_bytes,
        max_ratio=s.max_compression_ratio,
    )


async def upload(
    request: Request, tenant: str, metadata: dict[str, str] | None = None
) -> ModelRecord:
    """Stream the body to disk (on the event loop), then check, unpack and record it in a
    worker thread (:func:`app.offload.off_loop`): a hostile archive never stalls the API."""
    model_id = new_id()
    scratch = storage.scratch_dir(f"upload-{model_id}-")
    try:
        max_bytes, over_quota = await off_loop(quotas.upload_allowance, tenant)
        received = await receive_file(request, scratch / "upload", "file", max_bytes, over_quota)
        return await off_loop(_accept, model_id, tenant, received, scratch, metadata or {})
    finally:
        await off_loop(shutil.rmtree, scratch, True)


def _accept(
    model_id: str,
    tenant: str,
    received: ReceivedFile,
    scratch: Path,
    metadata: dict[str, str] | None = None,
) -> ModelRecord:
    """Recognise, unpack and publish an upload, record it and ask for its inspection."""
    settings = get_settings()
    detected = archive.detect(received.path, received.head, _limits(), settings.allow_h5)
    staged = scratch / "model"
    staged.mkdir()
    filename = "model.h5" if detected.container == "h5" else MODEL_FILES[detected.format]
    target = staged / filename
    if detected.container in ("keras", "h5"):
        received.path.replace(target)
    else:
        archive.extract_saved_model(received.path, detected.container, target, _limits())
    record: ModelRecord = {
        "id": model_id,
        "tenant": tenant,
        "filename": received.filename,
        "format": detected.format.value,
        "size_bytes": received.size,
        "sha256": received.sha256,
        "created_at": now_iso(),
        "metadata": metadata or {},
        "path": storage.relative(storage.model_dir(model_id) / filename),
        "inspection": {"status": "pending"},
    }
    # the record exists before any worker hears of it
    publish_then_record(staged, storage.model_dir(model_id), tenant, received.size,
                        lambda: store.create(record))  # fmt: skip
    enqueue(INSPECT_MODEL, model_id)
    return record


def get_or_404(model_id: str, tenant: str) -> ModelRecord:
    return owned_or_404(store.get(model_id), tenant, "model", model_id)


def list_models(
    tenant: str, limit: int, after: str | None, metadata: dict[str, str] | None = None
) -> tuple[list[ModelRecord], str | None]:
    if metadata:
        index = tenant_index(tenant, "models")
        keep = partial(labels.matches, wanted=metadata)
        return labels.filtered_page(get_redis(), index, store.get, limit, after, keep)
    return load_page(store.list_ids(tenant, limit, after), store.get, limit)


INSPECTION_WAIT_S = 5.0  # how long a job submission waits for a fresh model's inspection


def wait_inspected(record: ModelRecord, timeout_s: float = INSPECTION_WAIT_S) -> ModelRecord:
    """The model record once a worker has inspected it, or as it is after ``timeout_s``.

    Job checks that need the inspection (input shapes, a Keras graph) wait for it briefly;
    a model still pending after that is accepted and the worker re-checks the job itself.
    """
    deadline = time.monotonic() + timeout_s
    while (record.get("inspection") or {}).get("status") == "pending":
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
        record = store.get(record["id"]) or record
    return record


def ensure_usable(record: ModelRecord) -> None:
    """A job may use a model unless its inspection failed."""
    inspection = record.get("inspection") or {}
    if inspection.get("status") == "failed":
        err: Mapping[str, Any] = inspection.get("error") or {}
        raise Problem(
            422,
            "model-unusable",
            "Model failed inspection",
            f"model {record['id']} could not be loaded by a worker: "
            f"{err.get('message', 'unknown reason')}",
            reason=err.get("reason"),
        )


def speedup_paths(model_id: str, tenant: str) -> dict[str, Any]:
    """Which layers of the model could run faster, and how (from the worker's inspection):
    409 while the model is being inspected, 422 when its inspection failed."""
    record = get_or_404(model_id, tenant)
    inspection = record.get("inspection") or {}
    if inspection.get("status") == "pending":
        raise Problem(
            409,
            "inspection-pending",
            "Model not inspected yet",
            f"model {model_id} is still being inspected by a worker; retry in a few seconds",
        )
    ensure_usable(record)
    paths = (inspection.get("details") or {}).get("speedup_paths")
    if paths is None:
        raise Problem(
            409,
            "analysis-not-available",
            "No speed-up analysis for this model",
            f"model {model_id} was inspected by a worker without the speed-up analysis; "
            "upload it again to have it analysed",
        )
    return {"model_id": model_id, **paths}


def delete(model_id: str, tenant: str) -> None:
    """Delete the model's record and files; 409 while an unfinished job uses it."""
    from app.lifecycle.in_use import ensure_unused
    from core.lifecycle.deletion import remove_artifacts

    record = get_or_404(model_id, tenant)
    ensure_unused("model", "model_id", model_id)
    store.delete(record)
    remove_artifacts(storage.model_dir(model_id))

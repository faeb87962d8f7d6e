"""Dataset uploads: stream to disk, check the ``.npz`` headers (never load the data), record.

The API reads only the archive's member headers (shapes, dtypes; object arrays, i.e.
pickles, are refused); workers load the arrays with ``allow_pickle=False``. Limits: the
upload cap while streaming (413), each member's expansion against
``PRUNEKIT_MAX_COMPRESSION_RATIO`` and what loading the arrays takes in memory (inputs
widened to float32 included) against ``PRUNEKIT_MAX_EXTRACTED_BYTES`` (422), since a
compressed ``.npz`` can expand a lot when a worker loads it.
"""

from __future__ import annotations

import shutil
import zipfile
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import Request

from app import labels, quotas
from app.auth.tenancy import owned_or_404
from app.offload import off_loop
from app.problems import Problem
from app.publishing import publish_then_record
from app.uploads import ReceivedFile, receive_file
from core import storage
from core.datasets import store
from core.records import DatasetRecord, load_page, new_id, now_iso
from core.redis import get_redis, tenant_index
from core.settings import get_settings
from prunekit.data import (
    ArrayInfo,
    DatasetError,
    describe,
    input_mismatch,
    memory_needed,
    npz_header,
)

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
DATASET_FILE = "data.npz"


def not_npz(detail: str) -> Problem:
    return Problem(
        415,
        "unsupported-dataset-format",
        "Unsupported dataset format",
        f"{detail}. Upload a NumPy .npz archive (np.savez / np.savez_compressed) with "
        "x_train, y_train and optionally x_val/y_val, x_test/y_test",
        accepted_formats=["npz"],
    )


def invalid(detail: str, rule: str = "invalid_dataset") -> Problem:
    return Problem(422, "invalid-dataset", "Dataset refused", detail, reason=rule)


def _check(path: Path, head: bytes) -> dict[str, ArrayInfo]:
    if not head.startswith(ZIP_MAGIC):
        raise not_npz("the file is not a zip archive, so not an .npz")
    try:
        with zipfile.ZipFile(path) as zf:
            if not any(n.endswith(".npy") for n in zf.namelist()):
                raise not_npz("the zip archive holds no .npy arrays")
    except zipfile.BadZipFile as exc:
        raise invalid(f"the .npz archive could not be read ({exc})") from exc
    settings = get_settings()
    try:
        arrays = npz_header(path, max_ratio=settings.max_compression_ratio)
    except DatasetError as exc:
        raise invalid(str(exc), exc.reason) from exc
    needed = memory_needed(arrays)  # Python ints: cannot wrap
    limit = settings.max_extracted_bytes
    if needed > limit:
        raise invalid(
            f"loading the arrays takes {needed} bytes in memory (inputs widened to float32 "
            f"included), more than the limit of {limit} (PRUNEKIT_MAX_EXTRACTED_BYTES)",
            "too_large_in_memory",
        )
    return arrays


async def upload(
    request: Request, tenant: str, metadata: dict[str, str] | None = None
) -> DatasetRecord:
    """Stream the body to disk, then check and record it off the event loop."""
    dataset_id = new_id()
    scratch = storage.scratch_dir(f"dataset-{dataset_id}-")
    try:
        max_bytes, over_quota = await off_loop(quotas.upload_allowance, tenant)
        received = await receive_file(request, scratch / "upload", "file", max_bytes, over_quota)
        return await off_loop(_accept, dataset_id, tenant, received, scratch, metadata or {})
    finally:
        await off_loop(shutil.rmtree, scratch, True)


def _accept(
    dataset_id: str,
    tenant: str,
    received: ReceivedFile,
    scratch: Path,
    metadata: dict[str, str] | None = None,
) -> DatasetRecord:
    arrays = _check(received.path, received.head)
    staged = scratch / "dataset"
    staged.mkdir()
    received.path.replace(staged / DATASET_FILE)
    record: DatasetRecord = {
        "id": dataset_id,
        "tenant": tenant,
        "filename": received.filename,
        "size_bytes": received.size,
        "sha256": received.sha256,
        "created_at": now_iso(),
        "metadata": metadata or {},
        "path": storage.relative(storage.dataset_dir(dataset_id) / DATASET_FILE),
        "splits": describe(arrays),
    }
    publish_then_record(staged, storage.dataset_dir(dataset_id), tenant, received.size,
                        lambda: store.create(record))  # fmt: skip
    return record


def get_or_404(dataset_id: str, tenant: str) -> DatasetRecord:
    return owned_or_404(store.get(dataset_id), tenant, "dataset", dataset_id)


def list_datasets(
    tenant: str, limit: int, after: str | None, metadata: dict[str, str] | None = None
) -> tuple[list[DatasetRecord], str | None]:
    if metadata:
        index = tenant_index(tenant, "datasets")
        keep = partial(labels.matches, wanted=metadata)
        return labels.filtered_page(get_redis(), index, store.get, limit, after, keep)
    return load_page(store.list_ids(tenant, limit, after), store.get, limit)


def delete(dataset_id: str, tenant: str) -> None:
    """Delete the dataset's record and file; 409 while an unfinished job uses it."""
    from app.lifecycle.in_use import ensure_unused
    from core.lifecycle.deletion import remove_artifacts

    record = get_or_404(dataset_id, tenant)
    ensure_unused("dataset", "dataset_id", dataset_id)
    store.delete(record)
    remove_artifacts(storage.dataset_dir(dataset_id))


def model_input_shape(inspection: dict[str, Any]) -> list[int | None] | str:
    """The model's single input shape from its inspection details, or why there is none."""
    signatures = inspection.get("signatures") or {}
    sig = signatures.get("keras") or signatures.get("serving_default")
    if sig is None and signatures:
        sig = next(iter(signatures.values()))
    if sig is None:
        return "the model has no signature to check the dataset against"
    inputs = sig.get("inputs") or []
    if len(inputs) != 1:
        return f"the model takes {len(inputs)} inputs; datasets support single-input models"
    return list(inputs[0]["shape"])


def fit_problem(dataset: DatasetRecord, inspection: dict[str, Any]) -> Problem | None:
    """A 422 naming ``body.dataset_id`` when the dataset's samples do not fit the model."""
    shape = model_input_shape(inspection)
    reasons = []
    if isinstance(shape, str):
        reasons.append(shape)
    else:
        for split, info in dataset["splits"].items():
            why = input_mismatch(info["x_shape"], shape)
            if why:
                reasons.append(f"x_{split}: {why}")
    if not reasons:
        return None
    errors = [{"field": "body.dataset_id", "message": r, "type": "shape_mismatch"} for r in reasons]
    return Problem(
        422,
        "validation-error",
        "Request validation failed",
        f"dataset {dataset['id']} does not fit model: {reasons[0]}",
        errors=errors,
    )

"""Where artifacts live: the local disk (the embedded default) or an object store.

``PRUNEKIT_STORAGE`` unset: artifacts are files under ``PRUNEKIT_HOME/artifacts`` and every
process that touches them shares that disk (one machine). ``PRUNEKIT_STORAGE=s3://bucket/
prefix``: they are objects (:mod:`core.object_store`), under the same relative paths the
records hold, and the local disk holds only private scratch:

* the API stages an upload in scratch (checked and unpacked there), then streams it to the
  store and deletes the scratch;
* a worker copies the inputs of a job into its own scratch directory, runs, uploads the
  outputs and deletes the scratch;
* downloads stream from the store (or redirect to a presigned URL); deletes delete objects.

Every caller goes through the functions here, which take the same local paths
(:func:`core.storage.model_dir` and friends) in both modes.
"""

from __future__ import annotations

import contextlib
import shutil
from functools import lru_cache
from pathlib import Path

from core import storage
from core.object_store import Location, ObjectStore
from core.settings import get_settings


@lru_cache(maxsize=1)
def object_store() -> ObjectStore | None:
    """The configured object store, or None for local disk."""
    settings = get_settings()
    if not settings.storage_url:
        return None
    return ObjectStore(Location.parse(settings.storage_url, settings.s3_endpoint_url))


def describe() -> str:
    store = object_store()
    return store.location.describe() if store else f"local disk {storage.artifacts_root()}"


def check() -> None:
    """Raise (a :class:`core.object_store.StoreError`) unless the store answers with these
    credentials; local disk: that the artifacts directory is writable."""
    store = object_store()
    if store is not None:
        store.check()
        return
    root = storage.artifacts_root()
    probe = root / ".ready-probe"
    probe.write_bytes(b"")
    probe.unlink()


def publish(staged: Path, dest: Path) -> None:
    """Put a finished upload (``staged``, a directory in scratch) in place at ``dest``
    (``model_dir``/``dataset_dir``). On failure nothing is left under ``dest``."""
    store = object_store()
    if store is None:
        storage.publish(staged, dest)
        return
    base = storage.relative(dest)
    for child in sorted(staged.iterdir()):
        store.upload_tree(child, f"{base}/{child.name}")


def publish_attempt(src: Path, job_id: str, token: int) -> None:
    """A job attempt's outputs, from the worker's scratch to their own place (see
    :func:`core.storage.publish_attempt`: one place per attempt, never replaced)."""
    store = object_store()
    if store is None:
        storage.publish_attempt(src, job_id, token)
        return
    store.upload_tree(src, storage.relative(storage.attempt_dir(job_id, token)))


def unpublish_attempt(job_id: str, token: int) -> None:
    store = object_store()
    if store is None:
        storage.unpublish_attempt(job_id, token)
        return
    store.delete(storage.relative(storage.attempt_dir(job_id, token)))


def remove_other_attempts(job_id: str, token: int) -> None:
    store = object_store()
    if store is None:
        storage.remove_other_attempts(job_id, token)
        return
    keep = storage.attempt_dir(job_id, token).name
    base = storage.relative(storage.job_dir(job_id))
    for name in store.children(base):
        if name != keep:
            store.delete(f"{base}/{name}")


def remove(directory: Path) -> None:
    """Delete a record's directory (``model_dir``, ``dataset_dir``, ``job_dir``): its files,
    or every object under its prefix; never anything outside the artifacts root."""
    root = storage.artifacts_root().resolve()
    target = directory.resolve()
    if root not in target.parents:
        raise ValueError(f"refusing to delete {target}: not under {root}")
    store = object_store()
    if store is None:
        shutil.rmtree(target, ignore_errors=True)
    else:
        store.delete(storage.relative(target))


def stage(relative: str, scratch: Path) -> Path:
    """A local path a worker can read the artifact ``relative`` (a file or a directory)
    from: the file itself on local disk; a private copy under ``scratch`` from an object
    store (:class:`core.object_store.ObjectMissing` when it is not there)."""
    store = object_store()
    if store is None:
        return storage.resolve(relative)
    return store.stage(relative, scratch / "inputs" / relative)


def entries(kind: str) -> dict[str, float]:
    """The ids that have artifacts under ``kind`` (models, datasets, jobs), each with the
    newest modification time under it: what the sweeper compares with the records."""
    store = object_store()
    if store is not None:
        return store.children(kind)
    folder = storage.artifacts_root() / kind
    found: dict[str, float] = {}
    if folder.is_dir():
        for d in folder.iterdir():
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                found[d.name] = d.stat().st_mtime
    return found

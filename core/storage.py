"""Where artifacts live on disk: uploads, normalised models, job outputs.

Records hold paths relative to the artifacts root, so the root can move (and later become
an object store) without rewriting records.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
from pathlib import Path

from core.settings import get_settings

CHUNK = 1 << 20


def artifacts_root() -> Path:
    root = get_settings().artifacts_dir
    root.mkdir(parents=True, exist_ok=True)
    return root


def resolve(relative: str) -> Path:
    """Absolute path of a stored artifact; refuses anything that escapes the root."""
    root = artifacts_root().resolve()
    path = (root / relative).resolve()
    if root != path and root not in path.parents:
        raise ValueError(f"artifact path escapes the store: {relative!r}")
    return path


def model_dir(model_id: str) -> Path:
    return artifacts_root() / "models" / model_id


def dataset_dir(dataset_id: str) -> Path:
    return artifacts_root() / "datasets" / dataset_id


def job_dir(job_id: str) -> Path:
    return artifacts_root() / "jobs" / job_id


def relative(path: Path) -> str:
    return path.resolve().relative_to(artifacts_root().resolve()).as_posix()


def scratch_dir(prefix: str) -> Path:
    """A fresh private directory on the same filesystem as the store (for atomic renames)."""
    tmp = get_settings().tmp_dir
    tmp.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=tmp))


WORKER_TMPDIR_PREFIX = "worker-"


def worker_tmpdir(pid: int) -> Path:
    """A worker child's private TMPDIR (see ``worker.environment``)."""
    return get_settings().tmp_dir / f"{WORKER_TMPDIR_PREFIX}{pid}"


def worker_tmpdir_pid(path: Path) -> int | None:
    """The pid whose private TMPDIR ``path`` is, if it is one."""
    pid = path.name.removeprefix(WORKER_TMPDIR_PREFIX)
    return int(pid) if path.name.startswith(WORKER_TMPDIR_PREFIX) and pid.isdigit() else None


def publish(src: Path, dest: Path) -> Path:
    """Move a finished directory into place atomically (replacing an older one)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        shutil.rmtree(dest)
    src.replace(dest)
    return dest


def attempt_dir(job_id: str, token: int) -> Path:
    """Where attempt ``token`` of a job publishes its outputs: one directory per lease
    acquisition, so a late attempt can never replace the bytes another one recorded."""
    return job_dir(job_id) / f"attempt-{token}"


def publish_attempt(src: Path, job_id: str, token: int) -> Path:
    """Rename a finished output directory into the job's directory for this attempt
    (atomic; never replaces anything: each attempt has its own name)."""
    dest = attempt_dir(job_id, token)
    dest.parent.mkdir(parents=True, exist_ok=True)
    src.rename(dest)
    return dest


def unpublish_attempt(job_id: str, token: int) -> None:
    """Remove an attempt's outputs, and the job's directory if nothing else is left in it."""
    shutil.rmtree(attempt_dir(job_id, token), ignore_errors=True)
    with contextlib.suppress(OSError):  # not empty: another attempt's outputs are there
        job_dir(job_id).rmdir()


def remove_other_attempts(job_id: str, token: int) -> None:
    """Once attempt ``token`` succeeded, what earlier (fenced) attempts left is garbage."""
    for path in job_dir(job_id).glob("attempt-*"):
        if path.name != attempt_dir(job_id, token).name:
            shutil.rmtree(path, ignore_errors=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()

"""Deleting records with their files, the same way for every resource.

A resource's ``DELETE`` does: ``owned_or_404`` (tenant check) -> ``ensure_unused``
(:mod:`app.lifecycle.in_use`: 409 while an active job uses it) -> its store's
``delete(record)`` (record and indexes) -> :func:`remove_artifacts` (its directory under the
artifacts root). The record goes first: once it is gone nothing can start using the files,
and a crash in between leaves only an orphan directory, which the sweeper removes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from core import storage
from core.jobs import store as jobs


def active_jobs_using(field: str, ident: str) -> list[str]:
    """Ids of unfinished jobs (queued, running, cancelling) whose ``field`` is ``ident``."""
    return [j["id"] for j in jobs.active_jobs() if j.get(field) == ident]


def remove_artifacts(directory: Path) -> None:
    """Remove a record's directory under the artifacts root (never anything outside it)."""
    root = storage.artifacts_root().resolve()
    target = directory.resolve()
    if root not in target.parents:
        raise ValueError(f"refusing to delete {target}: not under {root}")
    shutil.rmtree(target, ignore_errors=True)

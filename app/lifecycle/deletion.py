"""Deleting records with their files, the same way for every resource.

A resource's ``DELETE`` does: ``owned_or_404`` (tenant check) -> :func:`ensure_unused`
(409 while an active job uses it) -> its store's ``delete(record)`` (record and indexes)
-> :func:`remove_artifacts` (its directory under the artifacts root). The record goes first:
once it is gone nothing can start using the files, and a crash in between leaves only an
orphan directory, which the sweeper removes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from app import storage
from app.jobs import store as jobs
from app.problems import Problem


def active_jobs_using(field: str, ident: str) -> list[str]:
    """Ids of unfinished jobs (queued, running, cancelling) whose ``field`` is ``ident``."""
    return [j["id"] for j in jobs.active_jobs() if j.get(field) == ident]


def ensure_unused(kind: str, field: str, ident: str) -> None:
    """409 while unfinished jobs use the resource: cancel them (or wait) and delete again."""
    users = active_jobs_using(field, ident)
    if users:
        raise Problem(
            409,
            f"{kind}-in-use",
            f"{kind.capitalize()} in use",
            f"{kind} {ident} is used by {len(users)} unfinished job(s) "
            f"({', '.join(users[:5])}); cancel them or wait for them to finish, then delete",
            jobs=users,
        )


def remove_artifacts(directory: Path) -> None:
    """Remove a record's directory under the artifacts root (never anything outside it)."""
    root = storage.artifacts_root().resolve()
    target = directory.resolve()
    if root not in target.parents:
        raise ValueError(f"refusing to delete {target}: not under {root}")
    shutil.rmtree(target, ignore_errors=True)

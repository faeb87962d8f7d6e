"""Deleting records with their files, the same way for every resource.

A resource's ``DELETE`` does: ``owned_or_404`` (tenant check) -> ``ensure_unused``
(:mod:`app.lifecycle.in_use`: 409 while an active job uses it) -> its store's
``delete(record)`` (record and indexes) -> :func:`remove_artifacts` (its directory under the
artifacts root). The record goes first: once it is gone nothing can start using the files,
and a crash in between leaves only an orphan directory, which the sweeper removes.
"""

from __future__ import annotations

from pathlib import Path

from core import artifacts
from core.jobs import store as jobs


def active_jobs_using(field: str, ident: str) -> list[str]:
    """Ids of unfinished jobs (queued, running, cancelling) whose ``field`` is ``ident``."""
    return [j["id"] for j in jobs.active_jobs() if j.get(field) == ident]


def remove_artifacts(directory: Path) -> None:
    """Remove a record's directory under the artifacts root (never anything outside it): its
    files on local disk, or every object under its prefix in an object store."""
    artifacts.remove(directory)

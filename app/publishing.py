"""Putting an accepted upload in place, then recording it: never a record without its files.

The files go first (a rename on local disk; a streamed upload to the object store, which can
take a while and must not hold the tenant's quota lock), then the tenant's quota is checked
and the record written under that lock. If the store fails (503, :mod:`app.problems`) no
record is written; if the quota or the record write fails, the files are removed again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from app import quotas
from core import artifacts
from core.lifecycle.deletion import remove_artifacts


def publish_then_record(
    staged: Path, dest: Path, tenant: str, size: int, record: Callable[[], None]
) -> None:
    artifacts.publish(staged, dest)
    try:
        with quotas.storage_slot(tenant, size):
            record()
    except BaseException:
        remove_artifacts(dest)
        raise

"""The 409 a resource's ``DELETE`` answers while unfinished jobs use it."""

from __future__ import annotations

from app.problems import Problem
from core.lifecycle.deletion import active_jobs_using


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

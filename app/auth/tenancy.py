"""Who is calling (a FastAPI dependency) and the one ownership check every resource uses.

A resource makes itself tenant-scoped in three steps:

1. its endpoints take ``principal: Principal = Depends(current_principal)`` (or the router
   is built with ``dependencies=[Depends(current_principal)]``);
2. its record stores ``"tenant": principal.tenant`` when created, and its store keeps a
   per-tenant index (:func:`core.redis.tenant_index`) next to the global one;
3. every read of a record by id goes through :func:`owned_or_404`, so another tenant's id
   answers exactly like an unknown one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.observability.requests import note_tenant
from app.problems import Problem, not_found
from core.auth import keys

bearer = HTTPBearer(
    auto_error=False,
    description="An API key: `Authorization: Bearer pk_...` (create one with "
    "`python -m app.auth.cli create --tenant NAME`).",
)


@dataclass(frozen=True)
class Principal:
    tenant: str
    key_id: str


def unauthorized(detail: str) -> Problem:
    return Problem(
        401,
        "unauthorized",
        "Authentication required",
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="prunekit"'},
    )


def current_principal(
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
) -> Principal:
    """The caller, from ``Authorization: Bearer <key>``; 401 problem+json otherwise."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized(
            "send an API key as `Authorization: Bearer <key>`; an operator creates one with "
            "`python -m app.auth.cli create --tenant NAME`"
        )
    found = keys.lookup(credentials.credentials.strip())
    if found is None:
        raise unauthorized("the API key is unknown or was revoked")
    note_tenant(found.tenant)  # the request's log line names its tenant
    return Principal(tenant=found.tenant, key_id=found.id)


R = TypeVar("R", bound=Mapping[str, Any])  # a record type (core.records)


def owned_or_404(record: R | None, tenant: str, kind: str, ident: str) -> R:
    """``record`` if it exists and belongs to ``tenant``; else the resource's 404."""
    if record is None or record.get("tenant") != tenant:
        raise not_found(kind, ident)
    return record

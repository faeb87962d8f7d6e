"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the API answers goes through here: raised ``Problem``s, request validation
errors (422 with the offending fields), unknown routes, Redis out of reach (503, retry: a
restart or failover is a state that passes, not a server error) and unexpected failures.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.redaction import redact
from core.object_store import ObjectMissing, StoreDenied, StoreError

log = logging.getLogger("prunekit.api")

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "urn:prunekit:problem:"


class Problem(Exception):
    """An error the client can act on. ``slug`` becomes the problem ``type``."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = headers
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


def not_found(kind: str, ident: str) -> Problem:
    return Problem(
        404,
        f"{kind}-not-found",
        f"{kind.capitalize()} not found",
        f"no {kind} with id {ident!r}; list yours with GET /v1/{kind}s",
    )


def store_unavailable() -> Problem:
    return Problem(
        503,
        "store-unavailable",
        "Service temporarily unavailable",
        "the job store (Redis) cannot be reached right now; retry shortly",
        headers={"Retry-After": "1"},
    )


ARTIFACT_STORE_RETRY_S = 30


def artifact_store_problem(exc: StoreError) -> Problem:
    """The answer when the artifact store fails a request: 410 for an object a record names
    but the store lacks; 503 (with ``Retry-After`` when it should pass) otherwise. Nothing
    was recorded: an upload's record is written only after its files are stored."""
    if isinstance(exc, ObjectMissing):
        return Problem(
            410,
            "artifact-missing",
            "Stored files missing",
            f"the record exists but its files are not in the artifact store ({exc}); they were "
            "removed outside the service or the store lost them: upload again or rerun the job",
        )
    if isinstance(exc, StoreDenied):
        return Problem(
            503,
            "artifact-store-misconfigured",
            "Artifact store refused the service",
            f"the object store refused this server's credentials or bucket ({exc}); nothing "
            "was stored; an operator must fix PRUNEKIT_STORAGE or the AWS credentials",
        )
    return Problem(
        503,
        "artifact-store-unavailable",
        "Artifact store unavailable",
        f"the object store could not be reached ({exc}); nothing was stored: retry later",
        headers={"Retry-After": str(ARTIFACT_STORE_RETRY_S)},
    )


def field_errors(errors: Sequence[Any], prefix: Sequence[str | int] = ()) -> list[dict[str, Any]]:
    """Pydantic errors as ``{"field": "body.strategy.sparsity", "message", "type"}``."""
    out = []
    for err in errors:
        loc = [*prefix, *err.get("loc", ())]
        out.append(
            {
                "field": ".".join(str(p) for p in loc),
                "message": err.get("msg", ""),
                "type": err.get("type", ""),
            }
        )
    return out


def validation_problem(errors: list[dict[str, Any]], detail: str | None = None) -> Problem:
    if detail is None:
        names = ", ".join(e["field"] for e in errors[:5]) or "the request"
        detail = f"the request is not valid: check {names}"
    return Problem(422, "validation-error", "Request validation failed", detail, errors=errors)


def problem_response(problem: Problem, request: Request | None = None) -> JSONResponse:
    instance = str(request.url.path) if request is not None else None
    return JSONResponse(
        redact(problem.body(instance)),
        status_code=problem.status,
        media_type=MEDIA_TYPE,
        headers=problem.headers,
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = field_errors(exc.errors())
        return problem_response(validation_problem(errors), request)

    @app.exception_handler(ValidationError)
    async def _pydantic(request: Request, exc: ValidationError) -> JSONResponse:
        errors = field_errors(exc.errors(), ("body",))
        return problem_response(validation_problem(errors), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed"}
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        detail = str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}; see /docs for the API"
        problem = Problem(
            exc.status_code,
            slug,
            titles.get(exc.status_code, "HTTP error"),
            detail,
            headers=getattr(exc, "headers", None),
        )
        return problem_response(problem, request)

    @app.exception_handler(redis.ConnectionError)  # includes "LOADING" after a restart
    @app.exception_handler(redis.TimeoutError)
    async def _store_unavailable(request: Request, exc: redis.RedisError) -> JSONResponse:
        log.warning("Redis unavailable on %s %s: %s", request.method, request.url.path, exc)
        return problem_response(store_unavailable(), request)

    @app.exception_handler(StoreError)
    async def _artifact_store(request: Request, exc: StoreError) -> JSONResponse:
        log.warning("artifact store on %s %s: %s", request.method, request.url.path, exc)
        return problem_response(artifact_store_problem(exc), request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        problem = Problem(
            500,
            "internal-error",
            "Internal server error",
            "the server failed to handle this request; it has been logged",
        )
        return problem_response(problem, request)

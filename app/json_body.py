"""JSON request bodies: a size cap (413) and strict numbers (no ``Infinity``/``NaN``).

Python's ``json`` accepts the non-standard literals ``Infinity``, ``-Infinity`` and ``NaN``,
and turns ``1e999`` into ``inf``; they would pass a ``gt=0`` bound. :class:`JSONBodyRoute`
reads the body before FastAPI does (stopping at ``PRUNEKIT_MAX_JSON_BYTES``), parses it
with every non-finite number marked, and answers a 422 naming the field that holds one.
Routes without a JSON body parameter are left alone (uploads stream to disk under their own
cap; FastAPI reads no body for the others).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from app.problems import Problem, validation_problem
from core.settings import get_settings

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class NonFinite:
    """Where a non-finite number stood in the parsed body."""

    def __init__(self, literal: str) -> None:
        self.literal = literal


def _parse_float(text: str) -> float | NonFinite:
    value = float(text)
    return value if math.isfinite(value) else NonFinite(text)


def non_finite_paths(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[Any, ...]]:
    """The locations of :class:`NonFinite` markers in a parsed JSON document."""
    if isinstance(value, NonFinite):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in non_finite_paths(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in non_finite_paths(v, (*path, i))]
    return []


def loads_finite(body: bytes) -> Any:
    """``json.loads`` that refuses ``Infinity``, ``NaN`` and overflowing numbers (422)."""
    doc = json.loads(body, parse_constant=NonFinite, parse_float=_parse_float)
    paths = non_finite_paths(doc)
    if paths:
        errors = [
            {
                "field": ".".join(str(p) for p in ("body", *path)),
                "message": "Input should be a finite number",
                "type": "finite_number",
            }
            for path in paths
        ]
        raise validation_problem(errors)
    return doc


def json_too_large(limit: int) -> Problem:
    return Problem(
        413,
        "body-too-large",
        "Request body too large",
        f"the JSON body exceeds the limit of {limit} bytes (PRUNEKIT_MAX_JSON_BYTES on the server)",
        limit_bytes=limit,
        setting="PRUNEKIT_MAX_JSON_BYTES",
    )


async def read_capped(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) one declared or streamed beyond ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise json_too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise json_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/")


class JSONBodyRoute(APIRoute):
    """A route whose JSON body is size-capped and parsed with finite numbers only."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:  # FastAPI reads no body here (uploads stream their own)
            return handler

        async def capped_handler(request: Request) -> Response:
            if request.method in BODY_METHODS and not _is_multipart(request):
                body = await read_capped(request, get_settings().max_json_bytes)
                request._body = body  # FastAPI reads it from here
                ctype = request.headers.get("content-type", "").lower()
                if body and ("json" in ctype or not ctype):
                    with contextlib.suppress(ValueError):  # FastAPI's 422 names the position
                        request._json = loads_finite(body)
            return await handler(request)

        return capped_handler

"""File downloads with the HTTP semantics clients rely on (RFC 9110).

* ``If-None-Match`` (section 13.1.2): ``*`` matches any current representation, and the
  comparison is weak: ``W/"x"`` matches the strong ``"x"`` we send. A match is a 304.
* ``Range`` (section 14): Starlette's ``FileResponse`` serves ranges, but answers bad ones
  in plain text; they are checked here first, so a malformed range is a 400 and one
  outside the file a 416 (with ``Content-Range: bytes */size``), both problem+json.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import Request, Response
from fastapi.responses import FileResponse
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable

from app.problems import Problem


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


def none_match(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names the current representation (weak comparison)."""
    if if_none_match is None:
        return False
    tags = [t.strip() for t in if_none_match.split(",") if t.strip()]
    return "*" in tags or _opaque(etag) in {_opaque(t) for t in tags}


def check_range(request: Request, response: FileResponse, size: int) -> None:
    """The problem+json for a ``Range`` header ``response`` would refuse, if any."""
    http_range = request.headers.get("range")
    if http_range is None or request.method not in ("GET", "HEAD"):
        return
    if_range = request.headers.get("if-range")
    if if_range is not None and not response._should_use_range(if_range):
        return  # the whole file is sent (RFC 9110 section 13.1.5)
    try:
        FileResponse._parse_range_header(http_range, size)
    except MalformedRangeHeader as exc:
        raise Problem(
            400,
            "malformed-range",
            "Malformed Range header",
            f"{exc.content} Send e.g. `Range: bytes=0-1023` (bytes ranges only)",
        ) from exc
    except RangeNotSatisfiable as exc:
        raise Problem(
            416,
            "range-not-satisfiable",
            "Range not satisfiable",
            f"the range starts beyond the end of the file ({exc.max_size} bytes)",
            headers={"Content-Range": f"bytes */{exc.max_size}"},
            size_bytes=exc.max_size,
        ) from exc


def file_download(
    request: Request,
    path: Path,
    etag: str,
    media_type: str,
    filename: str,
    if_none_match: str | None = None,
) -> Response:
    """``path`` as a download with ``etag``: 304, 400/416 problems, a range, or all of it."""
    if none_match(if_none_match, etag):
        return Response(status_code=304, headers={"ETag": etag})
    stat_result = os.stat(path)
    response = FileResponse(
        path,
        media_type=media_type,
        filename=filename,
        headers={"ETag": etag},
        stat_result=stat_result,
    )
    check_range(request, response, stat_result.st_size)
    return response

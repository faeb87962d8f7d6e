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
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable

from app.problems import Problem
from core.object_store import ObjectMissing, ObjectStore


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


def none_match(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names the current representation (weak comparison)."""
    if if_none_match is None:
        return False
    tags = [t.strip() for t in if_none_match.split(",") if t.strip()]
    return "*" in tags or _opaque(etag) in {_opaque(t) for t in tags}


def parse_range(http_range: str, size: int) -> list[tuple[int, int]]:
    """The ranges (start, end exclusive) ``http_range`` asks of ``size`` bytes; a 400 or 416
    problem when they are malformed or start beyond the end."""
    try:
        return FileResponse._parse_range_header(http_range, size)
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


def check_range(request: Request, response: FileResponse, size: int) -> None:
    """The problem+json for a ``Range`` header ``response`` would refuse, if any."""
    http_range = request.headers.get("range")
    if http_range is None or request.method not in ("GET", "HEAD"):
        return
    if_range = request.headers.get("if-range")
    if if_range is not None and not response._should_use_range(if_range):
        return  # the whole file is sent (RFC 9110 section 13.1.5)
    parse_range(http_range, size)


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
    try:
        stat_result = os.stat(path)
    except FileNotFoundError as exc:  # the record outlived its file: a 410, not a 500
        raise ObjectMissing(f"no file for {path.name}") from exc
    response = FileResponse(
        path,
        media_type=media_type,
        filename=filename,
        headers={"ETag": etag},
        stat_result=stat_result,
    )
    check_range(request, response, stat_result.st_size)
    return response


def _attachment(filename: str) -> str:
    """``Content-Disposition`` as Starlette's ``FileResponse`` writes it."""
    quoted = quote(filename)
    if quoted != filename:
        return f"attachment; filename*=utf-8''{quoted}"
    return f'attachment; filename="{filename}"'


def object_download(
    request: Request,
    store: ObjectStore,
    relative: str,
    etag: str,
    media_type: str,
    filename: str,
    if_none_match: str | None = None,
    presign: bool = False,
) -> Response:
    """The object ``relative`` as :func:`file_download` serves a file: 304, the 400/416
    problems, one range (206; several ranges get the whole object, as RFC 9110 allows), or
    all of it, streamed from the store. ``presign``: a 307 to a short-lived presigned URL
    instead, so the bytes go from the store to the client directly (ranges included)."""
    if none_match(if_none_match, etag):
        return Response(status_code=304, headers={"ETag": etag})
    size = store.head(relative).size  # ObjectMissing: a 410 (app.problems)
    if presign:
        url = store.presigned_url(relative, filename, media_type)
        return RedirectResponse(url, status_code=307, headers={"ETag": etag})
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Content-Disposition": _attachment(filename),
    }
    http_range = request.headers.get("range")
    if_range = request.headers.get("if-range")
    ranges: list[tuple[int, int]] = []
    if http_range is not None and (if_range is None or if_range == etag):
        ranges = parse_range(http_range, size)
    head = request.method == "HEAD"
    if len(ranges) == 1:
        start, end = ranges[0]
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(end - start)
        body = [] if head else store.read(relative, start, end - 1)
        return StreamingResponse(body, 206, headers=headers, media_type=media_type)
    headers["Content-Length"] = str(size)
    body = [] if head else store.read(relative)
    return StreamingResponse(body, 200, headers=headers, media_type=media_type)

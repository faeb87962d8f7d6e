"""Streaming multipart uploads straight to disk.

The request body is parsed as it arrives (python-multipart's streaming parser): the file
part is written chunk by chunk to its destination while its SHA-256 is computed, and the
size cap is enforced as bytes arrive, so a large or hostile upload never sits in memory and
an oversized one is refused (413) without reading it all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, Any

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from app.problems import Problem

HEAD_BYTES = 512
MAX_PART_HEADER_BYTES = 16 * 1024
MAX_BOUNDARY_CHARS = 70  # RFC 2046 section 5.1.1
BODY_SLACK = 64 * 1024  # multipart framing and small form fields around the file


@dataclass
class ReceivedFile:
    filename: str
    path: Path
    size: int
    sha256: str
    head: bytes  # the first bytes, for format sniffing


def too_large(max_bytes: int) -> Problem:
    return Problem(
        413,
        "upload-too-large",
        "Upload too large",
        f"the upload exceeds the limit of {max_bytes} bytes "
        "(PRUNEKIT_MAX_UPLOAD_BYTES on the server)",
        limit_bytes=max_bytes,
    )


def malformed(detail: str, field: str) -> Problem:
    return Problem(
        400,
        "malformed-multipart",
        "Malformed multipart body",
        f"{detail}; send it with curl -F {field}=@FILE",
    )


def safe_filename(raw: str) -> str:
    """The last path component of a client-supplied file name, never empty."""
    name = PureWindowsPath(PurePosixPath(raw).name).name.strip().replace("\x00", "")
    return name[:255] or "upload"


class _Receiver:
    def __init__(self, field: str, dest: Path, max_bytes: int) -> None:
        self.field = field
        self.dest = dest
        self.max_bytes = max_bytes
        self.headers: dict[bytes, bytes] = {}
        self._hname = b""
        self._hvalue = b""
        self.file: IO[bytes] | None = None
        self.writing = False
        self.found = False
        self.filename = ""
        self.size = 0
        self.head = b""
        self.hash = hashlib.sha256()
        self.too_large = False

    # header callbacks
    def on_part_begin(self) -> None:
        self.headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]
        self._check_header_size()

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]
        self._check_header_size()

    def _check_header_size(self) -> None:
        if len(self._hname) + len(self._hvalue) > MAX_PART_HEADER_BYTES:
            raise ValueError(f"a part header is longer than {MAX_PART_HEADER_BYTES} bytes")

    def on_header_end(self) -> None:
        self.headers[self._hname.lower()] = self._hvalue
        self._hname = b""
        self._hvalue = b""

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self.headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if name == self.field and filename is not None and not self.found:
            self.found = True
            self.writing = True
            self.filename = safe_filename(filename.decode("utf-8", "replace"))
            self.file = self.dest.open("wb")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self.writing or self.too_large:
            return
        chunk = data[start:end]
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self.too_large = True
            return
        if len(self.head) < HEAD_BYTES:
            self.head += chunk[: HEAD_BYTES - len(self.head)]
        self.hash.update(chunk)
        assert self.file is not None
        self.file.write(chunk)

    def on_part_end(self) -> None:
        if self.writing:
            self.writing = False
            assert self.file is not None
            self.file.close()

    def close(self) -> None:
        if self.file is not None and not self.file.closed:
            self.file.close()


async def receive_file(
    request: Request,
    dest: Path,
    field: str,
    max_bytes: int,
    over_limit: Problem | None = None,
) -> ReceivedFile:
    """Stream the multipart field ``field`` of ``request`` into ``dest``; more than
    ``max_bytes`` is refused with ``over_limit`` (default: the upload cap's 413)."""
    refusal = over_limit or too_large(max_bytes)
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise Problem(
            415,
            "multipart-required",
            "multipart/form-data required",
            f"send the file as multipart/form-data in the field {field!r}, "
            f"e.g. curl -F {field}=@model.zip",
        )
    boundary = params[b"boundary"]
    if not 1 <= len(boundary) <= MAX_BOUNDARY_CHARS:
        raise malformed(
            f"the multipart boundary is {len(boundary)} characters long; RFC 2046 allows "
            f"1 to {MAX_BOUNDARY_CHARS}",
            field,
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + BODY_SLACK:
        raise refusal
    rx = _Receiver(field, dest, max_bytes)
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": rx.on_part_begin,
            "on_header_field": rx.on_header_field,
            "on_header_value": rx.on_header_value,
            "on_header_end": rx.on_header_end,
            "on_headers_finished": rx.on_headers_finished,
            "on_part_data": rx.on_part_data,
            "on_part_end": rx.on_part_end,
        },
    )
    body_bytes = 0
    try:
        async for chunk in request.stream():
            body_bytes += len(chunk)
            if body_bytes > max_bytes + BODY_SLACK:  # the whole body, not only the file
                raise refusal
            parser.write(chunk)
            if rx.too_large:
                raise refusal
        parser.finalize()
    except Problem:
        rx.close()
        dest.unlink(missing_ok=True)
        raise
    except Exception as exc:
        rx.close()
        dest.unlink(missing_ok=True)
        raise malformed(f"the multipart body could not be parsed ({exc})", field) from exc
    rx.close()
    if not rx.found:
        dest.unlink(missing_ok=True)
        raise Problem(
            422,
            "validation-error",
            "Request validation failed",
            f"the multipart field {field!r} with a file is missing; "
            f"send it with curl -F {field}=@FILE",
            errors=[{"field": f"body.{field}", "message": "Field required", "type": "missing"}],
        )
    return ReceivedFile(rx.filename, dest, rx.size, rx.hash.hexdigest(), rx.head)


def multipart_file_body(description: str, field: str = "file") -> dict[str, Any]:
    """OpenAPI ``requestBody`` of an upload endpoint (the body is parsed by hand, streaming)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [field],
                        "properties": {
                            field: {
                                "type": "string",
                                "format": "binary",
                                "description": description,
                            }
                        },
                    }
                }
            },
        }
    }

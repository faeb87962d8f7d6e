"""Artifacts in an S3-compatible object store (AWS S3, MinIO, Ceph, GCS's S3 interop).

``PRUNEKIT_STORAGE=s3://bucket/prefix`` selects it; ``PRUNEKIT_S3_ENDPOINT_URL`` names a
non-AWS endpoint, and credentials come from the standard AWS variables (or any source
boto3 reads: profile, instance role). Keys are ``prefix/`` + the same relative paths the
records hold on local disk (``models/<id>/model.keras``, ``jobs/<id>/attempt-<n>/...``).

Memory stays bounded: uploads go in ``PART_BYTES`` parts (a multipart upload past one
part) while their SHA-256 is computed; downloads stream in ``CHUNK`` pieces.

Errors are sorted for the caller: :class:`StoreUnavailable` (retry later: the store is
unreachable or answered 5xx), :class:`StoreDenied` (credentials, permissions or a missing
bucket: an operator must act) and :class:`ObjectMissing` (a record names an object that
is not there).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

CHUNK = 1 << 20
PART_BYTES = 8 << 20  # S3's minimum part is 5 MiB (except the last)
PRESIGN_SECONDS = 300


class StoreError(Exception):
    """The object store refused or failed an operation."""


class StoreUnavailable(StoreError):
    """Unreachable, timed out or a 5xx: worth retrying later."""


class StoreDenied(StoreError):
    """Wrong credentials, no permission or no such bucket: configuration, not load."""


class ObjectMissing(StoreError):
    """The object a record names is not in the store."""


@dataclass(frozen=True)
class Location:
    bucket: str
    prefix: str  # "" or ending in "/"
    endpoint_url: str | None = None
    region: str | None = None

    @classmethod
    def parse(cls, url: str, endpoint_url: str | None = None) -> Location:
        """``s3://bucket[/prefix]``; anything else is a ValueError naming the setting."""
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(
                f"PRUNEKIT_STORAGE must be s3://bucket[/prefix] (or unset for local disk), "
                f"not {url!r}"
            )
        prefix = parsed.path.strip("/")
        return cls(
            bucket=parsed.netloc,
            prefix=f"{prefix}/" if prefix else "",
            endpoint_url=endpoint_url or None,
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        )

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str


def _classify(exc: Exception, what: str) -> StoreError:
    """The :class:`StoreError` for a boto3/botocore exception raised while doing ``what``."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, NoCredentialsError):
        return StoreDenied(f"{what}: no AWS credentials found (set AWS_ACCESS_KEY_ID and "
                           "AWS_SECRET_ACCESS_KEY, or a profile or role)")  # fmt: skip
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        message = f"{what}: {code or status} {err.get('Message', '')}".strip()
        if code in ("NoSuchKey", "NotFound", "404") and what.startswith(("read", "head")):
            return ObjectMissing(message)
        if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
            return StoreUnavailable(message)
        return StoreDenied(message)
    if isinstance(exc, BotoCoreError | OSError):
        return StoreUnavailable(f"{what}: {exc}")
    return StoreError(f"{what}: {type(exc).__name__}: {exc}")


class MultipartWriter:
    """Write an object part by part (one part in memory at a time), hashing as it goes;
    nothing is visible under the key until :meth:`close`, and :meth:`abort` leaves nothing."""

    def __init__(self, store: ObjectStore, key: str, part_bytes: int = PART_BYTES) -> None:
        self.store = store
        self.key = key
        self.part_bytes = part_bytes
        self.buffer = bytearray()
        self.sha = hashlib.sha256()
        self.size = 0
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        self.sha.update(data)
        self.size += len(data)
        self.buffer += data
        while len(self.buffer) >= self.part_bytes:
            self._send_part(bytes(self.buffer[: self.part_bytes]))
            del self.buffer[: self.part_bytes]

    def _send_part(self, body: bytes) -> None:
        client = self.store.client
        try:
            if self.upload_id is None:
                started = client.create_multipart_upload(Bucket=self.store.bucket, Key=self.key)
                self.upload_id = started["UploadId"]
            number = len(self.parts) + 1
            answer = client.upload_part(
                Bucket=self.store.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=body,
            )
        except Exception as exc:
            raise _classify(exc, f"upload of {self.key}") from exc
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def close(self) -> str:
        """Finish the object; its SHA-256 (hex)."""
        client = self.store.client
        try:
            if self.upload_id is None:  # smaller than one part: a single PUT
                client.put_object(Bucket=self.store.bucket, Key=self.key, Body=bytes(self.buffer))
            else:
                if self.buffer:
                    self._send_part(bytes(self.buffer))
                client.complete_multipart_upload(
                    Bucket=self.store.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    MultipartUpload={"Parts": self.parts},
                )
        except Exception as exc:
            raise _classify(exc, f"upload of {self.key}") from exc
        self.buffer.clear()
        return self.sha.hexdigest()

    def abort(self) -> None:
        """Drop the parts sent so far (best effort: the store may be down)."""
        self.buffer.clear()
        if self.upload_id is not None:
            try:
                self.store.client.abort_multipart_upload(
                    Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id
                )
            except Exception:
                return  # a bucket lifecycle rule should expire abandoned uploads


def make_client(location: Location, access_key: str = "", secret_key: str = "") -> Any:
    """A boto3 S3 client for ``location`` (credentials: the standard AWS sources unless
    given), with short connect timeouts and few retries so an outage is answered fast."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        signature_version="s3v4",
        s3={"addressing_style": "path"} if location.endpoint_url else {},
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=location.endpoint_url,
        region_name=location.region or "us-east-1",
        aws_access_key_id=access_key or None,
        aws_secret_access_key=secret_key or None,
        config=config,
    )


class ObjectStore:
    """One bucket and key prefix; every path argument is relative to the prefix."""

    def __init__(self, location: Location, client: Any = None) -> None:
        self.location = location
        self.bucket = location.bucket
        self.client = client if client is not None else make_client(location)

    def key(self, relative: str) -> str:
        path = PurePosixPath(relative)
        if path.is_absolute() or ".." in path.parts:
            raise ValueError(f"artifact path escapes the store: {relative!r}")
        return f"{self.location.prefix}{path.as_posix()}"

    # health
    def check(self) -> None:
        """Raise :class:`StoreDenied` or :class:`StoreUnavailable` unless the bucket answers
        to these credentials (a HEAD of the bucket and a LIST of the prefix)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.location.prefix, MaxKeys=1)
        except Exception as exc:
            raise _classify(exc, f"the object store {self.location.describe()}") from exc

    # writing
    def writer(self, relative: str) -> MultipartWriter:
        return MultipartWriter(self, self.key(relative))

    def upload_stream(self, chunks: Iterable[bytes], relative: str) -> tuple[int, str]:
        """Store ``chunks`` as one object; its size and SHA-256. Nothing is left on failure."""
        writer = self.writer(relative)
        try:
            for chunk in chunks:
                writer.write(chunk)
            return writer.size, writer.close()
        except BaseException:
            writer.abort()
            raise

    def upload_file(self, path: Path, relative: str) -> tuple[int, str]:
        with path.open("rb") as f:
            return self.upload_stream(iter(lambda: f.read(CHUNK), b""), relative)

    def upload_tree(self, local: Path, relative: str) -> list[str]:
        """Upload a file, or every file under a directory, to ``relative`` (same layout);
        the keys written. On failure the ones already written are deleted again."""
        files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
        written: list[str] = []
        try:
            for path in files:
                rel = relative if path == local else f"{relative}/{path.relative_to(local)}"
                self.upload_file(path, rel)
                written.append(rel)
        except BaseException:
            for rel in written:
                self.delete(rel)
            raise
        return written

    # reading
    def head(self, relative: str) -> ObjectInfo:
        try:
            answer = self.client.head_object(Bucket=self.bucket, Key=self.key(relative))
        except Exception as exc:
            raise _classify(exc, f"head of {relative}") from exc
        return ObjectInfo(size=int(answer["ContentLength"]), etag=str(answer.get("ETag", "")))

    def read(self, relative: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes ``start..end`` (inclusive; ``end`` None: to the end), in chunks."""
        extra = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key(relative), **extra)
        except Exception as exc:
            raise _classify(exc, f"read of {relative}") from exc
        body = answer["Body"]
        return self._chunks(body, relative)

    @staticmethod
    def _chunks(body: Any, relative: str) -> Iterator[bytes]:
        try:
            while chunk := body.read(CHUNK):
                yield chunk
        except Exception as exc:
            raise _classify(exc, f"read of {relative}") from exc
        finally:
            body.close()

    def download_file(self, relative: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("wb") as f:
            for chunk in self.read(relative):
                f.write(chunk)

    def stage(self, relative: str, dest: Path) -> Path:
        """Copy the object ``relative``, or every object under ``relative/``, to ``dest``
        (the same layout below it); ``dest``. :class:`ObjectMissing` when there is none."""
        keys = self.list_keys(relative)
        if not keys:
            raise ObjectMissing(f"no object at {relative} in {self.location.describe()}")
        for rel in keys:
            target = dest if rel == relative else dest / PurePosixPath(rel).relative_to(relative)
            self.download_file(rel, Path(target))
        return dest

    def presigned_url(
        self, relative: str, filename: str, media_type: str, seconds: int = PRESIGN_SECONDS
    ) -> str:
        return str(
            self.client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self.key(relative),
                    "ResponseContentDisposition": f'attachment; filename="{filename}"',
                    "ResponseContentType": media_type,
                },
                ExpiresIn=seconds,
            )
        )

    # listing and deleting
    def _pages(self, prefix: str, **extra: Any) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            yield from paginator.paginate(Bucket=self.bucket, Prefix=prefix, **extra)
        except Exception as exc:
            raise _classify(exc, f"list of {prefix}") from exc

    def list_keys(self, relative: str) -> list[str]:
        """``relative`` itself if it is an object, and every object under ``relative/``
        (paths relative to the store's prefix)."""
        start = len(self.location.prefix)
        base = self.key(relative)
        found: list[str] = []
        for page in self._pages(base):
            for item in page.get("Contents", []):
                key = str(item["Key"])
                if key == base or key.startswith(f"{base}/"):
                    found.append(key[start:])
        return found

    def children(self, relative: str) -> dict[str, float]:
        """The names directly under ``relative/`` (``models`` -> model ids), each with the
        newest modification time (epoch seconds) of the objects below it."""
        base = f"{self.key(relative)}/"
        newest: dict[str, float] = {}
        for page in self._pages(base):
            for item in page.get("Contents", []):
                name = str(item["Key"])[len(base) :].split("/", 1)[0]
                when = item["LastModified"].timestamp()
                newest[name] = max(newest.get(name, 0.0), when)
        return newest

    def delete(self, relative: str) -> int:
        """Delete the object ``relative`` and everything under ``relative/``; how many."""
        keys = [self.key(rel) for rel in self.list_keys(relative)]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes up to 1000 keys
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            try:
                self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            except Exception as exc:
                raise _classify(exc, f"delete of {relative}") from exc
        return len(keys)

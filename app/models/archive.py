"""Recognise an uploaded model by its content and unpack it safely.

Accepted: a SavedModel directory packed as ``.zip`` or ``.tar.gz`` (``saved_model.pb`` at
the root or inside one top-level folder), or a Keras 3 ``.keras`` file. Nothing here runs or
deserialises the model; archives are treated as hostile: every member is checked before a
byte is written (no absolute paths, no ``..``, no links or devices, bounded member count,
bounded uncompressed size and compression ratio), and extraction re-counts the bytes it
actually writes instead of trusting the headers.
"""

from __future__ import annotations

import gzip
import json
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, cast

from app.problems import Problem
from prunekit.formats import ModelFormat

ACCEPTED = (
    "a SavedModel directory as .zip or .tar.gz (with saved_model.pb inside), "
    "or a Keras 3 .keras file"
)
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
GZIP_MAGIC = b"\x1f\x8b"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
KERAS_MEMBERS = {"config.json", "metadata.json"}
CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    max_members: int
    max_total_bytes: int
    max_ratio: int


@dataclass(frozen=True)
class Member:
    """An archive member reduced to what the checks need."""

    name: str
    size: int
    is_dir: bool
    is_file: bool
    kind: str  # "file", "dir", "symlink", "hardlink", "special"


def unsupported(detail: str) -> Problem:
    return Problem(
        415,
        "unsupported-model-format",
        "Unsupported model format",
        f"{detail}. Accepted formats: {ACCEPTED}.",
        accepted_formats=["saved_model (.zip, .tar.gz)", "keras (.keras)"],
    )


def unsafe(rule: str, detail: str) -> Problem:
    return Problem(
        422,
        "unsafe-archive",
        "Archive refused",
        f"{detail}; pack the model directory with plain files only and upload again",
        rule=rule,
    )


def corrupt(detail: str) -> Problem:
    return Problem(
        422,
        "corrupt-upload",
        "Upload is corrupt",
        f"{detail}; check the file is complete and upload it again",
    )


def _check_name(name: str) -> PurePosixPath:
    if "\x00" in name:
        raise unsafe("bad_name", f"member name {name!r} contains a NUL byte")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise unsafe("absolute_path", f"member {name!r} has an absolute path")
    path = PurePosixPath(name.replace("\\", "/"))
    if any(part == ".." for part in path.parts):
        raise unsafe("path_traversal", f"member {name!r} points outside the archive ('..')")
    return path


def check_members(members: list[Member], archive_bytes: int, limits: Limits) -> None:
    if len(members) > limits.max_members:
        raise unsafe(
            "too_many_members",
            f"the archive has {len(members)} members, more than the limit of {limits.max_members}",
        )
    total = 0
    for m in members:
        _check_name(m.name)
        if m.kind == "symlink":
            raise unsafe("symlink", f"member {m.name!r} is a symbolic link")
        if m.kind == "hardlink":
            raise unsafe("hardlink", f"member {m.name!r} is a hard link")
        if m.kind == "special":
            raise unsafe("special_file", f"member {m.name!r} is a device, FIFO or socket")
        total += m.size
    if total > limits.max_total_bytes:
        raise unsafe(
            "uncompressed_too_large",
            f"the archive unpacks to {total} bytes, more than the limit of "
            f"{limits.max_total_bytes}",
        )
    if archive_bytes > 0 and total / archive_bytes > limits.max_ratio:
        raise unsafe(
            "compression_ratio",
            f"the archive expands {total / archive_bytes:.0f}x, more than the limit of "
            f"{limits.max_ratio}x (a zip bomb?)",
        )


def _zip_members(zf: zipfile.ZipFile, limits: Limits | None = None) -> list[Member]:
    out = []
    for info in zf.infolist():
        if (
            limits is not None
            and info.file_size > 1 << 20
            and info.file_size > limits.max_ratio * max(info.compress_size, 1)
        ):
            raise unsafe(
                "compression_ratio",
                f"member {info.filename!r} expands "
                f"{info.file_size / max(info.compress_size, 1):.0f}x, "
                f"more than the limit of {limits.max_ratio}x (a zip bomb?)",
            )
        mode = (info.external_attr >> 16) & 0xFFFF if info.create_system == 3 else 0
        fmt = stat.S_IFMT(mode)
        if fmt == stat.S_IFLNK:
            kind = "symlink"
        elif fmt and fmt not in (stat.S_IFREG, stat.S_IFDIR):
            kind = "special"
        elif info.is_dir():
            kind = "dir"
        else:
            kind = "file"
        out.append(Member(info.filename, info.file_size, info.is_dir(), kind == "file", kind))
    return out


def _tar_kind(m: tarfile.TarInfo) -> str:
    if m.issym():
        return "symlink"
    if m.islnk():
        return "hardlink"
    if m.isdir():
        return "dir"
    if m.isfile():
        return "file"
    return "special"


def _saved_model_root(members: list[Member]) -> str | None:
    """The folder (``""`` for the root) holding ``saved_model.pb``, if exactly one does."""
    roots = {
        str(PurePosixPath(m.name.replace("\\", "/")).parent).removeprefix(".")
        for m in members
        if m.is_file and PurePosixPath(m.name.replace("\\", "/")).name == "saved_model.pb"
    }
    roots = {r.strip("/") for r in roots}
    if len(roots) > 1:
        raise unsupported(
            f"the archive holds several SavedModels ({', '.join(sorted(roots))}); "
            "upload one model per archive"
        )
    if not roots:
        return None
    root = roots.pop()
    if root.count("/") > 0:
        raise unsupported(
            f"saved_model.pb is nested too deep ({root}/); put it at the archive root or in "
            "one top-level folder"
        )
    return root


@dataclass(frozen=True)
class Detected:
    format: ModelFormat
    container: str  # "zip", "tar", "keras"


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise corrupt(f"the zip archive could not be read ({exc})") from exc


def _check_zip_entry_count(path: Path, limits: Limits) -> None:
    """Refuse a zip declaring too many members from its end record, before the central
    directory (150k entries take seconds to parse) is read."""
    with path.open("rb") as f:
        end = zipfile._EndRecData(f)  # type: ignore[attr-defined]
    if end is not None and end[zipfile._ECD_ENTRIES_TOTAL] > limits.max_members:  # type: ignore[attr-defined]
        raise unsafe(
            "too_many_members",
            f"the archive has {end[zipfile._ECD_ENTRIES_TOTAL]} members, more than the limit "  # type: ignore[attr-defined]
            f"of {limits.max_members}",
        )


def detect(path: Path, head: bytes, limits: Limits, allow_h5: bool = False) -> Detected:
    """What the upload is, judged from its bytes (the file name is only a hint).

    Any failure to parse the container is a 422 ``corrupt-upload``, never a 500."""
    try:
        return _detect(path, head, limits, allow_h5)
    except Problem:
        raise
    except Exception as exc:
        raise corrupt(
            f"the file could not be read as an archive ({type(exc).__name__}: {exc})"
        ) from exc


def _detect(path: Path, head: bytes, limits: Limits, allow_h5: bool) -> Detected:
    size = path.stat().st_size
    if head.startswith(HDF5_MAGIC):
        if allow_h5:  # the operator accepted the risk (PRUNEKIT_ALLOW_H5=1)
            return Detected(ModelFormat.KERAS, "h5")
        raise unsupported(
            "legacy HDF5 (.h5) models are refused: Keras ignores safe_mode for them, so "
            "loading one can run arbitrary code. Re-save it with model.save('model.keras')"
        )
    if head.startswith(ZIP_MAGIC):
        _check_zip_entry_count(path, limits)
        with _open_zip(path) as zf:
            members = _zip_members(zf, limits)
            check_members(members, size, limits)
            root = _saved_model_root(members)
            if root is not None:
                with zf.open(f"{root}/saved_model.pb" if root else "saved_model.pb") as pb:
                    check_saved_model_pb(pb.read(PB_CHECK_BYTES + 1))
                return Detected(ModelFormat.SAVED_MODEL, "zip")
            names = {m.name for m in members if m.is_file}
            if names >= KERAS_MEMBERS:
                _check_keras_config(zf)
                return Detected(ModelFormat.KERAS, "keras")
        raise unsupported(
            "the zip archive holds neither saved_model.pb nor a Keras config.json + metadata.json"
        )
    if head.startswith(GZIP_MAGIC):
        members = _tar_members(path, limits)
        check_members(members, size, limits)
        root = _saved_model_root(members)
        if root is not None:
            _check_tar_pb(path, root)
            return Detected(ModelFormat.SAVED_MODEL, "tar")
        raise unsupported("the .tar.gz archive holds no saved_model.pb")
    raise unsupported("the file is neither a zip, a .tar.gz nor a .keras file")


def _check_keras_config(zf: zipfile.ZipFile) -> None:
    info = zf.getinfo("config.json")
    if info.file_size > 64 * 1024 * 1024:
        raise unsafe("uncompressed_too_large", "the .keras config.json is over 64 MiB")
    try:
        config = json.loads(zf.read("config.json"))
    except (ValueError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise corrupt(f"the .keras file's config.json is not valid JSON ({exc})") from exc
    if not isinstance(config, dict) or "class_name" not in config:
        raise corrupt("the .keras file's config.json does not describe a Keras model")


class _Inflated:
    """A gzip stream read through a budget: the decompressed bytes are counted as they come
    and reading stops (a 422) once they pass what the limits allow, so a gzip bomb is
    refused after at most ``archive size x max ratio`` bytes, not after all of them."""

    TAR_OVERHEAD = 1024  # a member's header block plus its padding, at most

    def __init__(self, raw: IO[bytes] | gzip.GzipFile, archive_bytes: int, limits: Limits) -> None:
        self.raw = raw
        self.limits = limits
        self.ratio_budget = max(archive_bytes, 1) * limits.max_ratio
        self.inflated = 0
        self.members = 0  # members seen so far: their headers are not payload

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(CHUNK if size is None or size < 0 else min(size, CHUNK))
        self.inflated += len(data)
        payload = self.inflated - self.TAR_OVERHEAD * (self.members + 1)
        if payload > self.limits.max_total_bytes:
            raise unsafe(
                "uncompressed_too_large",
                f"the archive unpacks to more than the limit of {self.limits.max_total_bytes} "
                "bytes",
            )
        if payload > self.ratio_budget:
            raise unsafe(
                "compression_ratio",
                f"the archive expands more than {self.limits.max_ratio}x (the limit) while "
                "being read (a gzip bomb?)",
            )
        return data


def _tar_members(path: Path, limits: Limits | None = None) -> list[Member]:
    """The members of a .tar.gz. With ``limits``, the stream is read once, front to back,
    under :class:`_Inflated`'s budget, and reading stops as soon as a limit is broken."""
    out: list[Member] = []
    total = 0
    size = path.stat().st_size
    try:
        with gzip.open(path, "rb") as gz:
            inflated = _Inflated(gz, size, limits) if limits is not None else None
            # tarfile's stream mode ("r|") only calls read(): _Inflated provides it
            stream = cast(IO[bytes], inflated if inflated is not None else gz)
            with tarfile.open(fileobj=stream, mode="r|") as tf:
                for m in tf:
                    out.append(Member(m.name, m.size, m.isdir(), m.isfile(), _tar_kind(m)))
                    total += m.size
                    if inflated is not None and limits is not None:
                        inflated.members = len(out)
                        if (  # refused before the member's data is inflated
                            len(out) > limits.max_members
                            or total > min(limits.max_total_bytes, size * limits.max_ratio)
                        ):
                            check_members(out, size, limits)
            return out
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise corrupt(f"the .tar.gz archive could not be read ({exc})") from exc


def _copy_bounded(src: IO[bytes], dest: Path, budget: list[int], limits: Limits) -> None:
    with dest.open("wb") as out:
        while chunk := src.read(CHUNK):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise unsafe(
                    "uncompressed_too_large",
                    "the archive unpacks to more bytes than its headers declare and than "
                    f"the limit of {limits.max_total_bytes}",
                )
            out.write(chunk)


def _entries(path: Path, container: str) -> Iterator[tuple[str, bool, IO[bytes] | None]]:
    if container == "zip":
        with _open_zip(path) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    yield info.filename, True, None
                else:
                    with zf.open(info) as f:
                        yield info.filename, False, f
        return
    with tarfile.open(path, "r:gz") as tf:
        for m in tf:
            if m.isdir():
                yield m.name, True, None
            elif m.isfile():
                member = tf.extractfile(m)
                if member is not None:
                    with member:
                        yield m.name, False, member


def extract_saved_model(path: Path, container: str, dest: Path, limits: Limits) -> Path:
    """Unpack the SavedModel folder of the archive into ``dest`` (created); return it."""
    if container == "tar":
        members = _tar_members(path)
    else:
        with _open_zip(path) as zf:
            members = _zip_members(zf)
    root = _saved_model_root(members) or ""
    dest.mkdir(parents=True, exist_ok=False)
    base = dest.resolve()
    budget = [limits.max_total_bytes]
    try:
        for name, is_dir, fileobj in _entries(path, container):
            rel = _check_name(name)
            parts = [p for p in rel.parts if p not in ("", ".")]
            if root:
                if not parts or parts[0] != root:
                    continue  # outside the model folder: not part of the model
                parts = parts[1:]
            if not parts:
                continue
            target = base.joinpath(*parts).resolve()
            if base not in target.parents:
                raise unsafe("path_traversal", f"member {name!r} resolves outside the model")
            if is_dir:
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            assert fileobj is not None
            _copy_bounded(fileobj, target, budget, limits)
    except Problem:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except Exception as exc:  # truncated, encrypted, unknown compression method...
        shutil.rmtree(dest, ignore_errors=True)
        raise corrupt(f"the archive could not be unpacked ({type(exc).__name__}: {exc})") from exc
    if not (dest / "saved_model.pb").is_file():
        shutil.rmtree(dest, ignore_errors=True)
        raise unsupported("saved_model.pb was not found after unpacking")
    return dest


PB_CHECK_BYTES = 64 * 1024 * 1024


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def check_saved_model_pb(data: bytes) -> None:
    """A cheap structural check of ``saved_model.pb`` without TensorFlow.

    Walks the top level of the protobuf wire format (``SavedModel``: field 1
    ``saved_model_schema_version`` varint, field 2 ``meta_graphs`` messages) and requires
    every field to be well-formed and at least one meta graph. Random bytes, truncated
    files and other protobufs fail here with a 422; deeper corruption is found by the
    worker's inspection (the model then fails inspection and jobs on it answer 422).
    """
    if len(data) > PB_CHECK_BYTES:
        return  # very large graphs: leave it to the worker's inspection
    pos, meta_graphs = 0, 0
    try:
        while pos < len(data):
            tag, pos = _varint(data, pos)
            field_no, wire = tag >> 3, tag & 7
            if field_no == 0:
                raise ValueError("field number 0")
            if wire == 0:
                _, pos = _varint(data, pos)
            elif wire == 1:
                pos += 8
            elif wire == 2:
                length, pos = _varint(data, pos)
                pos += length
                meta_graphs += field_no == 2
            elif wire == 5:
                pos += 4
            else:
                raise ValueError(f"wire type {wire}")
            if pos > len(data):
                raise ValueError("a field runs past the end of the file")
            if (field_no == 1 and wire != 0) or (field_no == 2 and wire != 2):
                raise ValueError(f"field {field_no} has the wrong type")
    except ValueError as exc:
        raise corrupt(f"saved_model.pb is not a valid SavedModel protobuf ({exc})") from exc
    if meta_graphs == 0:
        raise corrupt("saved_model.pb holds no MetaGraph: it is not a SavedModel")


def _check_tar_pb(path: Path, root: str) -> None:
    want = f"{root}/saved_model.pb" if root else "saved_model.pb"
    with tarfile.open(path, "r:gz") as tf:
        for m in tf:
            name = str(PurePosixPath(m.name.replace("\\", "/"))).removeprefix("./")
            if m.isfile() and name == want:
                f = tf.extractfile(m)
                if f is not None:
                    with f:
                        check_saved_model_pb(f.read(PB_CHECK_BYTES + 1))
                return

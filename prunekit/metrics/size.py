"""Size on disk of a model artifact, raw and compressed.

Unstructured sparsity does not shrink a dense file, it shows once the file is compressed;
``compressed`` is what a DEFLATE zip of the artifact takes (the SavedModel download is
exactly such a zip, written with the same settings), so the two numbers together tell the
user what pruning bought. The zip is written at DEFLATE level 1 (:data:`ZIP_LEVEL`): on a
200 MB float32 model it runs several times faster than level 6, and zeros, which is what
pruning adds, compress almost as well. The size is counted in one streaming pass: nothing
is written to disk.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

ZIP_LEVEL = 1
CODEC = f"zip, DEFLATE level {ZIP_LEVEL}"  # named with every compressed figure


@dataclass(frozen=True)
class ArtifactSize:
    raw: int
    compressed: int
    codec: str = CODEC

    def as_dict(self) -> dict[str, int | str]:
        return {"raw": self.raw, "compressed": self.compressed, "codec": self.codec}


class _ByteCounter:
    """A seekable sink that keeps no data, only the size a file written to it would have
    (zipfile seeks back to patch each entry's header, as it does in a file on disk)."""

    def __init__(self) -> None:
        self.position = 0
        self.size = 0

    def write(self, data: bytes) -> int:
        self.position += len(data)
        self.size = max(self.size, self.position)
        return len(data)

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.position, 2: self.size}[whence]
        self.position = base + offset
        return self.position

    def seekable(self) -> bool:
        return True

    def flush(self) -> None:
        pass


def raw_size(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _write_zip(src: Path, zf: zipfile.ZipFile) -> None:
    """``src`` into ``zf``: a directory's tree with paths relative to it, or one file."""
    if src.is_file():
        zf.write(src, src.name)
        return
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src).as_posix()
        if p.is_dir():
            zf.writestr(rel + "/", b"")
        elif p.is_file():
            zf.write(p, rel)


def zip_directory(src: Path, dest: Path, compresslevel: int = ZIP_LEVEL) -> Path:
    """Write ``src`` (a directory) into a DEFLATE zip at ``dest``; paths relative to ``src``."""
    src, dest = Path(src), Path(dest)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as zf:
        _write_zip(src, zf)
    return dest


def compressed_size(path: Path, compresslevel: int = ZIP_LEVEL) -> int:
    """Bytes of a DEFLATE zip holding the artifact (a file or a directory): exactly the size
    of the file :func:`zip_directory` writes, counted without writing it."""
    counter = _ByteCounter()
    sink = cast(IO[bytes], counter)  # write/tell/flush are all ZipFile calls on it
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as zf:
        _write_zip(Path(path), zf)
    return counter.size


def artifact_size(path: Path) -> ArtifactSize:
    return ArtifactSize(raw=raw_size(path), compressed=compressed_size(path))

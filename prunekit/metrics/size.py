"""Size on disk of a model artifact, raw and compressed.

Unstructured sparsity does not shrink a dense file, it shows once the file is compressed;
``compressed`` is what a DEFLATE zip of the artifact takes (the SavedModel download is
exactly such a zip), so the two numbers together tell the user what pruning bought.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20


@dataclass(frozen=True)
class ArtifactSize:
    raw: int
    compressed: int


def raw_size(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def zip_directory(src: Path, dest: Path, compresslevel: int = 6) -> Path:
    """Write ``src`` (a directory) into a DEFLATE zip at ``dest``; paths relative to ``src``."""
    src, dest = Path(src), Path(dest)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as zf:
        for p in sorted(src.rglob("*")):
            rel = p.relative_to(src).as_posix()
            if p.is_dir():
                zf.writestr(rel + "/", b"")
            elif p.is_file():
                zf.write(p, rel)
    return dest


def compressed_size(path: Path) -> int:
    """Bytes of a DEFLATE zip holding the artifact (a file or a directory)."""
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "artifact.zip"
        if path.is_dir():
            zip_directory(path, target)
        else:
            with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
                zf.write(path, path.name)
        return os.path.getsize(target)


def artifact_size(path: Path) -> ArtifactSize:
    return ArtifactSize(raw=raw_size(path), compressed=compressed_size(path))

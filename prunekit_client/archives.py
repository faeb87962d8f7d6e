"""A SavedModel directory as a reproducible zip: the same files give the same bytes (and so
the same sha256, which is how an upload is found again)."""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: no modification times in the archive


@contextmanager
def zip_directory(src: Path) -> Iterator[Path]:
    """``src`` zipped under its own name, in a temporary file removed on exit."""
    with tempfile.TemporaryDirectory(prefix="prunekit-upload-") as tmp:
        dest = Path(tmp) / f"{src.name}.zip"
        with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(p for p in src.rglob("*") if p.is_file()):
                info = zipfile.ZipInfo(f"{src.name}/{path.relative_to(src).as_posix()}", EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, path.read_bytes())
        yield dest

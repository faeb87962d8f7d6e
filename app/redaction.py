"""Server paths out of what clients read.

Error messages from archive libraries, numpy and TensorFlow (a worker's inspection) can
name files on the server: ``/srv/prunekit/var/artifacts/models/<id>/saved_model``. Clients
get them with the server's directories replaced by placeholders (``$PRUNEKIT_HOME``,
``<tmp>``, ``<python>``, ``<server>``, ``~``), longest first, so nothing absolute leaks.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from core.settings import get_settings


def server_roots() -> list[tuple[str, str]]:
    """(directory, placeholder) pairs, longest directory first."""
    home = get_settings().home
    candidates = [
        (str(home), "$PRUNEKIT_HOME"),
        (os.path.realpath(home), "$PRUNEKIT_HOME"),
        (sys.prefix, "<python>"),
        (sys.base_prefix, "<python>"),
        (os.path.realpath(sys.prefix), "<python>"),
        (tempfile.gettempdir(), "<tmp>"),
        (os.path.realpath(tempfile.gettempdir()), "<tmp>"),
        (os.getcwd(), "<server>"),
        (str(Path.home()), "~"),
    ]
    seen: dict[str, str] = {}
    for root, label in candidates:
        root = root.rstrip("/")
        if root.count("/") >= 1 and len(root) > 1 and root not in seen:
            seen[root] = label
    return sorted(seen.items(), key=lambda pair: len(pair[0]), reverse=True)


def redact_paths(text: str) -> str:
    for root, label in server_roots():
        if root in text:
            text = text.replace(root, label)
    return text


def redact(value: Any) -> Any:
    """``value`` (a JSON document) with server paths redacted in every string."""
    if isinstance(value, str):
        return redact_paths(value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value

"""The key ``make run`` creates for the person at the keyboard (tenant ``local``).

Stored at ``$PRUNEKIT_HOME/api-key`` (mode 0600) so the README's curl session can send
``-H "Authorization: Bearer $(cat var/api-key)"``. Reused while Redis still knows it; a new
one is created when the file is missing or its key is unknown (e.g. a fresh Redis).
"""

from __future__ import annotations

import os
from pathlib import Path

from core.auth import keys

LOCAL_TENANT = "local"


def ensure_local_key(home: Path) -> tuple[Path, str, bool]:
    """(path of the key file, the key, whether it was created now)."""
    path = home / "api-key"
    if path.is_file():
        secret = path.read_text().strip()
        if keys.lookup(secret) is not None:
            return path, secret, False
    _, secret = keys.create_key(LOCAL_TENANT, name="make run (local)")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    os.chmod(path, 0o600)
    return path, secret, True

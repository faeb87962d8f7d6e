"""Where the tests find the real offline data sets (``digits_8x8.npz``, ...).

``$PRUNEKIT_DATA_DIR`` when set, else ``../shared/data`` beside the repository: the same rule
as the benchmarks (``bench.common.data_dir``), never a path of one machine.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    env = os.environ.get("PRUNEKIT_DATA_DIR")
    return Path(env).expanduser().resolve() if env else (REPO / ".." / "shared" / "data").resolve()


DIGITS = data_dir() / "digits_8x8.npz"

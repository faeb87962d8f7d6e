"""Blocking work off the event loop: archive and dataset checks run in worker threads.

Uploads are checked (zip central directories, gzip streams, ``.npz`` headers), unpacked and
recorded in a thread, so one hostile upload cannot stall every other request. The threads
come from a pool of their own (``PRUNEKIT_UPLOAD_CHECK_THREADS``), so many concurrent
uploads cannot take the threads that synchronous endpoints (and ``/healthz``) need either.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from core.settings import get_settings

T = TypeVar("T")


@lru_cache(maxsize=1)
def _limiter() -> anyio.CapacityLimiter:
    return anyio.CapacityLimiter(get_settings().upload_check_threads)


async def off_loop(func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in a thread of the upload-check pool; its exceptions propagate."""
    return await anyio.to_thread.run_sync(partial(func, *args), limiter=_limiter())

"""Test-wide set-up: a private key space in a real Redis, and a private artifacts home.

Tests use ``PRUNEKIT_REDIS_URL`` when set, else the embedded default (a Redis answering on
127.0.0.1:6379, else a redis-server started here). They use database 15 plus a unique key
prefix and queue name, so they never touch a user's data, and delete their keys after.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

RUN_ID = uuid.uuid4().hex[:8]
HOME = Path(tempfile.mkdtemp(prefix=f"prunekit-test-{RUN_ID}-"))

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
os.environ["PRUNEKIT_HOME"] = str(HOME)
os.environ["PRUNEKIT_KEY_PREFIX"] = f"prunekit-test-{RUN_ID}"
os.environ["PRUNEKIT_QUEUE"] = f"prunekit-test-{RUN_ID}"


def _resolve_redis() -> tuple[str, object | None]:
    from core.embedded_redis import resolve

    url, server = resolve(HOME)
    base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    return f"{base}/15", server


_REDIS_URL, _EMBEDDED = _resolve_redis()
os.environ["PRUNEKIT_REDIS_URL"] = _REDIS_URL


@pytest.fixture(scope="session", autouse=True)
def _clean_redis_keys() -> Iterator[None]:
    yield
    import redis

    r = redis.Redis.from_url(_REDIS_URL)
    prefix = os.environ["PRUNEKIT_KEY_PREFIX"]
    for k in r.scan_iter(match=f"{prefix}*", count=1000):
        r.delete(k)
    if _EMBEDDED is not None:
        _EMBEDDED.stop()  # type: ignore[attr-defined]


@pytest.fixture
def tmp_home() -> Path:
    return HOME

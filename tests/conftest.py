"""Test-wide set-up: a private artifacts home, and a private key space in a real Redis for the
tests that need one.

Only tests marked ``redis`` (every end-to-end test is) use Redis: the session fixture
:func:`redis_service` makes it ready the first time such a test runs, so ``pytest -m "not
redis"`` runs the rest with no Redis at all. The URL itself is fixed at import, without
starting anything, because modules cache their settings when imported: ``PRUNEKIT_REDIS_URL``
when set (nothing connects to it until a ``redis`` test runs), else the Redis answering on
127.0.0.1:6379 if one does (one PING), else a private redis-server on a free port, started
only when a ``redis`` test needs it. Tests use database 15 plus a unique key prefix and queue
name, so they never touch a user's data, and delete their keys after.
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

E2E_DIR = Path(__file__).resolve().parent / "e2e"


def _database_15(url: str) -> str:
    base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    return f"{base}/15"


def _choose_redis_url() -> tuple[str, int | None]:
    """The tests' Redis URL, and the port of the private server to start if one is needed."""
    url = os.environ.get("PRUNEKIT_REDIS_URL")
    if url:
        return _database_15(url), None
    from core.embedded_redis import DEFAULT_HOST, DEFAULT_PORT, answers, free_port

    local = f"redis://{DEFAULT_HOST}:{DEFAULT_PORT}/0"
    if answers(local):
        return _database_15(local), None
    port = free_port()
    return f"redis://{DEFAULT_HOST}:{port}/15", port


_REDIS_URL, _EMBEDDED_PORT = _choose_redis_url()
os.environ["PRUNEKIT_REDIS_URL"] = _REDIS_URL


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every end-to-end test needs Redis: mark it so ``-m "not redis"`` leaves it out."""
    for item in items:
        if E2E_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.redis)


@pytest.fixture(scope="session")
def redis_service() -> Iterator[str]:
    """The tests' Redis, started if it has to be; its test keys are deleted at the end."""
    import redis

    server = None
    if _EMBEDDED_PORT is not None:
        from core.embedded_redis import start_embedded

        server = start_embedded(HOME / "redis", port=_EMBEDDED_PORT)
    try:
        yield _REDIS_URL
    finally:
        r = redis.Redis.from_url(_REDIS_URL)
        prefix = os.environ["PRUNEKIT_KEY_PREFIX"]
        try:
            for k in r.scan_iter(match=f"{prefix}*", count=1000):
                r.delete(k)
        finally:
            if server is not None:
                server.stop()


@pytest.fixture(autouse=True)
def _redis_for_marked_tests(request: pytest.FixtureRequest) -> None:
    """Tests marked ``redis`` get :func:`redis_service` (session and module fixtures that use
    Redis themselves ask for it by name: they are set up before this one)."""
    if request.node.get_closest_marker("redis") is not None:
        request.getfixturevalue("redis_service")


_REDIS_ADDRESS = _REDIS_URL.split("/")[2]  # host:port, as connection errors quote it


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    """A test that failed reaching Redis without the ``redis`` marker is told so."""
    report: pytest.TestReport = yield
    unmarked = item.get_closest_marker("redis") is None
    if report.failed and unmarked and _REDIS_ADDRESS in str(report.longrepr):
        report.sections.append(("prunekit", "this test uses Redis: mark it @pytest.mark.redis"))
    return report


@pytest.fixture
def tmp_home() -> Path:
    return HOME

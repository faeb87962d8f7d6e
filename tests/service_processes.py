"""Starting the service's real processes (Celery workers, uvicorn) as ``make run`` does.

Shared by the end-to-end tests (``tests/e2e/conftest.py``) and the chaos drill
(``bench/chaos_drill.py``). Every process gets its own session, hence its own process group:
a caller can SIGKILL a worker whole (main process, pool child, warden) with ``os.killpg``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from core.embedded_redis import free_port

REPO = Path(__file__).resolve().parents[1]


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen(
        args,
        cwd=REPO,
        env=full_env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: a caller can kill it whole
    )


def spawn_worker(
    logs: Path,
    env: dict[str, str] | None = None,
    concurrency: int = 2,
    name: str = "worker",
    prefix: list[str] | None = None,
) -> subprocess.Popen[bytes]:
    """A Celery worker; ``prefix`` runs it through another program (``ip netns exec ns``)."""
    queue = (env or {}).get("PRUNEKIT_QUEUE") or os.environ["PRUNEKIT_QUEUE"]
    return spawn(
        [*(prefix or []),
         sys.executable, "-m", "celery", "-A", "worker.celery_app:celery_app", "worker",
         "--loglevel", "INFO", "--concurrency", str(concurrency), "-Q", queue,
         "--hostname", f"{name}-{free_port()}@%h"],
        logs / f"{name}.log",
        env,
    )  # fmt: skip


@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``env`` added, restored afterwards."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def spawn_api(logs: Path, port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """uvicorn as ``make run`` starts it (read deadlines, connection limit), with ``env``."""
    from app.serve import uvicorn_command
    from core.settings import Settings

    with _environ(env or {}):  # the API's settings, as its process reads them
        settings = Settings.from_env()
    return spawn(uvicorn_command("127.0.0.1", port, settings), logs / "api.log", env)


def stop(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

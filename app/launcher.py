"""``make run``: the whole service in the foreground — Redis, one worker, the API.

Chooses a durable Redis (see :mod:`app.durability`), then starts a Celery worker and uvicorn as
child processes with ``PRUNEKIT_REDIS_URL`` set, and stops all of them on Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

from app.auth.local_key import ensure_local_key
from app.durability import choose_redis
from app.serve import uvicorn_command
from core.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=os.environ.get("PRUNEKIT_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PRUNEKIT_PORT", "8000")))
    args = parser.parse_args(argv)

    home = Path(os.environ.get("PRUNEKIT_HOME", "var")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    choice = choose_redis(home)
    url, embedded = choice.url, choice.embedded
    env = {**os.environ, "PRUNEKIT_REDIS_URL": url, "PRUNEKIT_HOME": str(home)}
    where = f"embedded redis-server on port {embedded.port}" if embedded else url
    print(f"prunekit: Redis: {where} ({choice.reason}); artifacts in {home}", flush=True)
    os.environ.update(PRUNEKIT_REDIS_URL=url, PRUNEKIT_HOME=str(home))
    key_path, secret, created = ensure_local_key(home)
    if created:
        print(f"prunekit: created an API key for tenant 'local': {secret}", flush=True)
    print(
        f'prunekit: API key in {key_path}; send -H "Authorization: Bearer $(cat {key_path})"',
        flush=True,
    )

    settings = Settings.from_env()
    concurrency = str(settings.worker_concurrency)
    queue = settings.queue
    py = sys.executable
    children = [
        subprocess.Popen(
            [
                py,
                "-m",
                "celery",
                "-A",
                "worker.celery_app:celery_app",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                concurrency,
                "-Q",
                queue,
            ],
            env=env,
        ),
        subprocess.Popen(uvicorn_command(args.host, args.port, settings), env=env),
    ]
    print(
        f"prunekit: API on http://{args.host}:{args.port} (docs at /docs); Ctrl-C stops", flush=True
    )

    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    code = 0
    try:
        while not stopping:
            for child in children:
                if child.poll() is not None:
                    name = cast(list[str], child.args)[2]  # python -m <name> ...
                    print(f"prunekit: {name} exited with {child.returncode}", flush=True)
                    code = child.returncode or 1
                    stopping = True
            time.sleep(0.5)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
        if embedded:
            embedded.stop()
        print("prunekit: stopped", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())

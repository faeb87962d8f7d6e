"""The API server command: uvicorn with read deadlines, a keep-alive timeout and a
connection limit. ``make run`` (:mod:`app.launcher`) starts it; a container runs
``python -m app.serve --host 0.0.0.0 --port 8000``.

* ``--http app.slow_clients:...``: headers must arrive within ``PRUNEKIT_HEADER_TIMEOUT`` s,
  a body may not pause longer than ``PRUNEKIT_BODY_TIMEOUT`` s (:mod:`app.slow_clients`);
* ``--timeout-keep-alive``: an idle keep-alive connection closes after
  ``PRUNEKIT_KEEP_ALIVE_TIMEOUT`` s;
* ``--limit-concurrency``: beyond ``PRUNEKIT_MAX_CONNECTIONS`` open connections (or running
  requests), requests are answered ``503``.
"""

from __future__ import annotations

import argparse
import os
import sys

from app.slow_clients import DEFAULT_PROTOCOL
from core.settings import Settings


def uvicorn_command(host: str, port: int, settings: Settings) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "app.main:app",
        "--host", host,
        "--port", str(port),
        "--http", DEFAULT_PROTOCOL,
        "--timeout-keep-alive", str(settings.keep_alive_timeout),
        "--limit-concurrency", str(settings.max_connections),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=os.environ.get("PRUNEKIT_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PRUNEKIT_PORT", "8000")))
    args = parser.parse_args(argv)
    command = uvicorn_command(args.host, args.port, Settings.from_env())
    os.execv(command[0], command)


if __name__ == "__main__":
    main()

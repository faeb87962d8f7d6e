"""Worker start-up and shut-down hooks: the artifact store check, the reconciler process.

At ``worker_init`` (the main process, before it consumes anything) the worker checks that
the artifact store answers to its credentials (:func:`core.artifacts.check`): a worker that
could not read models or write results would take jobs only to fail them. Refused
credentials or a missing bucket end the worker at once, with the reason; an unreachable
store is asked again for ``STORE_WAIT_S`` seconds first (it may be starting beside us).

At ``worker_ready`` the worker's main process starts ``python -m core.lifecycle.reconciler``
(TensorFlow-free, its own Redis connection, never forked from the TF parent's threads) and
stops it at ``worker_shutdown``; if the worker is killed outright the reconciler notices
that its parent is gone and exits by itself.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from typing import Any

from celery.signals import worker_init, worker_ready, worker_shutdown

from core import artifacts
from core.object_store import StoreError, StoreUnavailable

log = logging.getLogger("prunekit.worker")

STORE_WAIT_S = 30.0  # how long an unreachable store is waited for at start
_children: list[subprocess.Popen[bytes]] = []


def check_store(wait_s: float = STORE_WAIT_S) -> None:
    """Return once the artifact store answers; raise ``SystemExit`` (the worker ends, non-zero,
    with the reason) if it refuses, or stays unreachable for ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            artifacts.check()
            return
        except StoreUnavailable as exc:
            if time.monotonic() >= deadline:
                raise SystemExit(_refusal(exc, f"still unreachable after {wait_s:.0f} s")) from exc
            log.warning("artifact store not answering yet (%s); asking again", exc)
            time.sleep(1.0)
        except (StoreError, OSError) as exc:
            raise SystemExit(_refusal(exc, "refused")) from exc


def _refusal(exc: BaseException, what: str) -> str:
    message = (
        f"prunekit worker: the artifact store ({artifacts.describe()}) {what}: {exc}. "
        "Check PRUNEKIT_STORAGE, PRUNEKIT_S3_ENDPOINT_URL and the store credentials "
        "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) the API uses too; the worker did not start."
    )
    log.error(message)
    return message


@worker_init.connect
def _check_store(**_: Any) -> None:
    check_store()


@worker_ready.connect
def _start_reconciler(**_: Any) -> None:
    _children.append(
        subprocess.Popen(
            [sys.executable, "-m", "core.lifecycle.reconciler", "--parent", str(os.getpid())],
            stdin=subprocess.DEVNULL,
        )
    )


@worker_shutdown.connect
def _stop_reconciler(**_: Any) -> None:
    for child in _children:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                child.kill()

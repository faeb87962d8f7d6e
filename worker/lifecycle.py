"""Worker start-up and shut-down hooks: the reconciler process and the memory setting.

At ``worker_ready`` the worker's main process starts ``python -m core.lifecycle.reconciler``
(TensorFlow-free, its own Redis connection, never forked from the TF parent's threads) and
stops it at ``worker_shutdown``; if the worker is killed outright the reconciler notices
that its parent is gone and exits by itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from celery.signals import worker_ready, worker_shutdown

_children: list[subprocess.Popen[bytes]] = []


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

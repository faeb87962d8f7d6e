"""Who holds a job's lease or runs a model's inspection, and whether that process is gone.

A holder is named ``host:pid:token`` (:func:`new_owner`), so a process on the same host (a
second delivery of the job, the reconciler) can see at once that the holder's process no
longer exists (:func:`holder_is_dead`) instead of waiting for its lease to expire.
"""

from __future__ import annotations

import os
import secrets
import socket

import psutil


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def holder_is_dead(holder: str) -> bool:
    """True when the lease holder ran on this host and its process no longer exists."""
    host, _, rest = holder.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True

"""Where a worker's libraries write: under ``PRUNEKIT_HOME``, never the user's home or /tmp.

Imported by the worker before TensorFlow and Keras (first in the Celery app's ``include``):

* ``KERAS_HOME`` (Keras writes ``keras.json`` there on import) and ``MPLCONFIGDIR``
  (matplotlib's cache) go under ``<home>/cache``, unless the operator set them;
* each pool child gets a private ``TMPDIR``, ``<home>/tmp/worker-<pid>``, emptied after every
  task and removed when the child exits. TensorFlow's autograph writes a
  ``__autograph_generated_file*.py`` per converted function into the temporary directory
  and relies on exit handlers to delete them, which Celery's children skip; without this
  they pile up in the machine's /tmp. A child that was killed leaves its directory behind:
  the next child started removes those of processes that no longer exist.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import psutil
from celery.signals import task_postrun, worker_process_init, worker_process_shutdown

from core import storage
from core.settings import get_settings


def set_cache_homes(home: Path) -> None:
    """KERAS_HOME and MPLCONFIGDIR under ``home``; call before importing Keras."""
    for var, sub in (("KERAS_HOME", "keras"), ("MPLCONFIGDIR", "matplotlib")):
        if not os.environ.get(var):
            path = home / "cache" / sub
            path.mkdir(parents=True, exist_ok=True)
            os.environ[var] = str(path)


def private_tmpdir() -> Path:
    return storage.worker_tmpdir(os.getpid())


def remove_dead_tmpdirs() -> list[str]:
    """Remove the private temporary directories of worker children that no longer exist."""
    removed = []
    tmp = get_settings().tmp_dir
    for d in tmp.iterdir() if tmp.is_dir() else ():
        pid = storage.worker_tmpdir_pid(d)
        if pid is not None and not psutil.pid_exists(pid):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d.name)
    return removed


def use_private_tmpdir() -> Path:
    """Point this process's temporary files (``TMPDIR``, :mod:`tempfile`) to its own dir."""
    path = private_tmpdir()
    path.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(path)
    tempfile.tempdir = str(path)
    return path


def empty_private_tmpdir() -> None:
    path = private_tmpdir()
    for entry in path.iterdir() if path.is_dir() else ():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


@worker_process_init.connect
def _child_started(**_: Any) -> None:
    remove_dead_tmpdirs()
    use_private_tmpdir()


@task_postrun.connect
def _task_done(**_: Any) -> None:
    empty_private_tmpdir()


@worker_process_shutdown.connect
def _child_exiting(**_: Any) -> None:
    shutil.rmtree(private_tmpdir(), ignore_errors=True)


set_cache_homes(get_settings().home)

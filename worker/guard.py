"""What watches over one running job inside its worker child: a lease and a memory limit.

The **lease** (``<prefix>:job:<id>:lease``, a Redis key with a TTL, renewed every third of
it by a daemon thread) says "a live process is running this job". A second delivery of the
same job waits for the lease instead of running the job twice; when the process dies
(SIGKILL, OOM, machine lost) the lease expires, and the next delivery, or the reconciler,
takes the job over. The holder is ``host:pid:token``, so a delivery on the same host can
see at once that the holder's process is gone.

The **memory limit** (``PRUNEKIT_WORKER_MAX_MEMORY_MB``) is a resident-set watchdog in the
same thread: past the limit it fails the job (``memory_limit``) and ends the child, so a
huge or hostile model cannot take the machine down or poison later jobs. ``RLIMIT_AS`` is
not used: TensorFlow reserves far more virtual address space than it touches (a CPU
worker measured 1.76 GB virtual for 0.55 GB resident after its first op; CUDA maps tens of
GB), so an address-space limit breaks TF long before memory is really short.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable

import psutil

from app.jobs import store as jobs

log = logging.getLogger("prunekit.worker")


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


def take_lease(job_id: str, owner: str, ttl_s: float, wait_s: float) -> bool:
    """Acquire the job's lease, waiting up to ``wait_s`` for a dead holder's to expire.
    False when a live holder keeps it or the job finished meanwhile."""
    deadline = time.monotonic() + wait_s
    while True:
        if jobs.acquire_lease(job_id, owner, ttl_s):
            return True
        holder = jobs.lease_holder(job_id)
        if holder is not None and holder_is_dead(holder):
            log.warning("job %s: lease holder %s is dead; taking the job over", job_id, holder)
            jobs.release_lease(job_id, holder)
            continue
        if (jobs.status(job_id) or "succeeded") in jobs.FINISHED:
            return False
        if time.monotonic() > deadline:
            return False
        time.sleep(min(0.5, ttl_s / 4))


class JobGuard:
    """Renews the lease and watches memory while a job runs (a daemon thread)."""

    def __init__(
        self,
        job_id: str,
        owner: str,
        ttl_s: float,
        max_memory_mb: int,
        on_memory_exceeded: Callable[[int], None],
    ) -> None:
        self.job_id = job_id
        self.owner = owner
        self.ttl_s = ttl_s
        self.max_memory_mb = max_memory_mb
        self.on_memory_exceeded = on_memory_exceeded
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"guard-{job_id}", daemon=True)
        self.peak_rss_mb = 0

    def __enter__(self) -> JobGuard:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        jobs.release_lease(self.job_id, self.owner)

    def _run(self) -> None:
        proc = psutil.Process()
        renew_every = self.ttl_s / 3
        next_renew = time.monotonic() + renew_every
        while True:  # check at once, then every 0.25 s: short work is guarded too
            rss_mb = proc.memory_info().rss >> 20
            self.peak_rss_mb = max(self.peak_rss_mb, rss_mb)
            if self.max_memory_mb and rss_mb > self.max_memory_mb:
                self.on_memory_exceeded(rss_mb)
                return
            if self._stop.wait(0.25):
                return
            if time.monotonic() >= next_renew:
                next_renew = time.monotonic() + renew_every
                try:
                    if not jobs.renew_lease(self.job_id, self.owner, self.ttl_s):
                        log.error("job %s: lost its lease (taken over?)", self.job_id)
                except Exception:
                    log.exception("job %s: could not renew its lease", self.job_id)


class MemoryGuard:
    """The memory half of :class:`JobGuard`, for work without a lease (model inspection)."""

    def __init__(self, max_memory_mb: int, on_memory_exceeded: Callable[[int], None]) -> None:
        self.max_memory_mb = max_memory_mb
        self.on_memory_exceeded = on_memory_exceeded
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-guard", daemon=True)

    def __enter__(self) -> MemoryGuard:
        if self.max_memory_mb:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        proc = psutil.Process()
        while True:  # check at once, then every 0.25 s: short work is guarded too
            rss_mb = proc.memory_info().rss >> 20
            if rss_mb > self.max_memory_mb:
                self.on_memory_exceeded(rss_mb)
                return
            if self._stop.wait(0.25):
                return

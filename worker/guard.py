"""What watches over one running job: its lease (with a fencing token) and a memory limit.

The **lease** (``<prefix>:job:<id>:lease``, a Redis key with a TTL, renewed every third of
it) says "a live process is running this job". A second delivery of the same job waits for
the lease instead of running the job twice; when the process dies (SIGKILL, OOM, machine
lost) the lease expires, and the next delivery, or the reconciler, takes the job over. The
holder is ``host:pid:token``, so a delivery on the same host can see at once that the
holder's process is gone. Each acquisition gets a new **fencing token**
(:class:`core.jobs.store.Fence`); every write the job makes carries it, so a worker that lost
its lease writes nothing.

Renewal and the **memory limit** (``PRUNEKIT_WORKER_MAX_MEMORY_MB``) run in a separate
process, the warden (:mod:`worker.warden`), not in a thread of the child: a C call that holds
the child's GIL cannot starve them. Past the limit the warden fails the job
(``memory_limit``) and ends the child, so a huge or hostile model cannot take the machine
down or poison later jobs. ``RLIMIT_AS`` is not used: TensorFlow reserves far more virtual
address space than it touches (a CPU worker measured 1.76 GB virtual for 0.55 GB resident
after its first op; CUDA maps tens of GB), so an address-space limit breaks TF long before
memory is really short.
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from core.holders import holder_is_dead
from core.jobs import store as jobs

log = logging.getLogger("prunekit.worker")

READY_TIMEOUT_S = 30.0
PROJECT_ROOT = Path(__file__).resolve().parents[1]  # where ``-m worker.warden`` is found


def take_lease(job_id: str, owner: str, ttl_s: float, wait_s: float) -> jobs.Fence | None:
    """Acquire the job's lease, waiting up to ``wait_s`` for a dead holder's to expire.
    None when a live holder keeps it or the job finished (or was deleted) meanwhile."""
    deadline = time.monotonic() + wait_s
    while True:
        fence = jobs.acquire_lease(job_id, owner, ttl_s)
        if fence is not None:
            return fence
        holder = jobs.lease_holder(job_id)
        if holder is not None and holder_is_dead(holder):
            log.warning("job %s: lease holder %s is dead; taking the job over", job_id, holder)
            jobs.release_lease(job_id, holder)
            continue
        if (jobs.status(job_id) or "succeeded") in jobs.FINISHED:
            return None
        if time.monotonic() > deadline:
            return None
        time.sleep(min(0.5, ttl_s / 4))


class Warden:
    """Runs :mod:`worker.warden` over process ``pid`` (this one by default) for a ``with``
    block: lease renewal for ``fence``, a memory limit, or both."""

    def __init__(
        self,
        max_memory_mb: int,
        fence: jobs.Fence | None = None,
        ttl_s: float = 30.0,
        model_id: str | None = None,
        pid: int | None = None,
    ) -> None:
        self.args = ["--pid", str(pid or os.getpid()), "--max-memory-mb", str(max_memory_mb)]
        if fence is not None:
            self.args += ["--job", fence.job_id, "--owner", fence.owner,
                          "--token", str(fence.token), "--ttl", str(ttl_s)]  # fmt: skip
        if model_id is not None:
            self.args += ["--model", model_id]
        self.fence, self.ttl_s = fence, ttl_s
        self.needed = fence is not None or max_memory_mb > 0
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> Warden:
        if not self.needed:
            return self
        if self.fence is not None:  # a full TTL for the warden to start in
            jobs.renew_lease(self.fence.job_id, self.fence.owner, self.ttl_s, self.fence.token)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker.warden", *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (
                str(PROJECT_ROOT), os.environ.get("PYTHONPATH")
            )))},
        )  # fmt: skip
        assert self.process.stdout is not None
        # its first check has run once it says so (or it has ended this process already)
        ready, _, _ = select.select([self.process.stdout], [], [], READY_TIMEOUT_S)
        if not ready or self.process.stdout.readline().strip() != "ready":
            log.error("the warden did not start within %s s (exit status %s)",
                      READY_TIMEOUT_S, self.process.poll())  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


class JobGuard(Warden):
    """The warden of a job holding ``fence``; the lease is released on exit."""

    def __init__(self, fence: jobs.Fence, ttl_s: float, max_memory_mb: int) -> None:
        super().__init__(max_memory_mb, fence=fence, ttl_s=ttl_s)
        self.job_fence = fence

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        jobs.release_lease(self.job_fence.job_id, self.job_fence.owner)

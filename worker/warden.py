"""A job's warden: a small TensorFlow-free process that watches one worker child from outside.

``python -m worker.warden --pid P ...`` runs next to the pool child that runs a job (or
inspects a model). Being another process, it does not share the child's GIL: a C call that
holds the GIL for minutes (a regex, a huge numpy op, a TF kernel) cannot starve it. It

* renews the job's lease every third of its TTL, so a second delivery or the reconciler
  never takes a job over while its worker is alive and busy (a lease that merely expired,
  say while this process started, is taken back if its fencing token has not moved);
* ends the child (SIGKILL) when the lease is definitely no longer its own (taken over, or
  the job deleted): the child's writes are fenced anyway, this stops it wasting the machine;
* watches the child's resident memory; past the limit it records the failure
  (``memory_limit``, fenced with the job's lease) and ends the child.

It exits when the child is gone (or on SIGTERM, which the child sends when it is done).
It prints ``ready`` once its first check has run.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time

import psutil

from core.jobs import store as jobs
from core.models import store as models
from core.records import ErrorRecord, now_iso

log = logging.getLogger("prunekit.warden")

CHECK_EVERY_S = 0.25
MEMORY_LIMIT_SETTING = "PRUNEKIT_WORKER_MAX_MEMORY_MB"


def job_memory_message(rss_mb: int, limit_mb: int) -> str:
    return (
        f"the worker used {rss_mb} MiB, more than {MEMORY_LIMIT_SETTING}={limit_mb}; "
        "the job was stopped (a smaller model, or a worker with more memory, is needed)"
    )


def inspection_memory_message(rss_mb: int, limit_mb: int) -> str:
    return (
        f"loading the model took {rss_mb} MiB, more than {MEMORY_LIMIT_SETTING}="
        f"{limit_mb}; a worker with more memory is needed"
    )


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill(proc: psutil.Process) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.send_signal(signal.SIGKILL)


def _record_memory_failure(args: argparse.Namespace, rss_mb: int) -> None:
    limit = args.max_memory_mb
    if args.job:
        message = job_memory_message(rss_mb, limit)
        jobs.transition(
            args.job,
            "failed",
            {"running", "queued", "cancelling"},
            message=f"failed: {message}",
            fence=jobs.Fence(args.job, args.owner, args.token),
            error={"reason": "memory_limit", "message": message},
            finished_at=now_iso(),
        )
    if args.model:
        error: ErrorRecord = {
            "reason": "memory_limit",
            "message": inspection_memory_message(rss_mb, limit),
        }
        models.set_inspection(args.model, {"status": "failed", "error": error})


def watch(args: argparse.Namespace) -> str:
    """Watch until the child is gone; returns why the watch ended."""
    proc = psutil.Process(args.pid)
    renew_every = args.ttl / 3
    next_renew = time.monotonic()  # at once: this process took a moment to start
    ready = False
    while _alive(proc):
        try:
            rss_mb = proc.memory_info().rss >> 20
        except psutil.NoSuchProcess:
            break
        if args.max_memory_mb and rss_mb > args.max_memory_mb:
            log.error("pid %d: %d MiB resident > %d MiB; ending it", args.pid, rss_mb,
                      args.max_memory_mb)  # fmt: skip
            _record_memory_failure(args, rss_mb)
            _kill(proc)
            return "memory_limit"
        if args.job and time.monotonic() >= next_renew:
            next_renew = time.monotonic() + renew_every
            try:
                renewed = jobs.renew_lease(args.job, args.owner, args.ttl, args.token)
            except Exception:  # Redis away for a moment: try again; the TTL has slack
                log.exception("job %s: could not renew its lease", args.job)
            else:
                if not renewed:
                    log.error("job %s: lease lost (taken over); ending pid %d", args.job, args.pid)
                    _kill(proc)
                    return "lease_lost"
        if not ready:  # the first check and renewal are done
            print("ready", flush=True)
            ready = True
        time.sleep(CHECK_EVERY_S)
    return "child_gone"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="watch one prunekit worker child")
    parser.add_argument("--pid", type=int, required=True, help="the process to watch")
    parser.add_argument("--max-memory-mb", type=int, default=0, help="0: no limit")
    parser.add_argument("--job", help="the job whose lease to renew")
    parser.add_argument("--owner", help="the lease's owner")
    parser.add_argument("--token", type=int, default=0, help="the lease's fencing token")
    parser.add_argument("--ttl", type=float, default=30.0, help="the lease's TTL in seconds")
    parser.add_argument("--model", help="the model being inspected")
    args = parser.parse_args(argv)
    if args.job and not args.owner:
        parser.error("--job needs --owner")
    return args


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s %(name)s[{os.getpid()}] %(message)s",
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    watch(parse_args(argv))


if __name__ == "__main__":
    main()

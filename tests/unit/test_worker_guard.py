"""The job's lease, its fencing token and its warden process, against the test Redis (no
HTTP, no Celery): renewal survives a GIL held for seconds, a late writer is fenced, a deleted
job stays deleted, the memory limit ends the watched process."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core import storage
from core.holders import holder_is_dead, new_owner
from core.jobs import store as jobs
from core.records import new_id, now_iso
from worker.guard import JobGuard, Warden, take_lease
from worker.reporter import JobReporter


def _job(status: str = "running") -> str:
    record = {
        "id": new_id(), "tenant": "guard", "model_id": "nope", "dataset_id": None,
        "status": status, "progress": {"phase": status, "fraction": 0.0}, "spec": {},
        "metrics": None, "error": None, "attempts": 0, "created_at": now_iso(),
        "started_at": None, "finished_at": None, "updated_at": now_iso(),
    }  # fmt: skip
    jobs.create(record)
    return str(record["id"])


def _hold_gil_for(at_least_s: float) -> float:
    """One C call that keeps the GIL: Python's backtracking ``re`` on ``(a+)+$``."""
    catastrophic = re.compile(r"(a+)+$")
    n = 16
    while True:
        start = time.monotonic()
        catastrophic.search("a" * n + "!")
        took = time.monotonic() - start
        if took >= at_least_s:
            return took
        n += 1 if took > at_least_s / 4 else 2


@pytest.mark.redis
def test_lease_survives_a_held_gil_and_is_released_on_exit() -> None:
    job_id = _job()
    fence = jobs.acquire_lease(job_id, new_owner(), ttl_s=1)
    assert fence is not None and fence.token == 1
    with JobGuard(fence, ttl_s=1, max_memory_mb=0):
        held = _hold_gil_for(2.5)  # > 2 TTLs: a renewing thread here would have starved
        assert jobs.lease_holder(job_id) == fence.owner, f"lease lost after {held:.1f} s"
        assert jobs.fence_holds(fence)
    assert jobs.lease_holder(job_id) is None  # released on exit
    owner = fence.owner
    assert not holder_is_dead(owner) and holder_is_dead(f"{owner.split(':')[0]}:999999999:x")


@pytest.mark.redis
def test_each_acquisition_gets_a_new_token_and_fences_the_old_one() -> None:
    job_id = _job()
    first = jobs.acquire_lease(job_id, "host:1:a", ttl_s=30)
    assert first is not None
    assert jobs.acquire_lease(job_id, "host:2:b", ttl_s=30) is None  # held
    assert jobs.update(job_id, fence=first, progress={"phase": "x", "fraction": 0.1})
    assert jobs.add_event(job_id, "message", "from the first", fence=first)
    jobs.release_lease(job_id, first.owner)  # lost: expired, say
    second = jobs.acquire_lease(job_id, "host:2:b", ttl_s=30)
    assert second is not None and second.token == first.token + 1
    events_before = len(jobs.events(job_id))
    # the first owner, still running somewhere, is fenced: every write is refused
    assert not jobs.fence_holds(first)
    assert not jobs.update(job_id, fence=first, progress={"phase": "late", "fraction": 1.0})
    assert not jobs.add_event(job_id, "message", "late", fence=first)
    assert not jobs.transition(job_id, "succeeded", {"running"}, fence=first)
    assert jobs.get(job_id)["status"] == "running"  # type: ignore[index]
    assert jobs.get(job_id)["progress"]["phase"] == "x"  # type: ignore[index]
    assert len(jobs.events(job_id)) == events_before
    reporter = JobReporter(job_id, first)
    with pytest.raises(jobs.LeaseLostError):
        reporter.phase("pruning", 0.5)
    # a token bumped under the same holder fences too (what a takeover looks like mid-write)
    assert jobs.transition(job_id, "succeeded", {"running"}, fence=second)


@pytest.mark.redis
def test_a_delivery_waiting_for_the_lease_of_a_job_that_then_finishes_takes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by the chaos drill: a second delivery (the reconciler re-sent the job while the
    first re-sent message sat reserved) waited for the lease, got it once the job had
    succeeded, and counted one more attempt on the finished job (attempts 4 of 3 on a
    succeeded job; such phantom attempts can push a job past PRUNEKIT_MAX_ATTEMPTS)."""
    job_id = _job()
    running = jobs.acquire_lease(job_id, new_owner(), ttl_s=30)  # a live holder: this process
    assert running is not None
    refused = threading.Event()
    acquire = jobs.acquire_lease

    def watched(job: str, owner: str, ttl_s: float) -> jobs.Fence | None:
        fence = acquire(job, owner, ttl_s)
        if owner == "host:2:b" and fence is None:
            refused.set()
        return fence

    monkeypatch.setattr(jobs, "acquire_lease", watched)
    got: list[jobs.Fence | None] = []
    waiter = threading.Thread(
        target=lambda: got.append(take_lease(job_id, "host:2:b", ttl_s=30, wait_s=10))
    )
    waiter.start()
    assert refused.wait(10)  # the duplicate delivery was refused once: it now waits for the lease
    assert jobs.transition(job_id, "succeeded", {"running"}, fence=running)
    jobs.release_lease(job_id, running.owner)
    waiter.join(15)
    assert got == [None]
    record = jobs.get(job_id)
    assert record is not None and record["status"] == "succeeded"
    assert record["lease_token"] == running.token and jobs.lease_holder(job_id) is None
    for finished in ("failed", "cancelled"):
        assert jobs.acquire_lease(_job(finished), "host:3:c", ttl_s=30) is None


@pytest.mark.redis
def test_a_deleted_job_stays_deleted(tmp_path: Path) -> None:
    job_id = _job()
    fence = jobs.acquire_lease(job_id, "host:1:a", ttl_s=30)
    assert fence is not None
    jobs.transition(job_id, "failed", {"running"}, fence=fence)
    jobs.delete(jobs.get(job_id))  # type: ignore[arg-type]
    from core.redis import get_redis, key

    r = get_redis()
    # what a late worker of this job would still try
    assert not jobs.add_event(job_id, "message", "late")
    assert not jobs.update(job_id, progress={"phase": "late", "fraction": 1.0})
    assert not jobs.transition(job_id, "running", {"queued", "running"})
    assert jobs.incr_attempts(job_id) == 0
    assert jobs.acquire_lease(job_id, "host:2:b", ttl_s=30) is None
    assert not jobs.fence_holds(fence)
    assert not r.exists(key("job", job_id), key("job", job_id, "events"))
    # and its outputs: published, then withdrawn when the success cannot be recorded
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.keras").write_bytes(b"late bytes")
    published = storage.publish_attempt(out, job_id, fence.token)
    assert published == storage.attempt_dir(job_id, fence.token) and not out.exists()
    storage.unpublish_attempt(job_id, fence.token)
    assert not storage.job_dir(job_id).exists()


def test_attempts_publish_side_by_side_and_the_winner_cleans_up(tmp_path: Path) -> None:
    job_id = new_id()
    for token, payload in ((1, b"first"), (2, b"second")):
        out = tmp_path / f"out{token}"
        out.mkdir()
        (out / "model.keras").write_bytes(payload)
        storage.publish_attempt(out, job_id, token)
    # attempt 1 never replaced attempt 2's bytes, nor the other way round
    assert (storage.attempt_dir(job_id, 1) / "model.keras").read_bytes() == b"first"
    assert (storage.attempt_dir(job_id, 2) / "model.keras").read_bytes() == b"second"
    storage.remove_other_attempts(job_id, 2)
    assert [p.name for p in storage.job_dir(job_id).iterdir()] == ["attempt-2"]


def _victim(megabytes: int) -> subprocess.Popen[bytes]:
    code = (
        f"import sys, time; b = bytearray({megabytes} << 20); b[::4096] = b'x' * len(b[::4096]);"
        "print('ok', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ok"
    return proc


@pytest.mark.redis
def test_warden_fails_the_job_and_ends_the_process_past_the_memory_limit() -> None:
    job_id = _job()
    victim = _victim(120)
    fence = jobs.acquire_lease(job_id, f"host:{victim.pid}:v", ttl_s=30)
    assert fence is not None
    with Warden(60, fence=fence, ttl_s=30, pid=victim.pid):
        assert victim.wait(10) == -9  # SIGKILL from the warden
    job = jobs.get(job_id)
    assert job is not None and job["status"] == "failed"
    assert job["error"]["reason"] == "memory_limit"
    assert "PRUNEKIT_WORKER_MAX_MEMORY_MB=60" in job["error"]["message"]


@pytest.mark.redis
def test_warden_records_a_failed_inspection_past_the_memory_limit() -> None:
    from core.models import store as models

    model_id = new_id()
    models.create({"id": model_id, "tenant": "guard", "created_at": now_iso(),
                   "inspection": {"status": "pending"}})  # fmt: skip
    victim = _victim(120)
    with Warden(60, model_id=model_id, pid=victim.pid):
        assert victim.wait(10) == -9
    inspection = models.get(model_id)["inspection"]  # type: ignore[index]
    assert inspection["status"] == "failed" and inspection["error"]["reason"] == "memory_limit"
    with Warden(0) as off:  # no limit and no lease: no process at all
        assert off.process is None


@pytest.mark.redis
def test_inspection_attempts_are_counted_and_the_outcome_recorded_once() -> None:
    from core.models import store as models
    from core.redis import get_redis, key

    model_id = new_id()
    models.create({"id": model_id, "tenant": "guard", "created_at": now_iso(),
                   "inspection": {"status": "pending"}})  # fmt: skip
    assert models.start_inspection(model_id, "host:1") == 1
    assert models.start_inspection(model_id, "host:2") == 2
    assert models.set_inspection(model_id, {"status": "failed", "error": {"reason": "x"}})
    assert not models.set_inspection(model_id, {"status": "succeeded", "details": {}})
    assert models.start_inspection(model_id, "host:3") == 0  # finished: not started again
    inspection = models.get(model_id)["inspection"]  # type: ignore[index]
    assert inspection["status"] == "failed" and inspection["attempts"] == 2
    models.delete(models.get(model_id))  # type: ignore[arg-type]
    assert not models.set_inspection(model_id, {"status": "succeeded", "details": {}})
    assert models.start_inspection(model_id, "host:4") == 0
    assert not get_redis().exists(key("model", model_id))  # a late inspector recreates nothing

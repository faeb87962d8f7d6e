"""Late writers on a private stack (own redis-server, API, two workers, a 2 s lease).

A "late writer" is a worker child that is still running a job after its lease is gone: here
it is frozen with SIGSTOP (as a long GC or VM pause would), its lease expires, the job moves
on without it, and then it is thawed. Its writes are fenced: it neither replaces the
published model nor brings back a deleted job.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.e2e.test_crash_recovery import PREFIX, Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("late"))
    try:
        s.start_worker()
        s.start_worker()
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def big_model(stack: Stack, big_model_zip: Path) -> str:
    """A model whose pruning job takes seconds: time to freeze its worker mid-job."""
    return str(stack.svc.upload(big_model_zip)["id"])


def _freeze_runner(stack: Stack, job_id: str) -> list[psutil.Process]:
    """Once ``job_id`` is under way (its first phase reported), SIGSTOP the pool child
    running it and its warden; returns them."""
    deadline = time.monotonic() + 60
    while not any(
        e["type"] == "phase"
        for e in stack.svc.client.get(f"/v1/jobs/{job_id}/events").json()["items"]
    ):
        assert time.monotonic() < deadline, stack.job(job_id)
        time.sleep(0.05)
    holder = stack.r.get(f"{PREFIX}:job:{job_id}:lease")
    assert holder, "a running job holds its lease"
    child = psutil.Process(int(holder.split(":")[1]))
    frozen = [child, *child.children()]  # the warden is the child's only child
    for proc in frozen:
        proc.send_signal(signal.SIGSTOP)
    return frozen


def _thaw(frozen: list[psutil.Process]) -> None:
    """SIGCONT each process in turn, the job's child first. The child gets a second to try
    its writes before its warden (which would end it) runs again: that head start is part of
    the scenario, so it is a fixed pause, and only between two live processes."""
    thawed = False
    for proc in frozen:
        with contextlib.suppress(psutil.NoSuchProcess):
            if thawed:
                time.sleep(1)
            proc.send_signal(signal.SIGCONT)
            thawed = True


def _reconciler_passes(stack: Stack, passes: int, timeout: float = 30) -> None:
    """Wait until ``passes`` reconciler passes have run from start to end: each pass takes
    the reconciler lock anew, so ``passes + 1`` fresh takes of the lock are awaited."""
    lock = f"{PREFIX}:reconciler:lock"
    deadline = time.monotonic() + timeout
    taken, last = 0, stack.r.pttl(lock)
    while taken < passes + 1:
        assert time.monotonic() < deadline, f"{taken} reconciler pass(es) in {timeout} s"
        time.sleep(0.02)
        ttl = stack.r.pttl(lock)
        if ttl > last:  # set again: the time left only ever falls otherwise
            taken += 1
        last = ttl


def _wait_gone(procs: list[psutil.Process], timeout: float = 60) -> None:
    _, alive = psutil.wait_procs(procs[:1], timeout=timeout)
    assert not alive, f"the late writer did not stop: {alive}"


def _worker_logs(stack: Stack) -> str:
    return "".join(p.read_text() for p in sorted(stack.logs.glob("w*.log")))


def test_late_writer_is_fenced_and_etag_matches_bytes(stack: Stack, big_model: str) -> None:
    job_id = stack.submit(big_model)
    stack.wait_running(job_id, attempt=1)
    child, *warden = _freeze_runner(stack, job_id)
    try:
        done = stack.svc.wait_job(job_id, timeout=120)  # the other worker takes it over
        assert done["status"] == "succeeded" and done["attempts"] == 2, done
        _thaw([child])  # its warden stays frozen: the child's own writes are what is tested
        _wait_gone([child])  # it found its lease gone at its next write, and stopped
    finally:
        _thaw([child, *warden])
    assert f"job {job_id}: lease lost; this attempt stops" in _worker_logs(stack)

    after = stack.job(job_id)
    assert after["status"] == "succeeded" and after["updated_at"] == done["updated_at"]
    events = stack.svc.client.get(f"/v1/jobs/{job_id}/events").json()["items"]
    assert events[-1]["data"].get("status") == "succeeded", events[-3:]  # nothing after it
    resp = stack.svc.client.get(f"/v1/jobs/{job_id}/model")
    assert resp.status_code == 200
    digest = hashlib.sha256(resp.content).hexdigest()
    assert resp.headers["ETag"] == f'"{digest}"'
    # one directory per attempt: only the winner's is left
    job_dir = stack.tmp / "home" / "artifacts" / "jobs" / job_id
    assert [p.name for p in job_dir.iterdir()] == ["attempt-2"]


def test_a_deleted_job_stays_deleted(stack: Stack, big_model: str) -> None:
    job_id = stack.submit(big_model)
    stack.wait_running(job_id, attempt=1)
    frozen = _freeze_runner(stack, job_id)
    try:
        assert stack.svc.client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
        deadline = time.monotonic() + 30  # the reconciler: cancelling, and no lease
        while stack.job(job_id)["status"] != "cancelled":
            assert time.monotonic() < deadline, stack.job(job_id)
            time.sleep(0.2)
        assert stack.svc.client.delete(f"/v1/jobs/{job_id}").status_code == 204
    finally:
        _thaw(frozen)
    _wait_gone(frozen)  # its warden found the lease gone and ended it
    _reconciler_passes(stack, 2)  # nothing brings the job back, in two whole passes
    assert stack.svc.client.get(f"/v1/jobs/{job_id}").status_code == 404
    assert not stack.r.exists(f"{PREFIX}:job:{job_id}", f"{PREFIX}:job:{job_id}:events")
    assert not (stack.tmp / "home" / "artifacts" / "jobs" / job_id).exists()
    assert os.path.isdir(stack.tmp / "home" / "artifacts" / "models" / big_model)

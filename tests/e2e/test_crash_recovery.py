"""Failure drills on a private stack (own redis-server, API and workers, small limits).

Run in order, on one Redis: Redis killed and restarted (no accepted job lost), the whole
worker SIGKILLed mid-job (the job is taken over and succeeds), the pool child SIGKILLed
until ``PRUNEKIT_MAX_ATTEMPTS`` (the job fails with the reason), a soft time limit, a
memory limit.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from core.embedded_redis import EmbeddedRedis, free_port, start_embedded
from tests.e2e.conftest import REPO, Service, spawn_api, spawn_worker, stop, wait_ready
from tests.polling import wait_until

pytestmark = pytest.mark.e2e

PREFIX = QUEUE = "crashdrill"


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.redis: EmbeddedRedis = start_embedded(tmp / "redis")
        self.env = {
            "PRUNEKIT_REDIS_URL": self.redis.url,
            "PRUNEKIT_HOME": str(tmp / "home"),
            "PRUNEKIT_KEY_PREFIX": PREFIX,
            "PRUNEKIT_QUEUE": QUEUE,
            "PRUNEKIT_LEASE_TTL": "2",
            "PRUNEKIT_RECONCILE_INTERVAL": "1",
            "PRUNEKIT_MAX_ATTEMPTS": "2",
        }
        out = subprocess.run(
            [sys.executable, "-m", "app.auth.cli", "create", "--tenant", "drill", "--json"],
            cwd=REPO, env={**os.environ, **self.env}, capture_output=True, text=True, check=True,
        )  # fmt: skip
        port = free_port()
        self.api = spawn_api(self.logs, port, self.env)
        self.svc = Service(f"http://127.0.0.1:{port}", self.logs, json.loads(out.stdout)["key"])
        self.workers: list[subprocess.Popen[bytes]] = []
        self.inspected: list[str] = []  # models a worker inspected successfully
        wait_ready(self.svc, [self.api], path="/healthz")

    @property
    def r(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url, decode_responses=True)

    def start_worker(self, **env: str) -> subprocess.Popen[bytes]:
        w = spawn_worker(
            self.logs, {**self.env, **env}, concurrency=1, name=f"w{len(self.workers)}"
        )
        self.workers.append(w)
        wait_ready(self.svc, [self.api, w])
        return w

    def kill_workers(self) -> None:
        """Idle workers need no graceful stop: SIGKILL their process groups (fast)."""
        for w in self.workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGKILL)
                w.wait(10)

    def job(self, job_id: str) -> dict[str, Any]:
        return self.svc.client.get(f"/v1/jobs/{job_id}").json()

    def submit(self, model_id: str) -> str:
        resp = self.svc.client.post(
            "/v1/jobs",
            json={"model_id": model_id, "strategy": {"name": "magnitude", "sparsity": 0.5}},
        )
        assert resp.status_code == 202, resp.text
        return str(resp.json()["id"])

    def wait_running(self, job_id: str, attempt: int, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] == "running" and job["attempts"] == attempt:
                return job
            assert job["status"] in ("queued", "running"), job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} never ran attempt {attempt}: {self.job(job_id)}")

    def close(self) -> None:
        stop(self.api, *self.workers)
        self.redis.stop()


def _aof_bytes(stack: Stack) -> bytes:
    return b"".join(p.read_bytes() for p in (stack.tmp / "redis").rglob("*.aof*") if p.is_file())


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (a zombie no longer runs)."""
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
    return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("crash"))
    try:
        yield s
    finally:
        s.close()


def test_redis_restart_loses_no_accepted_job(stack: Stack, model_files: dict[str, Path]) -> None:
    model = stack.svc.upload(model_files["keras"])  # no worker yet: everything stays queued
    jobs = [stack.submit(model["id"]) for _ in range(3)]
    queue_key = f"{PREFIX}:celery:{QUEUE}"
    assert stack.r.llen(queue_key) == 4  # the inspection and three jobs
    # appendfsync everysec: Redis writes its append-only file within about a second; a
    # SIGKILL keeps whatever reached the file, so wait until every accepted job is in it
    wait_until(lambda: all(j.encode() in _aof_bytes(stack) for j in jobs), 10, interval=0.1,
               what="the accepted jobs in the append-only file")  # fmt: skip

    port = stack.redis.port
    stack.redis.process.send_signal(signal.SIGKILL)  # no shutdown, no save
    stack.redis.process.wait(10)
    stack.redis = start_embedded(stack.tmp / "redis", port=port)
    assert [stack.job(j)["status"] for j in jobs] == ["queued"] * 3  # records survived (AOF)
    # and now lose the messages too (a failover to a lagging replica, an older snapshot...)
    assert stack.r.delete(queue_key) == 1

    stack.start_worker()  # its reconciler finds queued jobs without a message and re-sends
    for job_id in jobs:
        done = stack.svc.wait_job(job_id, timeout=90)
        assert done["status"] == "succeeded" and done["attempts"] == 1, done
        messages = [
            e["message"] for e in stack.svc.client.get(f"/v1/jobs/{job_id}/events").json()["items"]
        ]
        assert "its queue message was lost; queued again" in messages
    assert stack.svc.wait_inspection(model["id"])["inspection"]["status"] == "succeeded"
    stack.inspected.append(model["id"])


def test_sigkill_whole_worker_mid_job(stack: Stack, big_model_zip: Path) -> None:
    model = stack.svc.upload(big_model_zip)
    job_id = stack.submit(model["id"])
    stack.wait_running(job_id, attempt=1)
    worker = stack.workers[-1]
    os.killpg(worker.pid, signal.SIGKILL)  # the main process, its pool child, its reconciler
    worker.wait(10)
    wait_until(lambda: not _group_alive(worker.pid), 10, what="the worker's processes gone")
    assert stack.job(job_id)["status"] == "running"  # nobody left to say otherwise

    stack.start_worker()
    done = stack.svc.wait_job(job_id, timeout=120)
    assert done["status"] == "succeeded" and done["attempts"] == 2, done
    messages = [
        e["message"] for e in stack.svc.client.get(f"/v1/jobs/{job_id}/events").json()["items"]
    ]
    assert "its worker was lost; queued again" in messages and "running (attempt 2)" in messages
    assert stack.svc.client.get(f"/v1/jobs/{job_id}/model").status_code == 200
    stack.inspected.insert(0, model["id"])  # the big model: a job on it takes seconds


def test_pool_child_killed_until_max_attempts(stack: Stack, big_model_zip: Path) -> None:
    model = stack.svc.upload(big_model_zip)
    job_id = stack.submit(model["id"])
    for attempt in (1, 2):  # PRUNEKIT_MAX_ATTEMPTS=2
        stack.wait_running(job_id, attempt)
        holder = stack.r.get(f"{PREFIX}:job:{job_id}:lease")
        assert holder, "a running job holds its lease"
        os.kill(int(holder.split(":")[1]), signal.SIGKILL)  # the pool child running the job
    done = stack.svc.wait_job(job_id, timeout=60)
    assert done["status"] == "failed" and done["attempts"] == 3, done
    assert done["error"]["reason"] == "too_many_attempts"
    assert "PRUNEKIT_MAX_ATTEMPTS=2" in done["error"]["message"]
    assert stack.workers[-1].poll() is None  # the worker itself survived and still serves
    assert stack.svc.client.get("/readyz").status_code == 200


def test_soft_time_limit_fails_with_timeout(stack: Stack) -> None:
    stack.kill_workers()
    # the hard limit leaves the soft limit's handling ample time even under load (at 4 s a
    # loaded machine could hard-kill the child mid-handling: a lost worker, a second attempt)
    stack.start_worker(PRUNEKIT_TASK_SOFT_TIME_LIMIT="1", PRUNEKIT_TASK_TIME_LIMIT="30")
    job_id = stack.submit(stack.inspected[0])
    done = stack.svc.wait_job(job_id, timeout=60)
    assert done["status"] == "failed", done
    assert done["error"]["reason"] == "timeout" and "time limit" in done["error"]["message"]
    assert done["attempts"] == 1


def test_memory_limit_fails_job_and_inspection(stack: Stack, model_files: dict[str, Path]) -> None:
    stack.kill_workers()
    # a forked child starts with the parent's TensorFlow pages (~0.5 GiB): 200 MiB is too little
    worker = stack.start_worker(PRUNEKIT_WORKER_MAX_MEMORY_MB="200")
    job_id = stack.submit(stack.inspected[0])
    done = stack.svc.wait_job(job_id, timeout=60)
    assert done["status"] == "failed" and done["error"]["reason"] == "memory_limit", done
    assert "PRUNEKIT_WORKER_MAX_MEMORY_MB=200" in done["error"]["message"]
    model = stack.svc.upload(model_files["keras"])
    inspection = stack.svc.wait_inspection(model["id"])["inspection"]
    assert inspection["status"] == "failed" and inspection["error"]["reason"] == "memory_limit"
    assert worker.poll() is None  # only the child was ended; the worker serves on
    assert stack.svc.client.get("/readyz").status_code == 200


def test_inspection_killer_fails_after_max_attempts(stack: Stack, big_model_zip: Path) -> None:
    """A model whose inspection takes its worker child down (here: SIGKILL, as the OOM killer
    would) is inspected PRUNEKIT_MAX_ATTEMPTS times, then fails with the reason."""
    stack.kill_workers()
    worker = stack.start_worker()
    model = stack.svc.upload(big_model_zip)
    for attempt in (1, 2):  # PRUNEKIT_MAX_ATTEMPTS=2
        deadline = time.monotonic() + 60
        while True:
            inspection = json.loads(stack.r.hget(f"{PREFIX}:model:{model['id']}", "inspection"))
            assert inspection["status"] == "pending", inspection
            if inspection.get("attempts") == attempt:
                break
            assert time.monotonic() < deadline, inspection
            time.sleep(0.02)
        os.kill(int(inspection["inspector"].split(":")[1]), signal.SIGKILL)
    inspection = stack.svc.wait_inspection(model["id"])["inspection"]
    assert inspection["status"] == "failed" and inspection["attempts"] == 3, inspection
    assert inspection["error"]["reason"] == "too_many_attempts"
    assert "PRUNEKIT_MAX_ATTEMPTS=2" in inspection["error"]["message"]
    assert worker.poll() is None
    assert stack.svc.client.get("/readyz").status_code == 200


def test_job_reserved_by_a_dead_worker_runs_promptly(stack: Stack) -> None:
    """A worker took the job's message (kombu moved it to ``unacked``) and died before
    starting it. Redis would hand the message out again only after the visibility timeout
    (over an hour); the reconciler sends the job again after a few seconds' grace."""
    stack.kill_workers()
    job_id = stack.submit(stack.inspected[0])
    queue_key = f"{PREFIX}:celery:{QUEUE}"
    message = stack.r.rpop(queue_key)  # what a worker's reservation does...
    assert message and job_id in message
    stack.r.hset(f"{PREFIX}:celery:unacked", "dead-worker-tag",
                 json.dumps([json.loads(message), "", QUEUE]))  # fmt: skip
    stack.r.zadd(f"{PREFIX}:celery:unacked_index", {"dead-worker-tag": time.time()})
    # ...and then that worker is gone: nothing else holds the job
    start = time.monotonic()
    stack.start_worker()
    done = stack.svc.wait_job(job_id, timeout=90)
    assert done["status"] == "succeeded" and done["attempts"] == 1, done
    assert time.monotonic() - start < 90
    messages = [
        e["message"] for e in stack.svc.client.get(f"/v1/jobs/{job_id}/events").json()["items"]
    ]
    assert "the worker that took it was lost before starting it; queued again" in messages

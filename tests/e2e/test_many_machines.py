"""Several machines in miniature: artifacts in S3, two workers that share no disk.

A private stack: ``moto_server`` (a real S3 HTTP API, signatures checked) on loopback, its
own redis-server, the API and two Celery workers, each process with its own empty
``PRUNEKIT_HOME``. Only Redis and the object store are shared, so a job can only succeed if
every artifact travels through the store:

* jobs run on either worker and download correctly (bytes, ETag, Range);
* a worker SIGKILLed mid-job: the job moves to the other one and succeeds;
* no process keeps artifacts on its own disk (every ``artifacts/`` stays empty, scratch is
  deleted after each job), and deleting a job or a model deletes its objects;
* faults: an object missing behind a record is a 410, an upload while the store is down a
  503 with ``Retry-After`` and no record, wrong credentials fail ``/readyz`` with the reason.

Where the sandbox allows it (root, iproute2), each worker runs in a network namespace of its
own, with its own interfaces and address (``tests/netns.py``), and reaches Redis and the store
only at its veth peer's address on the host; otherwise the reason is printed and the workers
share the host's network (still nothing else).
"""

from __future__ import annotations

import hashlib
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

from core.embedded_redis import EmbeddedRedis, free_port, start_embedded
from tests import netns
from tests.e2e.conftest import REPO, Service, spawn_api, spawn_worker, stop, wait_ready
from tests.s3_server import MotoS3

pytestmark = pytest.mark.e2e

PREFIX = QUEUE = "multi"


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.no_netns = netns.unavailable()
        if self.no_netns:
            print(f"workers share the host network: {self.no_netns}")
        self.namespaces = {} if self.no_netns else dict(zip("ab", netns.make(2), strict=True))
        hosts = " ".join(ns.host_ip for ns in self.namespaces.values())
        self.s3 = MotoS3(self.logs, host="0.0.0.0" if hosts else "127.0.0.1").start()
        self.redis: EmbeddedRedis = start_embedded(tmp / "redis", bind=f"127.0.0.1 {hosts}")
        if hosts:  # bound to loopback and the veth host ends only: let those in too
            self.redis_client().config_set("protected-mode", "no")
        self.env = {
            **self.s3.env,
            "PRUNEKIT_REDIS_URL": self.redis.url,
            "PRUNEKIT_KEY_PREFIX": PREFIX,
            "PRUNEKIT_QUEUE": QUEUE,
            "PRUNEKIT_LEASE_TTL": "2",
            "PRUNEKIT_RECONCILE_INTERVAL": "1",
        }
        out = subprocess.run(
            [sys.executable, "-m", "app.auth.cli", "create", "--tenant", "multi", "--json"],
            cwd=REPO, env={**os.environ, **self.env, "PRUNEKIT_HOME": str(tmp / "cli-home")},
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        self.key = json.loads(out.stdout)["key"]
        port = free_port()
        self.api = spawn_api(self.logs, port, self.home_env("api"))
        self.svc = Service(f"http://127.0.0.1:{port}", self.logs, self.key)
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.model_id = ""  # the big model the first test uploaded
        self.finished: list[str] = []  # jobs that succeeded
        try:
            for name in ("a", "b"):
                self.start_worker(name)
            wait_ready(self.svc, [self.api, *self.workers.values()])
        except BaseException:
            self.close()  # no process or namespace outlives a failed start
            raise

    def home(self, name: str) -> Path:
        return self.tmp / f"home-{name}"

    def home_env(self, name: str) -> dict[str, str]:
        return {**self.env, "PRUNEKIT_HOME": str(self.home(name))}

    def start_worker(self, name: str) -> None:
        env, prefix = self.home_env(name), None
        ns = self.namespaces.get(name)
        if ns is not None:  # Redis and the store at the host end of this namespace's veth
            env["PRUNEKIT_REDIS_URL"] = f"redis://{ns.host_ip}:{self.redis.port}/0"
            env["PRUNEKIT_S3_ENDPOINT_URL"] = f"http://{ns.host_ip}:{self.s3.port}"
            prefix = ns.prefix()
        self.workers[name] = spawn_worker(
            self.logs, env, concurrency=1, name=f"worker-{name}", prefix=prefix
        )

    def runner_of(self, job_id: str) -> str:
        """Which worker's pool child holds the job's lease (``host:pid:token``)."""
        holder = self.redis_client().get(f"{PREFIX}:job:{job_id}:lease")
        assert holder, f"job {job_id} has no lease holder"
        parents = {p.pid for p in psutil.Process(int(holder.split(":")[1])).parents()}
        return next(name for name, w in self.workers.items() if w.pid in parents)

    def redis_client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.redis.url, decode_responses=True)

    def submit(self, model_id: str) -> str:
        resp = self.svc.client.post(
            "/v1/jobs",
            json={"model_id": model_id, "strategy": {"name": "magnitude", "sparsity": 0.5}},
        )
        assert resp.status_code == 202, resp.text
        return str(resp.json()["id"])

    def wait_running(self, job_id: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.svc.client.get(f"/v1/jobs/{job_id}").json()["status"] != "running":
            assert time.monotonic() < deadline, f"job {job_id} never started"
            time.sleep(0.05)

    def assert_no_local_artifacts(self) -> None:
        """Nothing under any process's artifacts/, no scratch left but worker TMPDIRs."""
        for name in ("api", *self.workers):
            assert files_under(self.home(name) / "artifacts") == [], name
            leftovers = [
                p for p in files_under(self.home(name) / "tmp") if "/worker-" not in str(p)
            ]
            assert leftovers == [], (name, leftovers)

    def close(self) -> None:
        stop(self.api, *self.workers.values())
        self.redis.stop()
        self.s3.stop()
        for ns in self.namespaces.values():
            ns.delete()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("multi"))
    try:
        yield c
    finally:
        c.close()


def check_download(cluster: Cluster, job: dict[str, Any]) -> None:
    """The job's model downloads whole, by range and conditionally, as its record says."""
    svc = cluster.svc
    art = json.loads(cluster.redis_client().hget(f"{PREFIX}:job:{job['id']}", "artifact"))
    resp = svc.client.get(f"/v1/jobs/{job['id']}/model")
    assert resp.status_code == 200, resp.text
    assert hashlib.sha256(resp.content).hexdigest() == art["sha256"]
    assert resp.headers["etag"] == f'"{art["sha256"]}"'
    assert int(resp.headers["content-length"]) == art["size_bytes"]
    part = svc.client.get(f"/v1/jobs/{job['id']}/model", headers={"Range": "bytes=10-29"})
    assert part.status_code == 206 and part.content == resp.content[10:30]
    assert part.headers["content-range"] == f"bytes 10-29/{art['size_bytes']}"
    cached = svc.client.get(
        f"/v1/jobs/{job['id']}/model", headers={"If-None-Match": resp.headers["etag"]}
    )
    assert cached.status_code == 304
    beyond = svc.client.get(f"/v1/jobs/{job['id']}/model", headers={"Range": "bytes=99999999-"})
    assert beyond.status_code == 416


def test_jobs_run_on_both_workers_through_the_store(cluster: Cluster, big_model_zip: Path) -> None:
    model = cluster.svc.upload(big_model_zip)
    assert cluster.svc.wait_inspection(model["id"])["inspection"]["status"] == "succeeded"
    cluster.model_id = model["id"]
    jobs = [cluster.submit(model["id"]) for _ in range(2)]
    runners = set()
    for job_id in jobs:
        cluster.wait_running(job_id)
        runners.add(cluster.runner_of(job_id))
    assert runners == {"a", "b"}  # one message each: concurrency 1, prefetch 1, acks late
    if cluster.namespaces:  # each worker on a network of its own, not the test's
        nets = {os.readlink(f"/proc/{w.pid}/ns/net") for w in cluster.workers.values()}
        assert len(nets) == 2 and os.readlink("/proc/self/ns/net") not in nets
    for job_id in jobs:
        done = cluster.svc.wait_job(job_id, timeout=120)
        assert done["status"] == "succeeded", done
        check_download(cluster, done)
        cluster.finished.append(job_id)
    keys = cluster.s3.all_keys()
    assert any(k.startswith(f"pk/models/{model['id']}/") for k in keys)
    for job_id in jobs:
        assert any(k.startswith(f"pk/jobs/{job_id}/attempt-1/") for k in keys), keys
    cluster.assert_no_local_artifacts()


def test_a_worker_killed_mid_job_hands_it_to_the_other(cluster: Cluster) -> None:
    job_id = cluster.submit(cluster.model_id)
    cluster.wait_running(job_id)
    victim = cluster.runner_of(job_id)
    worker = cluster.workers.pop(victim)
    os.killpg(worker.pid, signal.SIGKILL)  # main process, pool child and reconciler
    worker.wait(10)
    done = cluster.svc.wait_job(job_id, timeout=120)
    assert done["status"] == "succeeded" and done["attempts"] == 2, done
    check_download(cluster, done)
    assert [k for k in cluster.s3.all_keys() if k.startswith(f"pk/jobs/{job_id}/")]
    assert all(f"/attempt-{done['attempts']}" in k or "attempt" not in k
               for k in cluster.s3.all_keys() if k.startswith(f"pk/jobs/{job_id}/"))  # fmt: skip
    cluster.finished.append(job_id)


def test_deletes_remove_objects_and_missing_objects_are_410(cluster: Cluster) -> None:
    job = {"id": cluster.finished[0]}
    model = {"id": cluster.model_id}
    s3 = cluster.s3.client()
    for key in [k for k in cluster.s3.all_keys() if k.startswith(f"pk/jobs/{job['id']}/")]:
        s3.delete_object(Bucket=cluster.s3.bucket, Key=key)  # lost behind the service's back
    gone = cluster.svc.client.get(f"/v1/jobs/{job['id']}/model")
    assert gone.status_code == 410, gone.text
    assert gone.json()["type"].endswith("artifact-missing")
    for job_id in cluster.finished:
        assert cluster.svc.client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert cluster.svc.client.delete(f"/v1/models/{model['id']}").status_code == 204
    assert cluster.s3.all_keys() == []  # every model and job deleted: nothing left


def test_a_worker_the_store_refuses_does_not_start(cluster: Cluster) -> None:
    """A worker whose store credentials are wrong ends at start, saying so, instead of
    taking jobs it could only fail."""
    env = {**cluster.home_env("badkey"), "AWS_SECRET_ACCESS_KEY": "not-the-key"}
    worker = spawn_worker(cluster.logs, env, concurrency=1, name="worker-badkey")
    try:
        assert worker.wait(120) != 0
    finally:
        stop(worker)
    log = (cluster.logs / "worker-badkey.log").read_text()
    assert f"the artifact store (s3://{cluster.s3.bucket}/" in log, log[-3000:]
    assert ") refused:" in log and "the worker did not start" in log
    assert " ready." not in log  # it never came up to consume


def test_store_faults_get_clear_answers(cluster: Cluster, model_files: dict[str, Path]) -> None:
    port = free_port()
    wrong = {**cluster.home_env("api-wrong"), "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    api = spawn_api(cluster.logs, port, wrong)
    try:
        other = Service(f"http://127.0.0.1:{port}", cluster.logs, cluster.key)
        wait_ready(other, [api], path="/healthz")
        ready = other.client.get("/readyz")
        assert ready.status_code == 503
        assert "artifact store" in ready.json()["detail"]
        assert "SignatureDoesNotMatch" in ready.json()["detail"] or "403" in ready.json()["detail"]
    finally:
        stop(api)
    before = cluster.svc.client.get("/v1/models").json()["items"]
    cluster.s3.stop()  # the store goes down
    with model_files["keras"].open("rb") as f:
        resp = cluster.svc.client.post("/v1/models", files={"file": ("m.keras", f)})
    assert resp.status_code == 503, resp.text
    assert resp.json()["type"].endswith("artifact-store-unavailable")
    assert int(resp.headers["retry-after"]) > 0
    assert cluster.svc.client.get("/v1/models").json()["items"] == before  # no partial record
    assert cluster.svc.client.get("/readyz").status_code == 503
    cluster.assert_no_local_artifacts()

"""A real service for end-to-end tests: a Celery worker process and uvicorn, over Redis."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.embedded_redis import free_port
from tests.service_processes import REPO, spawn_api, spawn_worker, stop

__all__ = ["REPO", "spawn_api", "spawn_worker", "stop"]  # used by the e2e modules


def new_key(tenant: str) -> str:
    """A real API key for ``tenant``, created in the test Redis like the CLI does."""
    from core.auth import keys

    return keys.create_key(tenant, name="tests")[1]


class Service:
    def __init__(self, base_url: str, log_dir: Path, api_key: str | None = None) -> None:
        self.base_url = base_url
        self.log_dir = log_dir
        self.api_key = api_key or new_key("tests")
        self.client = httpx.Client(
            base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {self.api_key}"}
        )

    def as_key(self, api_key: str) -> Service:
        """The same service, seen with another API key (another tenant, say)."""
        return Service(self.base_url, self.log_dir, api_key)

    def wait_job(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in {"succeeded", "failed", "cancelled"}:
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} did not finish in {timeout}s: {job}")

    def wait_inspection(self, model_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.client.get(f"/v1/models/{model_id}").json()
            if model["inspection"]["status"] != "pending":
                return model
            time.sleep(0.2)
        raise AssertionError(f"model {model_id} not inspected in {timeout}s")

    def upload(self, path: Path) -> dict[str, Any]:
        with path.open("rb") as f:
            resp = self.client.post("/v1/models", files={"file": (path.name, f)})
        assert resp.status_code == 201, resp.text
        return resp.json()


def wait_ready(
    svc: Service, procs: list[subprocess.Popen[bytes]], path: str = "/readyz", timeout: float = 90
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if svc.client.get(path).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            logs = "".join(f.read_text()[-3000:] for f in sorted(svc.log_dir.glob("*.log")))
            raise RuntimeError(f"service did not become ready ({path}):\n{logs}")
        time.sleep(0.3)


def api_without_worker(logs: Path, queue_suffix: str, env: dict[str, str]) -> Iterator[Service]:
    """An API on the tests' Redis, key space and store, with its own queue and no worker on
    it (jobs stay queued); ``env`` adds settings. Use as a fixture body (``yield from``)."""
    port = free_port()
    full_env = {"PRUNEKIT_QUEUE": f"{os.environ['PRUNEKIT_QUEUE']}-{queue_suffix}", **env}
    api = spawn_api(logs, port, full_env)
    svc = Service(f"http://127.0.0.1:{port}", logs)
    try:
        wait_ready(svc, [api], path="/healthz")
        yield svc
    finally:
        stop(api)


@pytest.fixture(scope="session", autouse=True)
def _redis_first(redis_service: str) -> None:
    """The tests' Redis is ready before any session fixture here starts a process on it."""


# The shared service's settings that only webhook deliveries read: short timeouts and
# backoff, and loopback receivers allowed (tests/e2e/test_webhooks.py runs one on 127.0.0.1).
# One worker and API serve every module: a second TensorFlow worker costs more than keeping
# these at their defaults would be worth elsewhere.
WEBHOOK_TIMEOUT_S = 1.0
SERVICE_ENV = {
    "PRUNEKIT_WEBHOOK_ALLOW_PRIVATE": "1",
    "PRUNEKIT_WEBHOOK_TIMEOUT": str(WEBHOOK_TIMEOUT_S),
    "PRUNEKIT_WEBHOOK_RETRY_BASE": "0.3",
    "PRUNEKIT_WEBHOOK_MAX_ATTEMPTS": "3",
    "PRUNEKIT_WEBHOOK_PROGRESS_INTERVAL": "0.5",
}


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    logs = tmp_path_factory.mktemp("service-logs")
    port = free_port()
    worker = spawn_worker(logs, SERVICE_ENV)
    api = spawn_api(logs, port, SERVICE_ENV)
    svc = Service(f"http://127.0.0.1:{port}", logs)
    try:
        wait_ready(svc, [worker, api])
        yield svc
    finally:
        stop(api, worker)


@pytest.fixture
def other_tenant(service: Service) -> Service:
    """The same service as seen by another tenant, a fresh one for each test."""
    return service.as_key(new_key(f"other-team-{uuid.uuid4().hex[:8]}"))


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny MLP as a zipped SavedModel, a .tar.gz SavedModel and a .keras file."""
    from tests import tiny_models

    tmp = tmp_path_factory.mktemp("uploads")
    model = tiny_models.mlp(seed=3)
    sm = tiny_models.export_saved_model(model, tmp / "sm")
    keras_path = tmp / "tiny.keras"
    model.save(keras_path)
    return {
        "saved_model_zip": tiny_models.zip_dir(sm, tmp / "tiny_sm.zip", top="tiny_sm"),
        "saved_model_tgz": tiny_models.tar_gz_dir(sm, tmp / "tiny_sm.tar.gz"),
        "keras": keras_path,
        "saved_model_dir": sm,
    }


@pytest.fixture(scope="session")
def big_model_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zipped SavedModel whose pruning job takes seconds, not milliseconds."""
    from tests import tiny_models

    tmp = tmp_path_factory.mktemp("big")
    sm = tiny_models.export_saved_model(tiny_models.wide_mlp(), tmp / "sm")
    return tiny_models.zip_dir(sm, tmp / "wide_sm.zip", top="wide_sm")

"""A real service for end-to-end tests: a Celery worker process and uvicorn, over Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.embedded_redis import free_port

REPO = Path(__file__).resolve().parents[2]


class Service:
    def __init__(self, base_url: str, log_dir: Path) -> None:
        self.base_url = base_url
        self.log_dir = log_dir
        self.client = httpx.Client(base_url=base_url, timeout=30)

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


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        args, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    logs = tmp_path_factory.mktemp("service-logs")
    port = free_port()
    worker = _spawn(
        [sys.executable, "-m", "celery", "-A", "worker.celery_app:celery_app", "worker",
         "--loglevel", "INFO", "--concurrency", "2", "-Q", os.environ["PRUNEKIT_QUEUE"],
         "--hostname", f"test-{port}@%h"],
        logs / "worker.log",
    )  # fmt: skip
    api = _spawn(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
         "--port", str(port)],
        logs / "api.log",
    )  # fmt: skip
    svc = Service(f"http://127.0.0.1:{port}", logs)
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                if svc.client.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or worker.poll() is not None or api.poll() is not None:
                raise RuntimeError(
                    "service did not become ready:\n"
                    + (logs / "worker.log").read_text()[-3000:]
                    + (logs / "api.log").read_text()[-3000:]
                )
            time.sleep(0.5)
        yield svc
    finally:
        for proc in (api, worker):
            proc.terminate()
        for proc in (api, worker):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


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

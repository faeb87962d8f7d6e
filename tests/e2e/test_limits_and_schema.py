"""An API with a tiny upload cap and no worker on its queue (jobs stay queued), and a
property-based run of the OpenAPI schema (schemathesis) that must never see a 5xx."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from app import storage
from tests.e2e.conftest import Service, free_port, new_key, spawn_api, stop, wait_ready

pytestmark = pytest.mark.e2e

CAP = 100_000


@pytest.fixture(scope="module")
def idle_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Same Redis, key space and store as the tests, but its own queue, no worker on it."""
    logs = tmp_path_factory.mktemp("idle-api")
    port = free_port()
    env = {
        "PRUNEKIT_MAX_UPLOAD_BYTES": str(CAP),
        "PRUNEKIT_QUEUE": f"{os.environ['PRUNEKIT_QUEUE']}-idle",
    }
    api = spawn_api(logs, port, env)
    svc = Service(f"http://127.0.0.1:{port}", logs)
    try:
        wait_ready(svc, [api], path="/healthz")
        yield svc
    finally:
        stop(api)


def _scratch() -> list[Path]:
    tmp = storage.artifacts_root().parent / "tmp"
    return sorted(tmp.glob("upload-*")) if tmp.exists() else []


def test_upload_over_the_cap_is_413_without_buffering(idle_api: Service) -> None:
    big = os.urandom(3 * CAP)
    resp = idle_api.client.post("/v1/models", files={"file": ("big.keras", big)})
    assert resp.status_code == 413, resp.text
    assert (
        resp.json()["limit_bytes"] == CAP and "PRUNEKIT_MAX_UPLOAD_BYTES" in resp.json()["detail"]
    )

    # no Content-Length (chunked): refused while streaming, once the cap is crossed
    boundary = uuid.uuid4().hex

    def chunks() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.zip"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        for _ in range(50):
            yield os.urandom(CAP // 10)
        yield f"\r\n--{boundary}--\r\n".encode()

    resp = idle_api.client.post(
        "/v1/models",
        content=chunks(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert resp.status_code == 413, resp.text
    assert _scratch() == []  # the partial upload was removed


def test_queued_job_cancel_and_delete_rules(idle_api: Service, model_files: dict) -> None:
    model = idle_api.upload(model_files["keras"])
    job = idle_api.client.post(
        "/v1/jobs",
        json={"model_id": model["id"], "strategy": {"name": "magnitude", "sparsity": 0.5}},
    ).json()
    assert job["status"] == "queued"
    busy = idle_api.client.delete(f"/v1/models/{model['id']}")
    assert busy.status_code == 409 and busy.json()["jobs"] == [job["id"]]
    assert idle_api.client.delete(f"/v1/jobs/{job['id']}").status_code == 409  # unfinished

    resp = idle_api.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert resp.status_code == 202 and resp.json()["status"] == "cancelled"
    assert resp.json()["finished_at"]
    assert idle_api.client.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    assert idle_api.client.delete(f"/v1/models/{model['id']}").status_code == 204
    assert idle_api.client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert not storage.model_dir(model["id"]).exists()


def test_unknown_block_shape_is_422_naming_the_field(idle_api: Service) -> None:
    catalogue = idle_api.client.get("/v1/strategies").json()["items"]
    magnitude = next(s for s in catalogue if s["name"] == "magnitude")
    assert "litert_int8" in magnitude["parameters"]["properties"]["block"]["description"]
    resp = idle_api.client.post(
        "/v1/jobs",
        json={
            "model_id": "m-none",
            "strategy": {"name": "magnitude", "sparsity": 0.9, "block": "3x3"},
        },
    )
    assert resp.status_code == 422, resp.text
    assert [e["field"] for e in resp.json()["errors"]] == ["body.strategy.block"]


def test_a_bad_latency_budget_is_422_naming_the_field(idle_api: Service) -> None:
    resp = idle_api.client.post(
        "/v1/jobs",
        json={
            "model_id": "m-none",
            "strategy": {"name": "magnitude", "sparsity": 0.9},
            "measure": {"latency_batch_sizes": [1, 32], "latency_budget_s": 0},
        },
    )
    assert resp.status_code == 422, resp.text
    assert [e["field"] for e in resp.json()["errors"]] == ["body.measure.latency_budget_s"]


# ---------------------------------------------------------------- schemathesis, in process
from app.main import app  # noqa: E402  (the test env is set by tests/conftest.py)

# /readyz answers 503 by design when no worker is up (none is, in this process)
schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path="/readyz")
KEY = new_key("schemathesis")


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,  # no .hypothesis folder in the repo
)
def test_openapi_property_based_no_5xx(case: schemathesis.Case) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    if "idempotency-key" in {k.lower() for k in (case.headers or {})}:
        headers["Idempotency-Key"] = uuid.uuid4().hex  # avoid replays across examples
    case.call_and_validate(headers=headers, checks=[not_a_server_error])

"""Keys, tenants, idempotency, cancel and delete against the real service (HTTP + worker)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from core import storage
from tests.e2e.conftest import REPO, Service

pytestmark = pytest.mark.e2e

PROBLEM = "application/problem+json"


def _submit(svc: Service, model_id: str, sparsity: float = 0.5, **headers: str) -> httpx.Response:
    return svc.client.post(
        "/v1/jobs",
        json={"model_id": model_id, "strategy": {"name": "magnitude", "sparsity": sparsity}},
        headers=headers,
    )


def test_every_v1_route_needs_a_key(service: Service) -> None:
    anon = httpx.Client(base_url=service.base_url, timeout=30)
    for method, path in [
        ("GET", "/v1/models"), ("POST", "/v1/models"), ("GET", "/v1/models/x"),
        ("DELETE", "/v1/models/x"), ("GET", "/v1/jobs"), ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs/x"), ("POST", "/v1/jobs/x/cancel"), ("DELETE", "/v1/jobs/x"),
        ("GET", "/v1/jobs/x/events"), ("GET", "/v1/jobs/x/model"), ("GET", "/v1/strategies"),
    ]:  # fmt: skip
        for headers in ({}, {"Authorization": "Bearer pk_not-a-key"}, {"Authorization": "Basic x"}):
            resp = anon.request(method, path, headers=headers)
            assert resp.status_code == 401, (method, path, headers, resp.text)
            assert resp.headers["content-type"].startswith(PROBLEM)
            assert resp.headers["www-authenticate"].startswith("Bearer")
    assert anon.get("/healthz").status_code == 200
    assert anon.get("/readyz").status_code == 200


def test_tenants_see_only_their_own(
    service: Service, other_tenant: Service, model_files: dict[str, Path]
) -> None:
    mine = service.upload(model_files["keras"])
    job = _submit(service, mine["id"]).json()
    theirs = other_tenant.upload(model_files["keras"])

    for path in (f"/v1/models/{mine['id']}", f"/v1/jobs/{job['id']}",
                 f"/v1/jobs/{job['id']}/events", f"/v1/jobs/{job['id']}/model"):  # fmt: skip
        resp = other_tenant.client.get(path)
        assert resp.status_code == 404, (path, resp.text)
        assert "not found" in resp.json()["title"].lower()
    assert other_tenant.client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 404
    assert other_tenant.client.delete(f"/v1/jobs/{job['id']}").status_code == 404
    assert other_tenant.client.delete(f"/v1/models/{mine['id']}").status_code == 404
    assert _submit(other_tenant, mine["id"]).status_code == 404  # cannot prune my model

    their_models = [m["id"] for m in other_tenant.client.get("/v1/models").json()["items"]]
    assert their_models == [theirs["id"]]
    assert other_tenant.client.get("/v1/jobs").json()["items"] == []
    my_models = [m["id"] for m in service.client.get("/v1/models").json()["items"]]
    assert mine["id"] in my_models and theirs["id"] not in my_models
    assert service.wait_job(job["id"])["status"] == "succeeded"


def test_revoked_key_stops_working(service: Service) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "app.auth.cli", "create", "--tenant", "revokee", "--json"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    import json

    created = json.loads(out.stdout)
    svc = service.as_key(created["key"])
    assert svc.client.get("/v1/models").status_code == 200
    listed = subprocess.run(
        [sys.executable, "-m", "app.auth.cli", "list", "--tenant", "revokee"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert created["id"] in listed and created["key"] not in listed  # secrets never listed
    subprocess.run(
        [sys.executable, "-m", "app.auth.cli", "revoke", created["id"]], cwd=REPO, check=True
    )
    assert svc.client.get("/v1/models").status_code == 401


def test_idempotency_key(
    service: Service, other_tenant: Service, model_files: dict[str, Path]
) -> None:
    model = service.upload(model_files["keras"])
    first = _submit(service, model["id"], 0.3, **{"Idempotency-Key": "retry-me-1"})
    assert first.status_code == 202
    again = _submit(service, model["id"], 0.3, **{"Idempotency-Key": "retry-me-1"})
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    clash = _submit(service, model["id"], 0.4, **{"Idempotency-Key": "retry-me-1"})
    assert clash.status_code == 409 and clash.json()["job_id"] == first.json()["id"]
    # keys are per tenant: the same key string elsewhere is a different key
    theirs = other_tenant.upload(model_files["keras"])
    other = _submit(other_tenant, theirs["id"], 0.3, **{"Idempotency-Key": "retry-me-1"})
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
    ids = [j["id"] for j in service.client.get("/v1/jobs", params={"limit": 200}).json()["items"]]
    assert ids.count(first.json()["id"]) == 1
    service.wait_job(first.json()["id"])
    other_tenant.wait_job(other.json()["id"])


def test_cancel_running_job_then_delete(service: Service, big_model_zip: Path) -> None:
    model = service.upload(big_model_zip)
    job = _submit(service, model["id"], 0.8).json()
    deadline = time.monotonic() + 90
    while (status := service.client.get(f"/v1/jobs/{job['id']}").json()["status"]) == "queued":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status == "running"
    resp = service.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert resp.status_code == 202 and resp.json()["status"] in ("cancelling", "cancelled")
    # deleting the model while a job still uses it is refused
    busy = service.client.delete(f"/v1/models/{model['id']}")
    if resp.json()["status"] == "cancelling":
        assert busy.status_code == 409 and job["id"] in busy.json()["jobs"]
    done = service.wait_job(job["id"])
    assert done["status"] == "cancelled", done
    assert done["metrics"] is None and not (storage.job_dir(job["id"])).exists()
    events = [
        e["message"] for e in service.client.get(f"/v1/jobs/{job['id']}/events").json()["items"]
    ]
    assert "cancel requested" in events and events[-1] == "cancelled"
    # cancelling again is harmless, a finished job cannot be cancelled
    assert service.client.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"

    assert service.client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert service.client.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert service.client.delete(f"/v1/models/{model['id']}").status_code == 204
    assert service.client.get(f"/v1/models/{model['id']}").status_code == 404
    assert not storage.model_dir(model["id"]).exists()


def test_finished_job_cannot_be_cancelled_and_delete_removes_files(
    service: Service, model_files: dict[str, Path]
) -> None:
    model = service.upload(model_files["keras"])
    job = _submit(service, model["id"]).json()
    assert service.wait_job(job["id"])["status"] == "succeeded"
    resp = service.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert resp.status_code == 409 and resp.json()["job_status"] == "succeeded"
    assert storage.job_dir(job["id"]).is_dir()
    assert service.client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert not storage.job_dir(job["id"]).exists()
    assert service.client.get(f"/v1/jobs/{job['id']}/events").status_code == 404
    ids = [j["id"] for j in service.client.get("/v1/jobs", params={"limit": 200}).json()["items"]]
    assert job["id"] not in ids


def test_api_process_never_imports_tensorflow() -> None:
    code = (
        "import sys, app.main, core.lifecycle.reconciler, app.auth.cli;"
        "bad = sorted(m for m in ('tensorflow', 'keras', 'h5py') if m in sys.modules);"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr

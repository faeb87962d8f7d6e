"""``POST /v1/jobs?validate_only=true``: every check, nothing written, nothing queued."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.e2e.conftest import Service, api_without_worker
from tests.polling import wait_until

pytestmark = pytest.mark.e2e

SUFFIX = "dry-run"


@pytest.fixture(scope="module")
def quiet_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """An API whose queue no worker reads: what a submission queues stays countable."""
    yield from api_without_worker(tmp_path_factory.mktemp("dry-run-api"), SUFFIX, {})


def _counts() -> tuple[int, int]:
    """Jobs recorded (all tenants) and messages waiting on the quiet API's queue."""
    r = redis.Redis.from_url(os.environ["PRUNEKIT_REDIS_URL"])
    prefix = os.environ["PRUNEKIT_KEY_PREFIX"]
    queue = f"{os.environ['PRUNEKIT_QUEUE']}-{SUFFIX}"
    return r.zcard(f"{prefix}:jobs"), r.llen(f"{prefix}:celery:{queue}")


def test_validate_only_writes_nothing_and_answers_the_resolved_facts(
    service: Service, quiet_api: Service, model_files: dict[str, Path]
) -> None:
    model = service.upload(model_files["keras"])  # the real worker inspects it
    assert service.wait_inspection(model["id"])["inspection"]["status"] == "succeeded"
    quiet = quiet_api.as_key(service.api_key)  # same tenant, the queue nobody reads
    body = {
        "model_id": model["id"],
        "strategy": {"name": "magnitude", "sparsity": 0.5},
        "exclude": ["logits"],
        "metadata": {"team": "vision"},
    }
    before = _counts()
    resp = quiet.client.post("/v1/jobs", params={"validate_only": "true"}, json=body)
    assert resp.status_code == 200, resp.text
    assert "location" not in resp.headers
    assert _counts() == before
    out = resp.json()
    assert out["valid"] is True
    assert out["spec"]["strategy"] == {**out["spec"]["strategy"], "name": "magnitude",
                                       "sparsity": 0.5, "scope": "global"}  # fmt: skip
    assert out["spec"]["exclude"] == ["logits"] and "metadata" not in out["spec"]
    assert {row["layer"] for row in out["layers"]} == {"dense_1", "dense_2"}
    assert any("logits" in name for name in out["excluded"])
    # by hand: prunable 8*16 + 16*16 = 384, half zeroed; the MLP has 467 parameters
    assert out["parameters"] == {
        "prunable": 384, "zeroed": 192, "sparsity": 0.5, "total": 467, "left": 275,
    }  # fmt: skip
    assert out["flops_before"] is not None
    assert "layers" in out["speedup_paths"]
    assert set(out["estimated_duration"]) >= {"seconds", "basis", "jobs"}

    bad = quiet.client.post(
        "/v1/jobs", params={"validate_only": "true"},
        json={**body, "strategy": {"name": "magnitude", "sparsity": 1.5}},
    )  # fmt: skip
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "body.strategy.sparsity"
    missing = quiet.client.post(
        "/v1/jobs", params={"validate_only": "true"}, json={**body, "model_id": "nope"}
    )
    assert missing.status_code == 404
    assert _counts() == before

    real = quiet.client.post("/v1/jobs", json=body)  # the same body, for real: counted
    assert real.status_code == 202
    assert _counts() == (before[0] + 1, before[1] + 1)
    assert quiet.client.post(f"/v1/jobs/{real.json()['id']}/cancel").status_code == 202


def test_estimate_comes_from_finished_jobs(service: Service, model_files: dict[str, Path]) -> None:
    model = service.upload(model_files["keras"])
    body = {"model_id": model["id"], "strategy": {"name": "random", "sparsity": 0.3}}
    job = service.client.post("/v1/jobs", json=body).json()
    assert service.wait_job(job["id"])["status"] == "succeeded"

    def estimate() -> dict[str, Any]:
        dry = service.client.post("/v1/jobs?validate_only=true", json=body).json()
        return dry["estimated_duration"]  # type: ignore[no-any-return]

    # the worker records a job's throughput just after marking it succeeded
    est = wait_until(lambda: (e := estimate())["jobs"] >= 1 and e, 10, what="a recorded job")
    assert est["seconds"] > 0

"""Labels (``metadata``) on models, datasets and jobs, and the job list's filters."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.conftest import Service
from tests.polling import wait_until

pytestmark = pytest.mark.e2e


def _npz() -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buf, x_train=rng.normal(size=(16, 8)).astype("float32"), y_train=np.zeros(16))
    return buf.getvalue()


def _job(svc: Service, model_id: str, metadata: dict[str, str]) -> dict:
    body = {"model_id": model_id, "strategy": {"name": "magnitude", "sparsity": 0.5}}
    resp = svc.client.post("/v1/jobs", json={**body, "metadata": metadata})
    assert resp.status_code == 202, resp.text
    return resp.json()


def test_metadata_round_trips_and_filters_lists(
    other_tenant: Service, model_files: dict[str, Path]
) -> None:
    svc = other_tenant  # a fresh tenant: its lists hold only what this test makes
    with model_files["keras"].open("rb") as f:
        resp = svc.client.post(
            "/v1/models", params={"metadata[team]": "vision", "metadata[stage]": "dev"},
            files={"file": ("tiny.keras", f)},
        )  # fmt: skip
    assert resp.status_code == 201, resp.text
    model = resp.json()
    assert model["metadata"] == {"team": "vision", "stage": "dev"}
    plain = svc.upload(model_files["keras"])
    assert plain["metadata"] == {}
    assert svc.client.get(f"/v1/models/{model['id']}").json()["metadata"]["team"] == "vision"
    listed = svc.client.get("/v1/models", params={"metadata[team]": "vision"}).json()["items"]
    assert [m["id"] for m in listed] == [model["id"]]
    both = svc.client.get("/v1/models", params={"metadata[team]": "vision", "metadata[stage]": "x"})
    assert both.json()["items"] == []

    resp = svc.client.post(
        "/v1/datasets", params={"metadata[source]": "unit"},
        files={"file": ("d.npz", _npz())},
    )  # fmt: skip
    assert resp.status_code == 201, resp.text
    dataset = resp.json()
    assert dataset["metadata"] == {"source": "unit"}
    svc.client.post("/v1/datasets", files={"file": ("e.npz", _npz())})
    listed = svc.client.get("/v1/datasets", params={"metadata[source]": "unit"}).json()["items"]
    assert [d["id"] for d in listed] == [dataset["id"]]

    first = _job(svc, model["id"], {"team": "vision", "run": "1"})
    assert first["metadata"] == {"team": "vision", "run": "1"}
    assert "metadata" not in first["spec"]
    svc.wait_job(first["id"])
    created = datetime.fromisoformat(first["created_at"])  # millisecond resolution
    wait_until(lambda: datetime.now(UTC) > created + timedelta(milliseconds=1), 5)
    middle = datetime.now(UTC).isoformat()
    second = _job(svc, model["id"], {"team": "audio"})
    assert svc.client.get(f"/v1/jobs/{second['id']}").json()["metadata"] == {"team": "audio"}

    def ids(**params: object) -> list[str]:
        resp = svc.client.get("/v1/jobs", params=params)
        assert resp.status_code == 200, resp.text
        return [j["id"] for j in resp.json()["items"]]

    assert ids() == [second["id"], first["id"]]
    assert ids(**{"metadata[team]": "vision"}) == [first["id"]]
    assert ids(**{"metadata[team]": "vision", "metadata[run]": "2"}) == []
    assert ids(status="succeeded") == [first["id"]]
    assert ids(created_after=middle) == [second["id"]]
    every = ["queued", "running", "succeeded", "failed", "cancelled"]
    assert ids(status=every) == [second["id"], first["id"]]
    page1 = svc.client.get("/v1/jobs", params={"created_after": "2000-01-01", "limit": 1}).json()
    assert [j["id"] for j in page1["items"]] == [second["id"]]
    assert ids(created_after="2000-01-01", after=page1["next_after"]) == [first["id"]]


@pytest.mark.parametrize(
    ("metadata", "why"),
    [
        ({f"k{i}": "v" for i in range(17)}, "at most 16 keys"),
        ({"Team": "v"}, "a key is"),
        ({"x" * 64: "v"}, "a key is"),
        ({"team": "v" * 257}, "at most 256 characters"),
    ],
)
def test_oversized_metadata_is_422_naming_the_field(
    service: Service, model_files: dict[str, Path], metadata: dict[str, str], why: str
) -> None:
    body = {"model_id": "m", "strategy": {"name": "magnitude"}, "metadata": metadata}
    resp = service.client.post("/v1/jobs", json=body)
    assert resp.status_code == 422
    problem = resp.json()
    assert problem["errors"][0]["field"] == "body.metadata"
    assert why in problem["errors"][0]["message"]

    params = {f"metadata[{k}]": v for k, v in metadata.items()}
    with model_files["keras"].open("rb") as f:
        resp = service.client.post("/v1/models", params=params, files={"file": ("t.keras", f)})
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"].startswith("query.metadata")
    assert why in resp.json()["errors"][0]["message"]

"""Datasets over HTTP: upload checks, jobs that evaluate before/after, the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.digits import RESCALE, digits_classifier
from tests.e2e.conftest import Service

pytestmark = pytest.mark.e2e

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A slice of the 8x8 digits as an .npz, and a small classifier trained on it."""
    return digits_classifier(
        tmp_path_factory.mktemp("digits"), n_train=400, n_test=120, hidden=32, epochs=15
    )


def _upload_dataset(service: Service, path: Path) -> Any:
    with path.open("rb") as f:
        return service.client.post("/v1/datasets", files={"file": (path.name, f)})


def _ready_model(service: Service, path: Path) -> str:
    model = service.upload(path)
    assert service.wait_inspection(model["id"])["inspection"]["status"] == "succeeded"
    return str(model["id"])


def test_job_with_dataset_reports_before_and_after(service: Service, digits: dict) -> None:
    resp = _upload_dataset(service, digits["npz"])
    assert resp.status_code == 201, resp.text
    ds = resp.json()
    assert ds["size_bytes"] == digits["npz"].stat().st_size and len(ds["sha256"]) == 64
    assert ds["splits"]["train"] == {
        "samples": 400, "x_shape": [8, 8], "x_dtype": "uint8", "y_shape": [], "y_dtype": "uint8"
    }  # fmt: skip
    assert ds["splits"]["test"]["samples"] == 120 and "val" not in ds["splits"]
    assert service.client.get(f"/v1/datasets/{ds['id']}").json() == ds
    assert ds["id"] in [d["id"] for d in service.client.get("/v1/datasets").json()["items"]]

    model_id = _ready_model(service, digits["model"])
    resp = service.client.post(
        "/v1/jobs",
        json={
            "model_id": model_id,
            "dataset_id": ds["id"],
            "strategy": {"name": "magnitude", "sparsity": 0.5},
            "preprocessing": {"rescale": RESCALE},
            # one epoch of recovery with smoothed labels, distilled from the uploaded model
            "fine_tune": {
                "epochs": 1,
                "batch_size": 32,
                "label_smoothing": 0.1,
                "distill": {"alpha": 0.5},
            },
            # both batch sizes timed whatever the machine's load: a loaded machine could
            # otherwise leave batch 32 outside the latency budget (a row that says so)
            "measure": {"latency_force": True},
        },
    )
    assert resp.status_code == 202, resp.text
    job = service.wait_job(resp.json()["id"])
    assert job["status"] == "succeeded", job
    events = service.client.get(f"/v1/jobs/{job['id']}/events").json()["items"]
    assert any(
        "label smoothing 0.1, distilling from the original model (alpha 0.5" in e["message"]
        for e in events
    ), events
    m = job["metrics"]
    assert m["evaluation"] == {
        "split": "test", "samples": 120, "split_samples": 120,
        "loss": {"name": "sparse_categorical_crossentropy", "from_logits": True},
    }  # fmt: skip
    before, after = m["before"], m["after"]
    assert digits["accuracy"] > 0.5  # the model learned something, so the numbers mean something
    assert before["accuracy"] == pytest.approx(digits["accuracy"], abs=1e-6)
    for side in (before, after):
        assert 0 <= side["accuracy"] <= side["top5_accuracy"] <= 1 and 0 <= side["macro_f1"] <= 1
        assert side["loss"] > 0
        assert side["flops"]["dense"] == 2 * (64 * 32 + 32 * 10)
        assert side["latency"]["batch_1"]["median_ms"] > 0
        assert side["latency"]["batch_32"]["median_ms"] > 0
    assert before["flops"]["nonzero"] == before["flops"]["dense"]
    assert after["flops"]["nonzero"] == pytest.approx(before["flops"]["dense"] / 2, abs=1)
    assert after["parameters"]["nonzero"] < before["parameters"]["nonzero"]
    agreement = after["agreement"]
    assert 0.5 < agreement["top1"] <= 1 and agreement["kl_divergence"] >= 0
    assert m["delta"]["accuracy"] == pytest.approx(after["accuracy"] - before["accuracy"], abs=1e-5)
    assert job["links"]["report"] == f"/v1/jobs/{job['id']}/report"

    report = service.client.get(f"/v1/jobs/{job['id']}/report")
    assert report.status_code == 200, report.text
    r = report.json()
    assert (r["job_id"], r["model_id"], r["dataset_id"]) == (job["id"], model_id, ds["id"])
    assert r["strategy"]["name"] == "magnitude"
    assert r["before"] == before and r["after"] == after and r["delta"] == m["delta"]
    assert r["speedup"] == m["speedup"]
    for batch in (1, 32):  # the report's speed-up: an interleaved ratio with its interval
        row = r["speedup"]["tf"][f"batch_{batch}"]
        assert row["method"] == "interleaved" and row["context"]["batch_size"] == batch
        assert row["ci95"][0] <= row["median"] <= row["ci95"][1]
        assert after["latency"][f"batch_{batch}"] == row["b"]
    assert {row["layer"] for row in r["layers"]} == {"hidden", "logits"}
    assert all(row["sparsity_before"] == 0 for row in r["layers"])


def test_job_without_data_has_data_free_metrics_and_failed_job_has_no_report(
    service: Service, model_files: dict[str, Path]
) -> None:
    model_id = _ready_model(service, model_files["keras"])
    ok = service.client.post(
        "/v1/jobs",
        json={"model_id": model_id, "strategy": {"name": "magnitude", "sparsity": 0.5},
              "measure": {"latency_force": True}},  # batch 32 timed even on a loaded machine
    ).json()  # fmt: skip
    bad = service.client.post(
        "/v1/jobs",
        json={"model_id": model_id, "strategy": {"name": "magnitude", "sparsity": 0.5},
              "exclude": [".*"]},
    ).json()  # fmt: skip
    job = service.wait_job(ok["id"])
    assert job["status"] == "succeeded", job
    m = job["metrics"]
    assert m["evaluation"] is None and "accuracy" not in m["after"]
    assert m["before"]["flops"]["dense"] == 2 * (8 * 16 + 16 * 16 + 16 * 3)
    assert m["after"]["latency"]["batch_32"]["median_ms"] > 0
    assert service.client.get(f"/v1/jobs/{ok['id']}/report").status_code == 200

    assert service.wait_job(bad["id"])["status"] == "failed"
    resp = service.client.get(f"/v1/jobs/{bad['id']}/report")
    assert resp.status_code == 409 and resp.headers["content-type"] == PROBLEM
    assert resp.json()["job_status"] == "failed"


@pytest.mark.parametrize(
    ("arrays", "status", "words"),
    [
        (
            {"x_train": np.array([{"a": 1}] * 3, dtype=object), "y_train": np.zeros(3)},
            422,
            "pickle",
        ),
        ({"x_train": np.zeros((3, 8))}, 422, "y_train"),
        (None, 415, "not a zip"),
    ],
)
def test_bad_dataset_uploads(
    service: Service, tmp_path: Path, arrays: dict | None, status: int, words: str
) -> None:
    path = tmp_path / "bad.npz"
    if arrays is None:
        path.write_bytes(b"x_train,y_train\n1,2\n")
    else:
        np.savez(path, **arrays)  # object arrays get pickled by savez
    resp = _upload_dataset(service, path)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM and words in resp.json()["detail"]


def test_job_dataset_checks(service: Service, digits: dict, model_files: dict[str, Path]) -> None:
    ds = _upload_dataset(service, digits["npz"]).json()
    model_id = _ready_model(service, model_files["keras"])  # takes (batch, 8), digits are 8x8
    body = {"model_id": model_id, "strategy": {"name": "magnitude", "sparsity": 0.5}}
    resp = service.client.post("/v1/jobs", json={**body, "dataset_id": ds["id"]})
    assert resp.status_code == 422 and resp.headers["content-type"] == PROBLEM
    assert resp.json()["errors"][0]["field"] == "body.dataset_id"
    assert "[8, 8]" in resp.json()["detail"]

    resp = service.client.post("/v1/jobs", json={**body, "dataset_id": "nope"})
    assert resp.status_code == 404 and resp.json()["type"].endswith("dataset-not-found")


@pytest.mark.parametrize(
    "strategy",
    [
        {"name": "l1"},
        {"name": "l0"},
        {"name": "saliency"},
        {"name": "gradual"},
        # data-free unless iterative: the API asks the parameters, not the strategy's name
        {"name": "random", "iterative": True},
    ],
    ids=lambda s: "-".join(map(str, s.values())),
)
def test_needs_data_without_dataset_is_refused_before_queueing(
    service: Service, model_files: dict[str, Path], strategy: dict[str, Any]
) -> None:
    model_id = _ready_model(service, model_files["keras"])
    before = service.client.get("/v1/jobs", params={"limit": 1}).json()["items"]
    resp = service.client.post(
        "/v1/jobs", json={"model_id": model_id, "strategy": {**strategy, "sparsity": 0.5}}
    )
    assert resp.status_code == 422 and resp.headers["content-type"] == PROBLEM
    assert resp.json()["errors"][0]["field"] == "body.dataset_id"
    assert "needs data" in resp.json()["detail"]
    after = service.client.get("/v1/jobs", params={"limit": 1}).json()["items"]
    assert after == before  # nothing was recorded or queued


def test_datasets_belong_to_their_tenant(
    service: Service, other_tenant: Service, digits: dict
) -> None:
    ds = _upload_dataset(service, digits["npz"]).json()
    assert other_tenant.client.get(f"/v1/datasets/{ds['id']}").status_code == 404
    listed = [d["id"] for d in other_tenant.client.get("/v1/datasets").json()["items"]]
    assert ds["id"] not in listed
    assert other_tenant.client.delete(f"/v1/datasets/{ds['id']}").status_code == 404
    # nor can another tenant train on it with a model of its own
    theirs = _ready_model(other_tenant, digits["model"])
    resp = other_tenant.client.post(
        "/v1/jobs",
        json={"model_id": theirs, "dataset_id": ds["id"],
              "strategy": {"name": "magnitude", "sparsity": 0.5}},
    )  # fmt: skip
    assert resp.status_code == 404 and resp.json()["type"].endswith("dataset-not-found")
    # the owner deletes it: record and file gone
    assert service.client.delete(f"/v1/datasets/{ds['id']}").status_code == 204
    assert service.client.get(f"/v1/datasets/{ds['id']}").status_code == 404

"""Strategy auto over HTTP: a job that stays within its accuracy budget on validation and
reports its candidates, the sensitivity plot as a download, and the 422s of a bad budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.digits import RESCALE, digits_classifier
from tests.e2e.conftest import Service
from tests.polling import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return digits_classifier(
        tmp_path_factory.mktemp("search"), n_train=400, n_test=120, hidden=32, epochs=15
    )


@pytest.fixture(scope="module")
def ids(service: Service, digits: dict[str, Any]) -> tuple[str, str]:
    """The classifier and its dataset, uploaded once for every test here."""
    model = service.upload(digits["model"])
    assert service.wait_inspection(model["id"])["inspection"]["status"] == "succeeded"
    path: Path = digits["npz"]
    with path.open("rb") as f:
        resp = service.client.post("/v1/datasets", files={"file": (path.name, f)})
    assert resp.status_code == 201, resp.text
    return str(model["id"]), str(resp.json()["id"])


def test_auto_job_meets_its_budget_and_reports_the_search(
    service: Service, ids: tuple[str, str]
) -> None:
    model_id, dataset_id = ids
    strategy = {
        "name": "auto",
        "max_accuracy_drop": 0.05,
        "max_fine_tune_epochs": 3,
        "final_epochs": 1,
        "max_candidates": 8,
    }
    body = {
        "model_id": model_id,
        "dataset_id": dataset_id,
        "strategy": strategy,
        "preprocessing": {"rescale": RESCALE},
        "fine_tune": {"batch_size": 32},
        "seed": 0,
    }
    resp = service.client.post("/v1/jobs", json=body)
    assert resp.status_code == 202, resp.text
    job = service.wait_job(resp.json()["id"], timeout=120)
    assert job["status"] == "succeeded", job
    report = service.client.get(f"/v1/jobs/{job['id']}/report").json()
    search = report["search"]
    chosen = search["candidates"][search["chosen"]]
    assert chosen["within_budget"] and chosen["drop"] <= 0.05 + 1e-9
    assert search["final"]["val_drop"] is None or search["final"]["val_drop"] <= 0.05 + 1e-9
    assert search["fine_tune_epochs_used"] <= 3
    assert search["chosen"] in search["pareto_front"]
    assert report["after"]["sparsity"] > 0.3  # a 32-unit MLP loses far more than 30% in 5 pts
    assert search["test"]["accuracy_after"] is not None
    assert report["allocation"]["rule"] == "sensitivity"
    assert len(report["sensitivity"]["layers"]) == 2
    png = service.client.get(f"/v1/jobs/{job['id']}/model", params={"format": "sensitivity_png"})
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    ("strategy", "with_data", "field"),
    [
        ({"name": "auto", "max_accuracy_drop": 1.5}, True, "body.strategy.max_accuracy_drop"),
        ({"name": "auto", "max_accuracy_drop": -0.1}, True, "body.strategy.max_accuracy_drop"),
        ({"name": "auto", "max_accuracy_drop": 0.01}, False, "body.dataset_id"),
        (
            {"name": "auto", "max_accuracy_drop": 0.01, "objective": "latency"},
            True,
            "body.strategy.objective",
        ),
    ],
)
def test_bad_budgets_are_422_naming_the_field(
    service: Service, ids: tuple[str, str], strategy: dict, with_data: bool, field: str
) -> None:
    model_id, dataset_id = ids
    body: dict[str, Any] = {"model_id": model_id, "strategy": strategy}
    if with_data:
        body["dataset_id"] = dataset_id
    resp = service.client.post("/v1/jobs", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in resp.json()["errors"]], resp.json()


def _auto_job(service: Service, ids: tuple[str, str], **strategy: Any) -> str:
    model_id, dataset_id = ids
    body = {
        "model_id": model_id,
        "dataset_id": dataset_id,
        "strategy": {"name": "auto", "max_accuracy_drop": 0.05, **strategy},
        "preprocessing": {"rescale": RESCALE},
        "fine_tune": {"batch_size": 32},
        "seed": 0,
    }
    resp = service.client.post("/v1/jobs", json=body)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def test_family_either_searches_both_and_keeps_the_smallest_within_budget(
    service: Service, ids: tuple[str, str]
) -> None:
    job_id = _auto_job(
        service, ids, family="either", max_fine_tune_epochs=4, final_epochs=0, max_candidates=10
    )
    job = service.wait_job(job_id, timeout=180)
    assert job["status"] == "succeeded", job
    search = service.client.get(f"/v1/jobs/{job_id}/report").json()["search"]
    candidates = search["candidates"]
    assert {c["family"] for c in candidates} == {"unstructured", "structured"}
    passing = [c for c in candidates if c["within_budget"]]
    chosen = candidates[search["chosen"]]
    assert chosen["within_budget"]
    assert chosen["nonzero_params"] == min(c["nonzero_params"] for c in passing)
    assert search["fine_tune_epochs_used"] <= 4


def test_a_search_cancelled_between_candidates_keeps_its_best_one(
    service: Service, ids: tuple[str, str]
) -> None:
    """Cancelled once a candidate is within budget: the job succeeds with that candidate
    (nothing more is tried), says why, and its model downloads."""
    job_id = _auto_job(
        service, ids, max_fine_tune_epochs=200, candidate_epochs=3, final_epochs=0,
        max_candidates=60, tolerance=0.001,
    )  # fmt: skip

    def a_candidate_within_budget() -> bool:
        items = service.client.get(f"/v1/jobs/{job_id}/events").json()["items"]
        return any("within budget" in e["message"] for e in items)

    wait_until(a_candidate_within_budget, 120, interval=0.1, what="a candidate within budget")
    assert service.client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    job = service.wait_job(job_id, timeout=120)
    assert job["status"] == "succeeded", job
    messages = [
        e["message"] for e in service.client.get(f"/v1/jobs/{job_id}/events").json()["items"]
    ]
    assert "succeeded: cancelled between candidates, the best one within budget kept" in messages
    search = service.client.get(f"/v1/jobs/{job_id}/report").json()["search"]
    assert search["stopped"] == "cancelled"
    assert (
        len(search["candidates"]) < 60 and search["candidates"][search["chosen"]]["within_budget"]
    )
    assert service.client.get(f"/v1/jobs/{job_id}/model").status_code == 200

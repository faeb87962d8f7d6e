"""Upload a model, prune it on a real worker, download and load the result — over HTTP."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from prunekit.model import load_model
from tests.e2e.conftest import Service

pytestmark = pytest.mark.e2e

PROBLEM = "application/problem+json"


def _submit(service: Service, model_id: str, **strategy: object) -> dict:
    resp = service.client.post(
        "/v1/jobs", json={"model_id": model_id, "strategy": {"name": "magnitude", **strategy}}
    )
    assert resp.status_code == 202, resp.text
    assert resp.headers["location"] == f"/v1/jobs/{resp.json()['id']}"
    return resp.json()


@pytest.mark.parametrize("kind", ["saved_model_zip", "saved_model_tgz"])
def test_saved_model_round_trip(
    service: Service, model_files: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    model = service.upload(model_files[kind])
    assert model["format"] == "saved_model"
    assert len(model["sha256"]) == 64 and model["size_bytes"] == model_files[kind].stat().st_size

    inspected = service.wait_inspection(model["id"])
    assert inspected["inspection"]["status"] == "succeeded", inspected
    details = inspected["inspection"]["details"]
    assert "serving_default" in details["signatures"]
    assert details["parameters"]["total"] == 8 * 16 + 16 + 16 * 16 + 16 + 16 * 3 + 3

    job = _submit(service, model["id"], sparsity=0.75, scope="global")
    assert job["status"] == "queued"
    done = service.wait_job(job["id"])
    assert done["status"] == "succeeded", done
    assert done["progress"] == {"phase": "done", "fraction": 1.0, "detail": None}
    m = done["metrics"]
    prunable = 8 * 16 + 16 * 16 + 16 * 3
    assert m["parameters"]["prunable"] == prunable
    assert m["sparsity"] == pytest.approx(round(0.75 * prunable) / prunable)
    assert m["size_bytes"]["pruned_compressed"] < m["size_bytes"]["original_compressed"]
    assert {row["layer"] for row in m["layers"]} == {"dense_1", "dense_2", "logits"}

    resp = service.client.get(f"/v1/jobs/{job['id']}/model")
    assert resp.status_code == 200
    assert int(resp.headers["content-length"]) == len(resp.content)
    etag = resp.headers["etag"]
    assert (
        service.client.get(
            f"/v1/jobs/{job['id']}/model", headers={"If-None-Match": etag}
        ).status_code
        == 304
    )
    out = tmp_path / "pruned"
    zipfile.ZipFile(io.BytesIO(resp.content)).extractall(out)
    restored = tf.saved_model.load(str(out))
    original = tf.saved_model.load(str(model_files["saved_model_dir"]))
    assert set(restored.signatures) == set(original.signatures)
    x = np.random.default_rng(0).normal(size=(5, 8)).astype("float32")
    y = restored.signatures["serving_default"](features=tf.constant(x))["output_0"]
    assert y.shape == (5, 3)
    pruned = load_model(out, "saved_model")
    zeros = sum(int((w.numpy() == 0).sum()) for w in pruned.prunable_weights())
    assert zeros == round(0.75 * prunable)

    events = service.client.get(f"/v1/jobs/{job['id']}/events").json()["items"]
    kinds = [(e["type"], e["message"]) for e in events]
    assert kinds[0] == ("status", "queued")
    assert ("phase", "pruning") in kinds and kinds[-1] == ("status", "succeeded")
    assert [e["seq"] for e in events] == list(range(len(events)))


def test_keras_round_trip(service: Service, model_files: dict[str, Path], tmp_path: Path) -> None:
    model = service.upload(model_files["keras"])
    assert model["format"] == "keras"
    job = _submit(service, model["id"], sparsity=0.5, scope="layer")
    done = service.wait_job(job["id"])
    assert done["status"] == "succeeded", done
    resp = service.client.get(f"/v1/jobs/{job['id']}/model")
    assert resp.status_code == 200
    assert 'filename="tiny-pruned.keras"' in resp.headers["content-disposition"]
    path = tmp_path / "pruned.keras"
    path.write_bytes(resp.content)
    pruned = load_model(path, "keras")
    for w in pruned.prunable_weights():
        assert int((w.numpy() == 0).sum()) == round(0.5 * w.size)
    assert pruned.predict(np.zeros((2, 8), "float32")).shape == (2, 3)


def test_list_jobs_newest_first_with_cursor(service: Service, model_files: dict[str, Path]) -> None:
    model = service.upload(model_files["keras"])
    ids = [_submit(service, model["id"], sparsity=0.1)["id"] for _ in range(3)]
    page1 = service.client.get("/v1/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in page1["items"]] == ids[::-1][:2]
    page2 = service.client.get("/v1/jobs", params={"limit": 2, "after": page1["next_after"]}).json()
    assert page2["items"][0]["id"] == ids[0]
    for job_id in ids:
        service.wait_job(job_id)


def _problem(resp, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    body = resp.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    return body


def test_error_answers_are_problem_json(
    service: Service, model_files: dict[str, Path], tmp_path: Path
) -> None:
    c = service.client
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"definitely not a model" * 10)
    with junk.open("rb") as f:
        body = _problem(c.post("/v1/models", files={"file": ("junk.bin", f)}), 415)
    assert "SavedModel" in body["detail"] and ".keras" in body["detail"]

    body = _problem(c.post("/v1/models", files={"other": ("x", b"data")}), 422)
    assert body["errors"][0]["field"] == "body.file"

    body = _problem(
        c.post("/v1/models", content=b"raw", headers={"content-type": "text/plain"}), 415
    )

    _problem(c.get("/v1/models/nope"), 404)
    _problem(c.get("/v1/jobs/nope"), 404)
    _problem(c.get("/v1/jobs/nope/events"), 404)
    _problem(c.get("/v1/jobs/nope/model"), 404)
    _problem(
        c.post(
            "/v1/jobs",
            json={"model_id": "nope", "strategy": {"name": "magnitude", "sparsity": 0.5}},
        ),
        404,
    )

    model = service.upload(model_files["keras"])
    for strategy, field in [
        ({"name": "magnitude", "sparsity": 1.5}, "body.strategy.sparsity"),
        ({"name": "magnitude", "sparsity": 0.5, "colour": "red"}, "body.strategy.colour"),
        ({"name": "no-such-strategy"}, "body.strategy.name"),
        ({"sparsity": 0.5}, "body.strategy.name"),
    ]:
        body = _problem(
            c.post("/v1/jobs", json={"model_id": model["id"], "strategy": strategy}), 422
        )
        assert field in [e["field"] for e in body["errors"]], body
    body = _problem(
        c.post("/v1/jobs", json={"strategy": {"name": "magnitude", "sparsity": 0.5}}), 422
    )
    assert "body.model_id" in [e["field"] for e in body["errors"]]
    body = _problem(
        c.post(
            "/v1/jobs",
            json={"model_id": model["id"], "strategy": {"name": "magnitude", "sparsity": 0.5},
                  "fine_tune": {"distill": {"alpha": 2}}},
        ),
        422,
    )  # fmt: skip
    assert "body.fine_tune.distill.alpha" in [e["field"] for e in body["errors"]], body
    body = _problem(
        c.post(
            "/v1/jobs",
            json={"model_id": model["id"], "strategy": {"name": "magnitude", "sparsity": 0.5},
                  "fine_tune": {"label_smoothing": 1.0}},
        ),
        422,
    )  # fmt: skip
    assert "body.fine_tune.label_smoothing" in [e["field"] for e in body["errors"]], body

    # a job that cannot succeed (every layer excluded) fails with a reason; no download
    resp = c.post(
        "/v1/jobs",
        json={"model_id": model["id"], "exclude": [".*"],
              "strategy": {"name": "magnitude", "sparsity": 0.5}},
    )  # fmt: skip
    failed = service.wait_job(resp.json()["id"])
    assert failed["status"] == "failed"
    assert failed["error"]["reason"] == "invalid_spec"
    assert "no prunable weights" in failed["error"]["message"]
    body = _problem(c.get(f"/v1/jobs/{failed['id']}/model"), 409)
    assert body["job_status"] == "failed"
    _problem(c.get("/v1/no-such-route"), 404)


def test_health_and_strategies(service: Service) -> None:
    assert service.client.get("/healthz").json() == {"status": "ok"}
    # the worker answers pings from its main process; under CPU load a reply can be slow
    for _ in range(5):
        resp = service.client.get("/readyz")
        if resp.status_code == 200:
            break
    assert resp.status_code == 200, resp.text
    ready = resp.json()
    assert ready["status"] == "ready" and ready["workers"]
    items = service.client.get("/v1/strategies").json()["items"]
    magnitude = next(s for s in items if s["name"] == "magnitude")
    assert magnitude["kind"] == "unstructured"
    assert "sparsity" in magnitude["parameters"]["properties"]

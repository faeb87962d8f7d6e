"""Structured pruning over HTTP: a smaller model in both formats, and clear refusals."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from prunekit.structured import model_cost
from tests.e2e.conftest import Service

pytestmark = pytest.mark.e2e

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def conv_bn_keras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keras.utils.set_random_seed(5)
    inp = keras.Input((10, 10, 1), name="image")
    x = inp
    for i, f in enumerate((8, 16)):
        x = keras.layers.Conv2D(f, 3, padding="same", name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inp, keras.layers.Dense(4, name="logits")(x), name="tiny_conv_bn")
    path = tmp_path_factory.mktemp("structured") / "conv_bn.keras"
    model.save(path)
    return path


def _problem(resp: object, status: int) -> dict:
    assert resp.status_code == status, resp.text  # type: ignore[attr-defined]
    assert resp.headers["content-type"].startswith(PROBLEM)  # type: ignore[attr-defined]
    return resp.json()  # type: ignore[attr-defined, no-any-return]


def test_filter_job_makes_a_smaller_model_in_both_formats(
    service: Service, conv_bn_keras: Path, tmp_path: Path
) -> None:
    model = service.upload(conv_bn_keras)
    inspected = service.wait_inspection(model["id"])
    assert inspected["inspection"]["details"]["has_keras_graph"] is True
    resp = service.client.post(
        "/v1/jobs",
        json={"model_id": model["id"], "strategy": {"name": "filter", "ratio": 0.5}},
    )
    assert resp.status_code == 202, resp.text
    job = service.wait_job(resp.json()["id"])
    assert job["status"] == "succeeded", job
    m = job["metrics"]
    s = m["details"]["structured"]
    assert s["data_free"] is True
    assert s["flops_all_ops"]["after"] < s["flops_all_ops"]["before"] / 2
    assert "flops" not in s  # one FLOPs figure per name: metrics.flops counts matmul/conv only
    assert m["parameters"]["total"] == s["params"]["after"] < m["parameters"]["total_before"]
    assert m["size_bytes"]["pruned"] < m["size_bytes"]["original"]
    assert s["kept"]["conv1"] == {"before": 16, "after": 8}
    assert job["links"]["model_saved_model"].endswith("/model?format=saved_model")

    resp = service.client.get(f"/v1/jobs/{job['id']}/model")
    assert resp.status_code == 200 and resp.headers["content-disposition"].endswith('.keras"')
    (tmp_path / "pruned.keras").write_bytes(resp.content)
    pruned = keras.saving.load_model(tmp_path / "pruned.keras", safe_mode=True)
    assert model_cost(pruned).flops == s["flops_all_ops"]["after"]
    x = np.random.default_rng(0).normal(size=(3, 10, 10, 1)).astype("float32")
    expected = np.asarray(pruned(x, training=False))
    assert expected.shape == (3, 4)

    resp = service.client.get(f"/v1/jobs/{job['id']}/model", params={"format": "saved_model"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/zip"
    zipfile.ZipFile(io.BytesIO(resp.content)).extractall(tmp_path / "sm")
    restored = tf.saved_model.load(str(tmp_path / "sm"))
    assert {"serving_default", "serve"} <= set(restored.signatures)
    out = restored.signatures["serving_default"](image=tf.constant(x))["output_0"]
    np.testing.assert_allclose(np.asarray(out), expected, atol=1e-5)

    bad = service.client.get(f"/v1/jobs/{job['id']}/model", params={"format": "onnx"})
    assert _problem(bad, 422)["errors"][0]["field"] == "query.format"

    # the SavedModel prunekit wrote keeps its Keras graph: it can be pruned structurally again
    sm_zip = tmp_path / "pruned_sm.zip"
    sm_zip.write_bytes(resp.content)
    again = service.upload(sm_zip)
    assert again["format"] == "saved_model"
    details = service.wait_inspection(again["id"])["inspection"]["details"]
    assert details["has_keras_graph"] is True
    assert {"serving_default", "serve"} <= set(details["signatures"])
    resp = service.client.post(
        "/v1/jobs",
        json={"model_id": again["id"], "strategy": {"name": "filter", "ratio": 0.5}},
    )
    assert resp.status_code == 202, resp.text
    second = service.wait_job(resp.json()["id"])
    assert second["status"] == "succeeded", second
    assert second["metrics"]["details"]["structured"]["kept"]["conv1"] == {
        "before": 8,
        "after": 4,
    }
    resp = service.client.get(f"/v1/jobs/{second['id']}/model")
    assert resp.headers["content-type"] == "application/zip"  # the input's format
    zipfile.ZipFile(io.BytesIO(resp.content)).extractall(tmp_path / "sm2")
    assert {"serving_default", "serve"} <= set(
        tf.saved_model.load(str(tmp_path / "sm2")).signatures
    )


def test_unstructured_job_has_only_the_input_format(service: Service, conv_bn_keras: Path) -> None:
    model = service.upload(conv_bn_keras)
    resp = service.client.post(
        "/v1/jobs",
        json={"model_id": model["id"], "strategy": {"name": "magnitude", "sparsity": 0.5}},
    )
    job = service.wait_job(resp.json()["id"])
    assert job["status"] == "succeeded", job
    resp = service.client.get(f"/v1/jobs/{job['id']}/model", params={"format": "saved_model"})
    body = _problem(resp, 409)
    assert body["available_formats"] == ["keras"]
    ok = service.client.get(f"/v1/jobs/{job['id']}/model", params={"format": "keras"})
    assert ok.status_code == 200


def test_structured_submissions_refused_with_reasons(
    service: Service, conv_bn_keras: Path, model_files: dict[str, Path]
) -> None:
    generic = service.upload(model_files["saved_model_zip"])
    service.wait_inspection(generic["id"])
    resp = service.client.post(
        "/v1/jobs",
        json={"model_id": generic["id"], "strategy": {"name": "filter", "ratio": 0.5}},
    )
    body = _problem(resp, 422)
    assert body["errors"][0]["field"] == "body.strategy.name"
    assert ".keras" in body["detail"] and "SavedModel" in body["detail"]

    model = service.upload(conv_bn_keras)
    resp = service.client.post(
        "/v1/jobs",
        json={
            "model_id": model["id"],
            "strategy": {"name": "filter", "ratio": 0.5, "criterion": "taylor"},
        },
    )
    assert _problem(resp, 422)["errors"][0]["field"] == "body.strategy.criterion"
    resp = service.client.post(
        "/v1/jobs",
        json={
            "model_id": model["id"],
            "strategy": {"name": "filter", "ratio": 0.5, "round_to": 0},
        },
    )
    assert _problem(resp, 422)["errors"][0]["field"] == "body.strategy.round_to"
    resp = service.client.post(
        "/v1/jobs", json={"model_id": model["id"], "strategy": {"name": "slimnet", "ratio": 0.5}}
    )
    body = _problem(resp, 422)
    assert body["errors"][0]["field"] == "body.dataset_id"
    for steps in (0, 21):
        resp = service.client.post(
            "/v1/jobs",
            json={
                "model_id": model["id"],
                "strategy": {"name": "filter", "ratio": 0.5, "steps": steps},
            },
        )
        assert _problem(resp, 422)["errors"][0]["field"] == "body.strategy.steps"
    resp = service.client.post(
        "/v1/jobs",
        json={
            "model_id": model["id"],
            "strategy": {"name": "filter", "ratio": 0.5, "recalibrate": True},
        },
    )
    body = _problem(resp, 422)
    assert body["errors"][0]["field"] == "body.strategy.recalibrate"
    assert body["errors"][0]["type"] == "dataset_required"
    # the same limits are published in the strategies' JSON Schema
    listed = service.client.get("/v1/strategies").json()["items"]
    props = next(e for e in listed if e["name"] == "filter")["parameters"]["properties"]
    assert (props["steps"]["minimum"], props["steps"]["maximum"]) == (1, 20)
    assert "recalibrate" in props


def test_tf_keras_saved_model_upload_is_pruned(service: Service, tmp_path: Path) -> None:
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "tf_keras_conv_bn.zip"
    model = service.upload(fixture)
    details = service.wait_inspection(model["id"])["inspection"]["details"]
    assert details["has_keras_graph"] is True
    resp = service.client.post(
        "/v1/jobs",
        json={"model_id": model["id"], "strategy": {"name": "filter", "ratio": 0.5}},
    )
    assert resp.status_code == 202, resp.text
    job = service.wait_job(resp.json()["id"])
    assert job["status"] == "succeeded", job
    resp = service.client.get(f"/v1/jobs/{job['id']}/model")
    zipfile.ZipFile(io.BytesIO(resp.content)).extractall(tmp_path / "sm")
    fn = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    x = tf.zeros((2, 10, 10, 1))
    assert fn(image=x)["logits"].shape == (2, 4)
    resp = service.client.get(f"/v1/jobs/{job['id']}/model", params={"format": "keras"})
    (tmp_path / "m.keras").write_bytes(resp.content)
    pruned = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert [pruned.get_layer(n).filters for n in ("conv0", "conv1")] == [4, 8]

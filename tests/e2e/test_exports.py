"""LiteRT exports over HTTP: a job asks for them, the downloads run in the interpreter.

The float32 file must compute what the pruned TF model computes; the int8 file must pick the
same class on nearly every held-out sample; the report measures both on LiteRT against the
dense original in the same job.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from tests.digits import RESCALE, digits_classifier
from tests.e2e.conftest import Service

pytestmark = pytest.mark.e2e

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def digits_mlp(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An 8x8-digits MLP whose 64-wide input tiles by 4 and by 16, and a slice of the data."""
    return digits_classifier(
        tmp_path_factory.mktemp("exports"), n_train=600, n_test=200, hidden=64, epochs=20
    )


def _problem(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    return resp.json()  # type: ignore[no-any-return]


def _run_litert(model_path: Path, x: np.ndarray) -> np.ndarray:
    """Run every sample through the LiteRT interpreter (batch 1), quantising if the file's
    input is integer."""
    interp = Interpreter(model_path=str(model_path))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    rows = []
    for sample in x:
        value = sample[None].astype(np.float32)
        if np.issubdtype(inp["dtype"], np.integer):
            scale, zero = inp["quantization"]
            value = np.round(value / scale + zero).clip(-128, 127).astype(inp["dtype"])
        interp.set_tensor(inp["index"], value)
        interp.invoke()
        y = interp.get_tensor(out["index"]).astype(np.float32)
        if np.issubdtype(out["dtype"], np.integer):
            scale, zero = out["quantization"]
            y = (y - zero) * scale
        rows.append(y[0])
    return np.stack(rows)


def test_a_job_exports_litert_files_that_run_in_the_interpreter(
    service: Service, digits_mlp: dict, tmp_path: Path
) -> None:
    resp = service.client.post(
        "/v1/datasets", files={"file": ("d.npz", digits_mlp["npz"].read_bytes())}
    )
    assert resp.status_code == 201, resp.text
    dataset_id = resp.json()["id"]
    model = service.upload(digits_mlp["model"])
    assert service.wait_inspection(model["id"])["inspection"]["status"] == "succeeded"

    # before any job: which layers could run faster, and how
    paths = service.client.get(f"/v1/models/{model['id']}/speedup-paths")
    assert paths.status_code == 200, paths.text
    assert paths.json()["model_id"] == model["id"]
    assert {row["layer"] for row in paths.json()["layers"]} >= {"hidden", "logits"}

    resp = service.client.post(
        "/v1/jobs",
        json={
            "model_id": model["id"],
            "dataset_id": dataset_id,
            "strategy": {"name": "magnitude", "sparsity": 0.8, "block": "1x4"},
            "preprocessing": {"rescale": RESCALE},
            "exports": ["tflite", "tflite_int8"],
        },
    )
    assert resp.status_code == 202, resp.text
    job = service.wait_job(resp.json()["id"], timeout=240)
    assert job["status"] == "succeeded", job
    assert job["links"]["model_tflite"].endswith("/model?format=tflite")
    assert job["links"]["model_tflite_int8"].endswith("/model?format=tflite_int8")

    report = service.client.get(f"/v1/jobs/{job['id']}/report").json()
    exports = job["metrics"]["exports"]
    assert exports["tflite"]["status"] == exports["tflite_int8"]["status"] == "succeeded"
    assert report["exports"]["tflite"]["size_bytes"] < report["before"]["litert"]["size_bytes"]
    assert {row["layer"] for row in report["eligibility"]["layers"]} >= {"hidden", "logits"}
    litert = [k for k in report["speedup"] if k.startswith("litert")]
    assert litert, report["speedup"]
    for runtime in litert:
        s = report["speedup"][runtime]["batch_1"]
        assert s["ci95"][0] <= s["median"] <= s["ci95"][1] and s["runs"] >= 1

    resp = service.client.get(f"/v1/jobs/{job['id']}/model")
    (tmp_path / "pruned.keras").write_bytes(resp.content)
    pruned = keras.saving.load_model(tmp_path / "pruned.keras", safe_mode=True)
    x = digits_mlp["x_test"]
    expected = np.asarray(pruned.predict(x, verbose=0))

    files = {}
    for fmt in ("tflite", "tflite_int8"):
        resp = service.client.get(f"/v1/jobs/{job['id']}/model", params={"format": fmt})
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-disposition"].endswith('.tflite"')
        assert resp.headers["etag"] == f'"{hashlib.sha256(resp.content).hexdigest()}"'
        files[fmt] = tmp_path / f"model-{fmt}.tflite"
        files[fmt].write_bytes(resp.content)

    np.testing.assert_allclose(_run_litert(files["tflite"], x), expected, atol=1e-4, rtol=1e-4)
    int8 = _run_litert(files["tflite_int8"], x)
    top1 = float(np.mean(np.argmax(int8, -1) == np.argmax(expected, -1)))
    assert top1 >= 0.98, top1


def test_formats_a_job_did_not_produce_or_cannot_be_asked_for(
    service: Service, model_files: dict
) -> None:
    model = service.upload(model_files["keras"])
    bad = service.client.post(
        "/v1/jobs",
        json={"model_id": model["id"], "strategy": {"name": "magnitude", "sparsity": 0.5},
              "exports": ["onnx"]},
    )  # fmt: skip
    assert _problem(bad, 422)["errors"][0]["field"] == "body.exports.0"
    bad = service.client.post(
        "/v1/jobs",
        json={"model_id": model["id"],
              "strategy": {"name": "magnitude", "sparsity": 0.5, "block": "3x3"}},
    )  # fmt: skip
    assert _problem(bad, 422)["errors"][0]["field"].startswith("body.strategy.block")

    resp = service.client.post(
        "/v1/jobs",
        json={"model_id": model["id"], "strategy": {"name": "magnitude", "sparsity": 0.5}},
    )
    job = service.wait_job(resp.json()["id"])
    assert job["status"] == "succeeded", job
    missing = _problem(
        service.client.get(f"/v1/jobs/{job['id']}/model", params={"format": "tflite"}), 409
    )
    assert missing["available_formats"] == ["keras"]
    assert '"exports": ["tflite"]' in missing["detail"]
    bad = service.client.get(f"/v1/jobs/{job['id']}/model", params={"format": "onnx"})
    assert _problem(bad, 422)["errors"][0]["field"] == "query.format"

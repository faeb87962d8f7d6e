"""Hostile requests the API itself must answer with a 4xx problem+json, never a 5xx: ids
that reach other Redis keys, out-of-range numbers, odd multipart framing, array headers
that overflow, non-finite JSON numbers. An API of its own, with no worker on its queue
(jobs stay queued), and a model whose saved_model.pb is framing only (it is never loaded).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import struct
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import storage
from tests.e2e.conftest import REPO, Service, api_without_worker, new_key
from tests.tiny_models import zip_dir

pytestmark = pytest.mark.e2e

PB = b"\x08\x01\x12\x00"  # a minimal well-formed SavedModel protobuf
JSON_CAP = 64 * 1024


@pytest.fixture(scope="module")
def lone_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Same Redis, key space and store as the tests, its own queue with no worker on it."""
    env = {"PRUNEKIT_MAX_JSON_BYTES": str(JSON_CAP)}
    yield from api_without_worker(tmp_path_factory.mktemp("lone-api"), "lone", env)


@pytest.fixture
def tenant_b(lone_api: Service) -> Service:
    return lone_api.as_key(new_key(f"tenant-b-{uuid.uuid4().hex[:8]}"))


def frame_only_model() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("m/saved_model.pb", PB)
    return buf.getvalue()


def queued_job(svc: Service) -> dict[str, Any]:
    resp = svc.client.post("/v1/models", files={"file": ("m.zip", frame_only_model())})
    assert resp.status_code == 201, resp.text
    job = svc.client.post(
        "/v1/jobs",
        json={"model_id": resp.json()["id"], "strategy": {"name": "magnitude", "sparsity": 0.5}},
    )
    assert job.status_code == 202, job.text
    return job.json()  # type: ignore[no-any-return]


def assert_problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body: dict[str, Any] = resp.json()
    assert body["status"] == status and body["detail"]
    return body


def error_fields(resp: httpx.Response) -> list[str]:
    return [e["field"] for e in assert_problem(resp, 422)["errors"]]


def _requests(job_ref: str) -> list[tuple[str, str]]:
    return [
        ("GET", f"/v1/jobs/{job_ref}"),
        ("DELETE", f"/v1/jobs/{job_ref}"),
        ("POST", f"/v1/jobs/{job_ref}/cancel"),
        ("GET", f"/v1/jobs/{job_ref}/events"),
    ]


@pytest.mark.parametrize("suffix", [":events", ":lease", ""])
def test_ids_reaching_other_redis_keys_answer_like_unknown_ids(
    lone_api: Service, tenant_b: Service, suffix: str
) -> None:
    job = queued_job(lone_api)
    lone_api.client.post(f"/v1/jobs/{job['id']}/cancel")  # its events list now has entries
    unknown = uuid.uuid4().hex
    for caller in (tenant_b, lone_api):
        if caller is lone_api and not suffix:
            continue  # the owner's own job is found, of course
        for (method, path), (_, unknown_path) in zip(
            _requests(job["id"] + suffix), _requests(unknown), strict=True
        ):
            resp = caller.client.request(method, path)
            body = assert_problem(resp, 404)
            twin = assert_problem(caller.client.request(method, unknown_path), 404)
            # nothing tells the caller that a job with that id exists
            assert body["type"] == twin["type"] and body["title"] == twin["title"]
            assert body["detail"].replace(job["id"] + suffix, "ID") == twin["detail"].replace(
                unknown, "ID"
            )
    assert lone_api.client.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"


def test_events_start_out_of_range_is_422(lone_api: Service) -> None:
    job = queued_job(lone_api)
    for start in ("1e20", str(10**20), "-1"):
        resp = lone_api.client.get(f"/v1/jobs/{job['id']}/events", params={"start": start})
        assert error_fields(resp) == ["query.start"], start
    far = lone_api.client.get(f"/v1/jobs/{job['id']}/events", params={"start": 2**31})
    assert far.status_code == 200 and far.json()["items"] == []


def test_multipart_boundary_over_the_rfc_limit_is_400(lone_api: Service) -> None:
    for length in (71, 257, 1000):
        boundary = "b" * length
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="m.zip"\r\n'
            f"\r\n{PB.decode('latin-1')}\r\n--{boundary}--\r\n"
        ).encode("latin-1")
        for path in ("/v1/models", "/v1/datasets"):
            resp = lone_api.client.post(
                path,
                content=body,
                headers={"content-type": f"multipart/form-data; boundary={boundary}"},
            )
            problem = assert_problem(resp, 400)
            assert problem["type"].endswith("malformed-multipart") and "70" in problem["detail"]


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """A .npy header (version 1.0) declaring ``shape``, with no data after it."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    text += " " * (118 - len(text)) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode()


def npz_declaring(x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x_train.npy", npy_header(x_shape))
        zf.writestr("y_train.npy", npy_header(y_shape))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("x_shape", "y_shape", "reason"),
    [
        ((2**64, 8), (2**64,), "too_large_in_memory"),
        ((8, 2**64), (8,), "too_large_in_memory"),
        ((2**61, 8), (2**61,), "too_large_in_memory"),  # int64 would wrap this one to 0
        ((-5, 8), (-5,), "bad_shape"),
    ],
)
def test_npz_header_dimensions_that_overflow_are_422(
    lone_api: Service, x_shape: tuple[int, ...], y_shape: tuple[int, ...], reason: str
) -> None:
    resp = lone_api.client.post(
        "/v1/datasets", files={"file": ("d.npz", npz_declaring(x_shape, y_shape))}
    )
    problem = assert_problem(resp, 422)
    assert problem["reason"] == reason, problem


def _job_body(**extra: Any) -> dict[str, Any]:
    return {"model_id": "m-none", "strategy": {"name": "magnitude", "sparsity": 0.5}, **extra}


@pytest.mark.parametrize("literal", ["Infinity", "-Infinity", "NaN", "1e999"])
def test_non_finite_json_numbers_are_422_naming_the_field(lone_api: Service, literal: str) -> None:
    raw = (
        '{"model_id": "m-none", "strategy": {"name": "magnitude", "sparsity": LIT},'
        ' "preprocessing": {"rescale": LIT}}'
    ).replace("LIT", literal)
    resp = lone_api.client.post(
        "/v1/jobs", content=raw, headers={"content-type": "application/json"}
    )
    assert error_fields(resp) == ["body.strategy.sparsity", "body.preprocessing.rescale"]


@pytest.mark.parametrize(
    ("strategy", "field"),
    [
        ({"name": "gradual", "sparsity": 0.5, "begin_step": 10**12}, "begin_step"),
        (
            {"name": "slimming", "ratio": 0.5, "sparsity_learning_rate": 1e300},
            "sparsity_learning_rate",
        ),
    ],
)
def test_strategy_numbers_have_upper_bounds(
    lone_api: Service, strategy: dict[str, Any], field: str
) -> None:
    resp = lone_api.client.post("/v1/jobs", json={"model_id": "m-none", "strategy": strategy})
    assert error_fields(resp) == [f"body.strategy.{field}"]


# ---------------------------------------------------------------- with a real worker
def test_downloads_follow_rfc_9110(service: Service, model_files: dict[str, Path]) -> None:
    model = service.upload(model_files["keras"])
    job = service.client.post(
        "/v1/jobs",
        json={"model_id": model["id"], "strategy": {"name": "magnitude", "sparsity": 0.5}},
    ).json()
    assert service.wait_job(job["id"])["status"] == "succeeded"
    url = f"/v1/jobs/{job['id']}/model"
    full = service.client.get(url)
    assert full.status_code == 200
    etag, size = full.headers["etag"], len(full.content)
    assert etag == f'"{hashlib.sha256(full.content).hexdigest()}"'

    for header in ("*", etag, f"W/{etag}", f'"stale", W/{etag}', f'"x" ,{etag}'):
        resp = service.client.get(url, headers={"If-None-Match": header})
        assert resp.status_code == 304 and resp.headers["etag"] == etag, header
        assert resp.content == b""
    for header in ('"stale"', 'W/"stale"', etag[:-2] + '"'):
        assert service.client.get(url, headers={"If-None-Match": header}).status_code == 200

    part = service.client.get(url, headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == full.content[:10]
    resp = service.client.get(url, headers={"Range": f"bytes={size}-{size + 10}"})
    problem = assert_problem(resp, 416)
    assert resp.headers["content-range"] == f"bytes */{size}"
    assert problem["type"].endswith("range-not-satisfiable") and problem["size_bytes"] == size
    for bad in ("bytes=abc", "items=0-1", "bytes=9-2", "bytes"):
        resp = service.client.get(url, headers={"Range": bad})
        assert assert_problem(resp, 400)["type"].endswith("malformed-range"), bad
    # If-Range naming another version: the whole file, whatever the range says
    whole = service.client.get(url, headers={"Range": f"bytes={size}-", "If-Range": '"old"'})
    assert whole.status_code == 200 and whole.content == full.content


def test_server_paths_never_reach_clients(
    service: Service, model_files: dict[str, Path], tmp_path: Path
) -> None:
    sm = tmp_path / "sm"
    shutil.copytree(model_files["saved_model_dir"], sm)
    shutil.rmtree(sm / "variables")  # TensorFlow's error names the file it looked for
    model = service.upload(zip_dir(sm, tmp_path / "no_variables.zip", top="m"))
    inspected = service.wait_inspection(model["id"])
    message = inspected["inspection"]["error"]["message"]
    resp = service.client.post(
        "/v1/jobs",
        json={"model_id": model["id"], "strategy": {"name": "magnitude", "sparsity": 0.5}},
    )
    detail = assert_problem(resp, 422)["detail"]
    home = str(storage.artifacts_root().parent)
    for text in (message, detail, resp.text):
        assert home not in text and str(REPO) not in text, text
        assert "$PRUNEKIT_HOME/artifacts/models/" in text, text  # where it was, relatively

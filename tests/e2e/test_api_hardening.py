"""Hostile requests the API itself must answer with a 4xx problem+json, never a 5xx: ids
that reach other Redis keys, out-of-range numbers, odd multipart framing, array headers
that overflow, non-finite JSON numbers. An API of its own, with no worker on its queue
(jobs stay queued), and a model whose saved_model.pb is framing only (it is never loaded).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import struct
import tarfile
import threading
import time
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from core import storage
from tests.e2e.conftest import REPO, Service, api_without_worker, new_key
from tests.polling import wait_until
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
        # headers that declare more bytes than their member holds (in Python ints: int64
        # would wrap 2**61 x 8 to 0) are refused before anything is loaded
        ((2**64, 8), (2**64,), "truncated_array"),
        ((8, 2**64), (8,), "truncated_array"),
        ((2**61, 8), (2**61,), "truncated_array"),
        ((-5, 8), (-5,), "bad_shape"),
        ((0, 8), (0,), "empty_split"),
    ],
)
def test_npz_header_dimensions_that_overflow_or_are_empty_are_422(
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


# ---------------------------------------------------------------- a responsive API
def test_json_bodies_over_the_cap_are_413(lone_api: Service) -> None:
    body = {**_job_body(), "exclude": ["x" * 1000] * (JSON_CAP // 1000 + 10)}
    resp = lone_api.client.post("/v1/jobs", json=body)
    problem = assert_problem(resp, 413)
    assert problem["limit_bytes"] == JSON_CAP and problem["setting"] == "PRUNEKIT_MAX_JSON_BYTES"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams
        yield b'{"model_id": "m-none", "exclude": ['
        for _ in range(JSON_CAP // 1000 + 10):
            yield b'"' + b"x" * 1000 + b'",'
        yield b'"x"]}'

    resp = lone_api.client.post(
        "/v1/jobs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert assert_problem(resp, 413)["limit_bytes"] == JSON_CAP


def gzip_bomb_tar(mib: int) -> bytes:
    """A .tar.gz SavedModel with one member of ``mib`` MiB of zeros (about 1000x)."""
    pb = tarfile.TarInfo("m/saved_model.pb")
    pb.size = len(PB)
    data = tarfile.TarInfo("m/variables/variables.data-00000-of-00001")
    data.size = mib << 20
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    out = [deflate.compress(pb.tobuf() + PB.ljust(512, b"\0") + data.tobuf())]
    zeros = b"\0" * (1 << 20)
    out += [deflate.compress(zeros) for _ in range(mib)]
    return b"".join([*out, deflate.compress(b"\0" * 1024), deflate.flush()])


def pax_header_bomb(mib: int) -> bytes:
    """A .tar.gz whose first block is a pax extended header of ``mib`` MiB: that size is not
    a member's, so only counting the inflated bytes as they come can stop it."""
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = mib << 20
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    record = b"9 a=bcde\n" * ((1 << 20) // 9) + b"\n" * ((1 << 20) % 9)
    out = [deflate.compress(info.tobuf(tarfile.USTAR_FORMAT))]
    out += [deflate.compress(record) for _ in range(mib)]
    return b"".join([*out, deflate.flush()])


def many_entries_zip(entries: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("m/saved_model.pb", PB)
        for i in range(entries):
            zf.writestr(f"m/assets/{i}", b"")
    return buf.getvalue()


@pytest.mark.timing
def test_healthz_answers_within_200ms_while_bombs_are_refused(lone_api: Service) -> None:
    bombs = {
        "tar.gz of zeros": (gzip_bomb_tar(400), "compression_ratio"),
        "pax header": (pax_header_bomb(300), "compression_ratio"),
        "150k zip entries": (many_entries_zip(150_000), "too_many_members"),
    }
    refusals: list[tuple[str, int, str | None]] = []

    def upload(name: str, data: bytes, rounds: int = 3) -> None:
        with httpx.Client(base_url=lone_api.base_url, timeout=60) as client:
            for _ in range(rounds):
                resp = client.post(
                    "/v1/models",
                    files={"file": ("bomb", data)},
                    headers={"Authorization": f"Bearer {lone_api.api_key}"},
                )
                refusals.append((name, resp.status_code, resp.json().get("rule")))

    threads = [threading.Thread(target=upload, args=(n, d)) for n, (d, _) in bombs.items()]
    latencies = []
    with httpx.Client(base_url=lone_api.base_url, timeout=10) as probe:
        probe.get("/healthz")  # connected before the clock starts
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            started = time.perf_counter()
            assert probe.get("/healthz").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.02)
    for t in threads:
        t.join()
    assert len(latencies) >= 5 and max(latencies) < 0.2, sorted(latencies)[-5:]
    expected = {(name, 422, rule) for name, (_, rule) in bombs.items()}
    assert set(refusals) == expected and len(refusals) == 3 * len(bombs), refusals


@pytest.fixture(scope="module")
def guarded_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """An API with short read deadlines and a small connection limit."""
    env = {
        "PRUNEKIT_HEADER_TIMEOUT": "1",
        "PRUNEKIT_BODY_TIMEOUT": "1",
        "PRUNEKIT_MAX_CONNECTIONS": "4",
    }
    yield from api_without_worker(tmp_path_factory.mktemp("guarded-api"), "guarded", env)


def _open(svc: Service) -> socket.socket:
    host, port = svc.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    return sock


def _seconds_until_closed(sock: socket.socket, drip: bytes | None, limit: float = 8) -> float:
    """Keep sending ``drip`` every 0.2 s (if any) until the server closes the connection."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < limit:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except OSError:
            return time.monotonic() - started
        if drip:
            try:
                sock.sendall(drip)
            except OSError:
                return time.monotonic() - started
    return float("inf")


def test_slow_clients_are_cut_off(guarded_api: Service) -> None:
    with _open(guarded_api) as sock:  # headers that never end, one more every 0.2 s
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert _seconds_until_closed(sock, b"X-Slow: 1\r\n") < 2.5
    with _open(guarded_api) as sock:  # a declared body of 1 MB, 100 bytes sent
        sock.sendall(
            b"POST /v1/models HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {guarded_api.api_key}\r\n".encode()
            + b"Content-Type: multipart/form-data; boundary=b\r\n"
            + b"Content-Length: 1000000\r\n\r\n"
            + b"--b\r\n".ljust(100, b"x")
        )
        assert _seconds_until_closed(sock, None) < 2.5
    assert guarded_api.client.get("/healthz").status_code == 200  # and it still serves


def test_connections_beyond_the_limit_get_503(guarded_api: Service) -> None:
    idle = [_open(guarded_api) for _ in range(4)]
    try:
        for sock in idle:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # holding a connection each

        def healthz() -> int:  # a fresh connection each time, as the first one was
            return httpx.get(f"{guarded_api.base_url}/healthz", timeout=5).status_code

        wait_until(lambda: healthz() == 503, 2, what="503 beyond the connection limit")
        # their header deadline (1 s) passes: they are closed, and requests pass again
        wait_until(lambda: healthz() == 200, 5, what="200 once the idle ones are cut off")
    finally:
        for sock in idle:
            sock.close()


# ---------------------------------------------------------------- per-tenant limits
QUOTA_BYTES = 5000


@pytest.fixture(scope="module")
def quota_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    env = {
        "PRUNEKIT_TENANT_MAX_ACTIVE_JOBS": "2",
        "PRUNEKIT_TENANT_MAX_STORED_BYTES": str(QUOTA_BYTES),
    }
    yield from api_without_worker(tmp_path_factory.mktemp("quota-api"), "quota", env)


def fresh_tenant(svc: Service) -> Service:
    return svc.as_key(new_key(f"quota-{uuid.uuid4().hex[:8]}"))


def padded_model(size: int) -> bytes:
    """A frame-only SavedModel zip of exactly ``size`` bytes (an incompressible asset)."""

    def build(pad: int) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr("m/saved_model.pb", PB)
            zf.writestr("m/assets/pad", os.urandom(pad))
        return buf.getvalue()

    return build(size - (len(build(0))))


def _submit(svc: Service, model_id: str) -> httpx.Response:
    return svc.client.post(
        "/v1/jobs", json={"model_id": model_id, "strategy": {"name": "magnitude", "sparsity": 0.5}}
    )


def test_unfinished_jobs_per_tenant_are_limited(quota_api: Service) -> None:
    tenant = fresh_tenant(quota_api)
    model = tenant.client.post("/v1/models", files={"file": ("m.zip", frame_only_model())})
    model_id = model.json()["id"]
    first, second = (_submit(tenant, model_id) for _ in range(2))
    assert first.status_code == second.status_code == 202
    resp = _submit(tenant, model_id)
    problem = assert_problem(resp, 429)
    assert problem["limit"] == 2 and problem["setting"] == "PRUNEKIT_TENANT_MAX_ACTIVE_JOBS"
    assert int(resp.headers["retry-after"]) > 0
    other = fresh_tenant(quota_api)  # another tenant's jobs do not count
    theirs = other.client.post("/v1/models", files={"file": ("m.zip", frame_only_model())})
    assert _submit(other, theirs.json()["id"]).status_code == 202
    tenant.client.post(f"/v1/jobs/{first.json()['id']}/cancel")  # a finished job frees a slot
    assert _submit(tenant, model_id).status_code == 202
    assert _submit(tenant, model_id).status_code == 429

    racing = fresh_tenant(quota_api)  # concurrent submissions cannot overshoot
    model_id = racing.client.post(
        "/v1/models", files={"file": ("m.zip", frame_only_model())}
    ).json()["id"]
    codes: list[int] = []

    def submit() -> None:
        with httpx.Client(base_url=racing.base_url, timeout=30, headers=racing.client.headers) as c:
            codes.append(
                c.post(
                    "/v1/jobs",
                    json={"model_id": model_id, "strategy": {"name": "magnitude", "sparsity": 0.5}},
                ).status_code
            )

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [202, 202, 429, 429, 429, 429]


def test_stored_bytes_per_tenant_are_limited(quota_api: Service) -> None:
    tenant = fresh_tenant(quota_api)
    first = tenant.client.post("/v1/models", files={"file": ("a.zip", padded_model(3000))})
    assert first.status_code == 201, first.text
    assert first.json()["size_bytes"] == 3000
    resp = tenant.client.post("/v1/models", files={"file": ("b.zip", padded_model(3000))})
    problem = assert_problem(resp, 413)
    assert problem["setting"] == "PRUNEKIT_TENANT_MAX_STORED_BYTES"
    assert problem["limit_bytes"] == QUOTA_BYTES and problem["used_bytes"] == 3000
    datasets = tenant.client.post(
        "/v1/datasets", files={"file": ("d.npz", os.urandom(2500))}
    )  # datasets count against the same quota
    assert assert_problem(datasets, 413)["setting"] == "PRUNEKIT_TENANT_MAX_STORED_BYTES"
    small = tenant.client.post("/v1/models", files={"file": ("c.zip", padded_model(1500))})
    assert small.status_code == 201  # what is left is still usable
    full = tenant.client.post("/v1/models", files={"file": ("d.zip", padded_model(600))})
    assert assert_problem(full, 413)["used_bytes"] == 4500
    assert (
        fresh_tenant(quota_api)
        .client.post("/v1/models", files={"file": ("e.zip", padded_model(3000))})
        .status_code
        == 201
    )  # other tenants have their own
    assert tenant.client.delete(f"/v1/models/{first.json()['id']}").status_code == 204
    again = tenant.client.post("/v1/models", files={"file": ("b.zip", padded_model(3000))})
    assert again.status_code == 201, again.text


def test_readyz_reports_the_durability_of_its_redis(service: Service) -> None:
    for _ in range(5):  # a worker's ping reply can be slow under CPU load
        resp = service.client.get("/readyz")
        if resp.status_code == 200:
            break
    ready = resp.json()
    config = redis.Redis.from_url(os.environ["PRUNEKIT_REDIS_URL"], decode_responses=True)
    appendonly = config.config_get("appendonly")["appendonly"] == "yes"
    save = config.config_get("save")["save"].strip()
    mode = "+".join(k for k, on in (("aof", appendonly), ("rdb", bool(save))) if on) or "none"
    assert ready["durability"] == {
        "mode": mode,
        "durable": mode != "none",
        "appendonly": appendonly,
        "save": save,
    }

"""An API with a tiny upload cap and no worker on its queue (jobs stay queued), and a
property-based run of the OpenAPI schema (schemathesis) that must never see a 5xx."""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from core import storage
from core.jobs import store as job_store
from core.records import new_id, now_iso
from tests.e2e.conftest import Service, api_without_worker, new_key

pytestmark = pytest.mark.e2e

CAP = 100_000


@pytest.fixture(scope="module")
def idle_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Same Redis, key space and store as the tests, but its own queue, no worker on it."""
    env = {"PRUNEKIT_MAX_UPLOAD_BYTES": str(CAP)}
    yield from api_without_worker(tmp_path_factory.mktemp("idle-api"), "idle", env)


def _scratch() -> list[Path]:
    tmp = storage.artifacts_root().parent / "tmp"
    return sorted(tmp.glob("upload-*")) if tmp.exists() else []


def test_upload_over_the_cap_is_413_without_buffering(idle_api: Service) -> None:
    big = os.urandom(3 * CAP)
    resp = idle_api.client.post("/v1/models", files={"file": ("big.keras", big)})
    assert resp.status_code == 413, resp.text
    assert (
        resp.json()["limit_bytes"] == CAP and "PRUNEKIT_MAX_UPLOAD_BYTES" in resp.json()["detail"]
    )

    # no Content-Length (chunked): refused while streaming, once the cap is crossed
    boundary = uuid.uuid4().hex

    def chunks() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.zip"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        for _ in range(50):
            yield os.urandom(CAP // 10)
        yield f"\r\n--{boundary}--\r\n".encode()

    resp = idle_api.client.post(
        "/v1/models",
        content=chunks(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert resp.status_code == 413, resp.text
    assert _scratch() == []  # the partial upload was removed


def test_queued_job_cancel_and_delete_rules(idle_api: Service, model_files: dict) -> None:
    model = idle_api.upload(model_files["keras"])
    job = idle_api.client.post(
        "/v1/jobs",
        json={"model_id": model["id"], "strategy": {"name": "magnitude", "sparsity": 0.5}},
    ).json()
    assert job["status"] == "queued"
    busy = idle_api.client.delete(f"/v1/models/{model['id']}")
    assert busy.status_code == 409 and busy.json()["jobs"] == [job["id"]]
    assert idle_api.client.delete(f"/v1/jobs/{job['id']}").status_code == 409  # unfinished

    resp = idle_api.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert resp.status_code == 202 and resp.json()["status"] == "cancelled"
    assert resp.json()["finished_at"]
    assert idle_api.client.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    assert idle_api.client.delete(f"/v1/models/{model['id']}").status_code == 204
    assert idle_api.client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert not storage.model_dir(model["id"]).exists()


def test_unknown_block_shape_is_422_naming_the_field(idle_api: Service) -> None:
    catalogue = idle_api.client.get("/v1/strategies").json()["items"]
    magnitude = next(s for s in catalogue if s["name"] == "magnitude")
    assert "litert_int8" in magnitude["parameters"]["properties"]["block"]["description"]
    resp = idle_api.client.post(
        "/v1/jobs",
        json={
            "model_id": "m-none",
            "strategy": {"name": "magnitude", "sparsity": 0.9, "block": "3x3"},
        },
    )
    assert resp.status_code == 422, resp.text
    assert [e["field"] for e in resp.json()["errors"]] == ["body.strategy.block"]


def test_a_bad_latency_budget_is_422_naming_the_field(idle_api: Service) -> None:
    resp = idle_api.client.post(
        "/v1/jobs",
        json={
            "model_id": "m-none",
            "strategy": {"name": "magnitude", "sparsity": 0.9},
            "measure": {"latency_batch_sizes": [1, 32], "latency_budget_s": 0},
        },
    )
    assert resp.status_code == 422, resp.text
    assert [e["field"] for e in resp.json()["errors"]] == ["body.measure.latency_budget_s"]


# ---------------------------------------------------------------- schemathesis, in process
from app.main import app  # noqa: E402  (the test env is set by tests/conftest.py)

# /readyz answers 503 by design when no worker is up (none is, in this process)
schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path="/readyz")
# invalid values too, and parameters the schema does not declare
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], allow_extra_parameters=True
)


@functools.cache
def _key() -> str:
    """The fuzzing tenant's key, made on first use: importing this module needs no Redis."""
    return new_key("schemathesis")


# header fuzzing: headers the API interprets, with hostile values (printable, no leading
# space: the test client refuses others before they are sent)
HEADER_VALUES = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300).map(str.strip),
    st.sampled_from(
        ["*", 'W/"x"', "bytes=0-", "bytes=9-2", "bytes=99999999999999999999-", "bytes=-0",
         "multipart/form-data; boundary=" + "b" * 300, "application/json; charset=x", "0"]
    ),
)  # fmt: skip
HOSTILE_HEADERS = st.dictionaries(
    st.sampled_from(
        ["Range", "If-Range", "If-None-Match", "Content-Type", "Accept", "Idempotency-Key",
         "Transfer-Encoding", "Expect", "X-Forwarded-For"]
    ),
    HEADER_VALUES,
    max_size=3,
)  # fmt: skip


@functools.cache
def _seeded() -> str:
    """A (cancelled) job of another tenant, recorded as the API records one: its events list
    is a Redis key that ``<id>:events`` would reach."""
    record = {
        "id": new_id(), "tenant": "schemathesis-other", "model_id": new_id(),
        "dataset_id": None, "status": "queued", "spec": {}, "attempts": 0,
        "progress": {"phase": "queued", "fraction": 0.0}, "created_at": now_iso(),
    }  # fmt: skip
    job_store.create(record)
    job_store.transition(record["id"], "cancelled", {"queued"})  # finished: nothing picks it up
    return str(record["id"])


# path fuzzing: ids that are not ids (other Redis keys, traversal, huge, odd characters);
# the seeded job is recorded when the first example is drawn, in a test, not at import
HOSTILE_IDS = st.one_of(
    st.sampled_from([":events", ":lease"]).map(lambda key: _seeded() + key),  # other key types
    st.sampled_from(["", "..", ".%2e", "%00", "a" * 5000, "*", "jobs:active"]).map(
        lambda raw: raw or _seeded()
    ),
    st.uuids().map(lambda u: f"{u.hex}:events"),
    st.text(max_size=80),
)


def _call(case: schemathesis.Case, extra_headers: dict[str, str] | None = None) -> None:
    headers = {**(extra_headers or {}), "Authorization": f"Bearer {_key()}"}
    named = {k.lower() for k in (case.headers or {})} | {k.lower() for k in headers}
    if "idempotency-key" in named:
        headers["Idempotency-Key"] = uuid.uuid4().hex  # avoid replays across examples
    case.call_and_validate(headers=headers, checks=[not_a_server_error])


FUZZ_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,  # no .hypothesis folder in the repo
)


@schema.parametrize()
@FUZZ_SETTINGS
def test_openapi_property_based_no_5xx(case: schemathesis.Case) -> None:
    _call(case)


# The same operations with hostile headers and path ids drawn in (a schema of its own: custom
# strategies cannot be combined with the schema's examples, so that phase is off there).
hostile_schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path="/readyz")
hostile_schema.config.phases.update(phases=["fuzzing"])


@hostile_schema.parametrize()
@hostile_schema.given(extra_headers=HOSTILE_HEADERS, hostile_id=HOSTILE_IDS)
@FUZZ_SETTINGS
def test_openapi_hostile_headers_and_path_ids_no_5xx(
    case: schemathesis.Case, extra_headers: dict[str, str], hostile_id: str
) -> None:
    if case.path_parameters:
        case.path_parameters = {name: hostile_id for name in case.path_parameters}
    _call(case, extra_headers)

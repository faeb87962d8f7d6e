"""Signed webhooks and deadlines against the real service: the shared worker and API (which
may deliver to loopback, with short timeouts and backoff: ``SERVICE_ENV`` in conftest.py),
a tenant of their own, a local receiver on 127.0.0.1, and an API without that allowance for
the refusals."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tests.e2e.conftest import (
    SERVICE_ENV,
    WEBHOOK_TIMEOUT_S,
    Service,
    api_without_worker,
    new_key,
)

pytestmark = pytest.mark.e2e

TIMEOUT_S = WEBHOOK_TIMEOUT_S
HOOK_ENV = SERVICE_ENV


class Receiver:
    """An HTTP receiver: ``/ok`` answers 204, ``/flaky`` 500 the first time then 204,
    ``/hang`` holds the request for 10 s. It keeps what it got, with the arrival time."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.flaky_failed = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                receiver.received.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body,
                     "at": time.time()}
                )  # fmt: skip
                if self.path.startswith("/hang"):
                    time.sleep(10)  # a receiver that hangs: what the test is about
                    code = 204
                elif self.path.startswith("/flaky") and not receiver.flaky_failed:
                    receiver.flaky_failed = True
                    code = 500
                else:
                    code = 204
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def at(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.received if r["path"] == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def hooked(service: Service) -> tuple[Service, str]:
    """The shared service, seen by a tenant of this module's own; and its signing secret."""
    svc = service.as_key(new_key(f"webhooks-{time.time_ns()}"))
    resp = svc.client.post("/v1/webhook-secret")
    assert resp.status_code == 201, resp.text
    secret = resp.json()["secret"]
    assert secret.startswith("whsec_")
    return svc, secret


@pytest.fixture(scope="module")
def refusing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """An API as operators run it by default: no private webhook addresses."""
    yield from api_without_worker(tmp_path_factory.mktemp("refusing-logs"), "refusing", {})


def _submit(svc: Service, model_id: str, hook: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    body: dict[str, Any] = {
        "model_id": model_id,
        "strategy": {"name": "magnitude", "sparsity": 0.5},
    }
    if hook is not None:
        body["webhook"] = hook
    resp = svc.client.post("/v1/jobs", json=body, headers=headers or {})
    assert resp.status_code == 202, resp.text
    return resp.json()  # type: ignore[no-any-return]


def _settled(svc: Service, job_id: str, timeout: float = 60) -> list[dict[str, Any]]:
    """The job's deliveries once none is pending or retrying."""
    deadline = time.monotonic() + timeout
    while True:
        items = svc.client.get(f"/v1/jobs/{job_id}/webhooks").json()["items"]
        if items and all(d["status"] in ("delivered", "failed", "superseded") for d in items):
            return items  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, items
        time.sleep(0.2)


@pytest.fixture(scope="module")
def tiny_model(hooked: tuple[Service, str], model_files: dict[str, Path]) -> str:
    svc, _ = hooked
    model = svc.upload(model_files["keras"])
    assert svc.wait_inspection(model["id"])["inspection"]["status"] == "succeeded"
    return str(model["id"])


def test_signed_deliveries_with_a_retry_after_500(
    hooked: tuple[Service, str], receiver: Receiver, tiny_model: str
) -> None:
    svc, secret = hooked
    hook = {"url": f"{receiver.base}/flaky", "events": ["running", "succeeded"]}
    job = _submit(svc, tiny_model, hook)
    assert job["webhook"] == hook
    assert svc.wait_job(job["id"])["status"] == "succeeded"
    deliveries = _settled(svc, job["id"])
    assert [d["event"] for d in deliveries] == ["running", "succeeded"]  # only those asked
    assert all(d["status"] == "delivered" for d in deliveries)
    codes = sorted([a["status_code"] for a in d["attempts"]] for d in deliveries)
    assert codes == [[204], [500, 204]], codes  # one retried after the 500
    retried = next(d for d in deliveries if len(d["attempts"]) == 2)
    first, second = retried["attempts"]
    assert first["error"] == "the receiver answered 500" and first["next_retry_at"]
    assert second["error"] is None and second["next_retry_at"] is None
    assert datetime.fromisoformat(second["at"]) >= datetime.fromisoformat(first["next_retry_at"])
    assert all(a["latency_ms"] >= 0 for d in deliveries for a in d["attempts"])

    got = receiver.at("/flaky")
    assert len(got) == 3
    verifier = Webhook(secret)
    for request in got:  # every request carries a valid Standard Webhooks signature
        payload = verifier.verify(request["body"], request["headers"])
        assert payload["data"]["id"] == job["id"]
        assert request["headers"]["webhook-id"] in {d["id"] for d in deliveries}
    ids = [r["headers"]["webhook-id"] for r in got]
    assert ids.count(retried["id"]) == 2  # a retry keeps its id: receivers dedupe on it
    types = [json.loads(r["body"])["type"] for r in got]
    assert set(types) == {"job.running", "job.succeeded"}
    final = json.loads(next(r["body"] for r in got if '"job.succeeded"' in r["body"]))
    assert final["data"]["status"] == "succeeded"
    assert final["data"]["links"]["model"] == f"/v1/jobs/{job['id']}/model"
    # another tenant sees neither the job nor its deliveries
    stranger = svc.as_key(new_key(f"stranger-{time.time_ns()}"))
    assert stranger.client.get(f"/v1/jobs/{job['id']}/webhooks").status_code == 404
    # a signature over another body is refused
    with pytest.raises(Exception, match="signature"):
        verifier.verify(got[0]["body"].replace(job["id"], "x" * 32), got[0]["headers"])


@pytest.mark.timing
def test_hanging_receiver_never_holds_up_the_job(
    hooked: tuple[Service, str], receiver: Receiver, tiny_model: str
) -> None:
    svc, _ = hooked
    hook = {"url": f"{receiver.base}/hang", "events": ["running", "succeeded"]}
    job = _submit(svc, tiny_model, hook)
    done = svc.wait_job(job["id"], timeout=60)
    assert done["status"] == "succeeded"  # its deliveries run in tasks of their own
    deliveries = _settled(svc, job["id"], timeout=60)
    assert [d["event"] for d in deliveries] == ["running", "succeeded"]
    for delivery in deliveries:  # every attempt cut off at the timeout (the receiver holds
        # each request 10 s), then given up after the last one
        assert delivery["status"] == "failed"
        assert len(delivery["attempts"]) == int(HOOK_ENV["PRUNEKIT_WEBHOOK_MAX_ATTEMPTS"])
        for attempt in delivery["attempts"]:
            assert attempt["status_code"] is None and "timed out" in attempt["error"]
            assert attempt["latency_ms"] < (TIMEOUT_S + 2) * 1000
        assert delivery["attempts"][-1]["next_retry_at"] is None


def test_cancel_after_ends_cancelled_with_its_webhook(
    hooked: tuple[Service, str], receiver: Receiver, big_model_zip: Path
) -> None:
    svc, secret = hooked
    model = svc.upload(big_model_zip)
    assert svc.wait_inspection(model["id"])["inspection"]["status"] == "succeeded"
    hook = {"url": f"{receiver.base}/ok-deadline", "events": ["progress", "cancelled"]}
    job = _submit(svc, model["id"], hook, headers={"Cancel-After": "1"})
    assert job["deadline_seconds"] == 1 and job["deadline_at"]
    done = svc.wait_job(job["id"], timeout=90)
    assert done["status"] == "cancelled", done
    assert done["error"]["reason"] == "deadline_exceeded"
    events = svc.client.get(f"/v1/jobs/{job['id']}/events").json()["items"]
    assert "deadline of 1.0 s" in events[-1]["message"]
    assert events[-1]["data"]["status"] == "cancelled"
    deliveries = _settled(svc, job["id"])
    assert deliveries[-1]["event"] == "cancelled" and deliveries[-1]["status"] == "delivered"
    progress = [d for d in deliveries if d["event"] == "progress"]
    if any(e["type"] == "phase" for e in events):  # it reached a phase before its deadline
        # (under load the deadline can pass between starting and the first phase check)
        assert progress and all(d["payload"]["data"]["status"] == "running" for d in progress)
    stamps = [datetime.fromisoformat(d["payload"]["timestamp"]).timestamp() for d in progress]
    interval = float(HOOK_ENV["PRUNEKIT_WEBHOOK_PROGRESS_INTERVAL"])
    assert all(b - a >= interval * 0.9 for a, b in itertools.pairwise(stamps))
    got = receiver.at("/ok-deadline")
    last = Webhook(secret).verify(got[-1]["body"], got[-1]["headers"])
    assert last["type"] == "job.cancelled"
    assert last["data"]["error"]["reason"] == "deadline_exceeded"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/hook", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("http://127.0.0.1:9/hook", "non-public"),
        ("http://169.254.169.254/latest/meta-data", "non-public"),
        ("http://10.0.0.7/hook", "non-public"),
        ("http://[::1]:8080/hook", "non-public"),
    ],
)
def test_refused_webhook_urls_are_422_naming_the_field(
    refusing: Service, url: str, why: str
) -> None:
    resp = refusing.client.post(
        "/v1/jobs",
        json={"model_id": "m", "strategy": {"name": "magnitude"}, "webhook": {"url": url}},
    )
    assert resp.status_code == 422, resp.text
    fields = {e["field"]: e["message"] for e in resp.json()["errors"]}
    assert why in fields["body.webhook.url"], fields


def test_bad_cancel_after_and_missing_secret(
    refusing: Service, hooked: tuple[Service, str], model_files: dict[str, Path]
) -> None:
    resp = refusing.client.post(
        "/v1/jobs",
        json={"model_id": "m", "strategy": {"name": "magnitude"}},
        headers={"Cancel-After": "soon"},
    )
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "header.Cancel-After"
    bad = refusing.client.post(
        "/v1/jobs",
        json={"model_id": "m", "strategy": {"name": "magnitude"}, "deadline_seconds": 0},
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "body.deadline_seconds"
    anon = httpx.Client(base_url=refusing.base_url, timeout=30)
    for method, path in (("POST", "/v1/webhook-secret"), ("GET", "/v1/jobs/x/webhooks")):
        assert anon.request(method, path).status_code == 401
    # a tenant without a signing secret cannot ask for (unsigned) deliveries
    svc, _ = hooked
    fresh = svc.as_key(new_key(f"no-secret-{time.time_ns()}"))
    model = fresh.upload(model_files["keras"])
    resp = fresh.client.post(
        "/v1/jobs",
        json={"model_id": model["id"], "strategy": {"name": "magnitude", "sparsity": 0.5},
              "webhook": {"url": "http://127.0.0.1:9/x"}},
    )  # fmt: skip
    assert resp.status_code == 409, resp.text
    assert "POST /v1/webhook-secret" in resp.json()["detail"]


def test_tenant_default_webhook(
    hooked: tuple[Service, str], receiver: Receiver, model_files: dict[str, Path]
) -> None:
    svc, _ = hooked
    team = svc.as_key(new_key(f"default-hook-{time.time_ns()}"))
    assert team.client.get("/v1/webhook").status_code == 404
    hook = {"url": f"{receiver.base}/ok-default", "events": ["succeeded"]}
    assert team.client.put("/v1/webhook", json=hook).status_code == 409  # no secret yet
    secret = team.client.post("/v1/webhook-secret").json()["secret"]
    assert team.client.put("/v1/webhook", json=hook).json() == hook
    assert team.client.get("/v1/webhook").json() == hook
    model = team.upload(model_files["keras"])
    by_default = _submit(team, model["id"])
    assert by_default["webhook"] == hook  # the default, kept on the job
    resp = team.client.post(
        "/v1/jobs",
        json={"model_id": model["id"], "strategy": {"name": "magnitude", "sparsity": 0.5},
              "webhook": None},
    )  # fmt: skip
    opted_out = resp.json()
    assert resp.status_code == 202 and opted_out["webhook"] is None
    for job in (by_default, opted_out):
        assert team.wait_job(job["id"])["status"] == "succeeded"
    (delivery,) = _settled(team, by_default["id"])
    assert delivery["event"] == "succeeded" and delivery["status"] == "delivered"
    assert team.client.get(f"/v1/jobs/{opted_out['id']}/webhooks").json()["items"] == []
    got = receiver.at("/ok-default")
    assert (
        Webhook(secret).verify(got[-1]["body"], got[-1]["headers"])["data"]["id"]
        == (by_default["id"])
    )
    assert team.client.delete("/v1/webhook").status_code == 204
    assert team.client.get("/v1/webhook").status_code == 404

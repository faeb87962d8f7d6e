"""Webhook signing, the SSRF rule, backoff, and deadline parsing, without a service."""

from __future__ import annotations

import json
import time

import pytest
from standardwebhooks import Webhook

from app.jobs.cancel_after import parse_cancel_after
from app.problems import Problem
from core.jobs import deadlines
from core.records import now_iso
from core.webhooks import store
from core.webhooks.addresses import AddressRefusedError, resolve_checked
from tests.polling import wait_until
from tests.unit.test_auth_and_lifecycle import _job
from worker.webhooks import retry_delay, signed_headers


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("90", 90.0), ("1.5", 1.5), ("5m", 300.0), ("1h30m", 5400.0), ("500ms", 0.5), ("2m3s", 123.0)],
)
def test_cancel_after_values(raw: str, seconds: float) -> None:
    assert parse_cancel_after(raw) == pytest.approx(seconds)


@pytest.mark.parametrize("raw", ["0", "-3", "abc", "5x", "m5", "1h 30m", "9999999999", ""])
def test_cancel_after_refused_names_the_header(raw: str) -> None:
    with pytest.raises(Problem) as info:
        parse_cancel_after(raw)
    assert info.value.status == 422
    assert "header.Cancel-After" in json.dumps(info.value.body(None))


def test_deadline_expiry() -> None:
    fields = deadlines.job_fields(2.0)
    record = {"id": "x", **fields}
    assert not deadlines.expired(record)
    assert deadlines.expired(record, now=time.time() + 2.5)
    assert not deadlines.expired({"id": "y"})  # no deadline, never expires


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
    ],
)
def test_private_addresses_refused_unless_allowed(url: str) -> None:
    with pytest.raises(AddressRefusedError, match="non-public"):
        resolve_checked(url, allow_private=False)
    assert resolve_checked(url, allow_private=True)


def test_public_literal_and_bad_scheme() -> None:
    assert resolve_checked("https://8.8.8.8/hook", allow_private=False) == "8.8.8.8"
    with pytest.raises(AddressRefusedError, match="http or https"):
        resolve_checked("ftp://8.8.8.8/x", allow_private=True)


def test_backoff_doubles_with_jitter_and_cap() -> None:
    for attempt, full in ((1, 2.0), (2, 4.0), (3, 8.0), (10, 30.0)):
        delays = [retry_delay(attempt, base_s=2.0, max_s=30.0) for _ in range(200)]
        assert all(full * 0.5 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full * 0.1  # jittered, not constant


@pytest.mark.redis
def test_signature_verifies_with_each_secret_after_rotation() -> None:
    tenant = f"t-{time.time_ns()}"
    first = store.rotate_secret(tenant)["secret"]
    second = store.rotate_secret(tenant)
    assert second["previous_valid_until"] is not None
    assert store.signing_secrets(tenant) == [second["secret"], first]
    body = json.dumps({"type": "job.succeeded", "data": {"id": "j"}})
    headers = signed_headers("msg_1", body, store.signing_secrets(tenant))
    for secret in (second["secret"], first):  # a receiver with either secret accepts it
        assert Webhook(secret).verify(body, headers)["data"]["id"] == "j"
    with pytest.raises(Exception, match="signature"):
        Webhook(store.rotate_secret(f"{tenant}-other")["secret"]).verify(body, headers)
    tampered = body.replace('"j"', '"k"')
    with pytest.raises(Exception, match="signature"):
        Webhook(first).verify(tampered, headers)


@pytest.mark.redis
def test_reconciler_cancels_queued_and_stops_running_past_deadline() -> None:
    from core.jobs import store as jobs
    from core.lifecycle import reconciler

    past = deadlines.job_fields(0.001)
    wait_until(lambda: deadlines.expired(past), 5, interval=0.001, what="a 1 ms deadline")
    queued = _job("queued", **past)
    running = _job("running", started_at=past["deadline_at"], **past)
    future = _job("queued", **deadlines.job_fields(3600))
    jobs.acquire_lease(running["id"], "someone", 30)  # a live worker holds it
    try:
        report = reconciler.reconcile_once()
        assert queued["id"] in report.cancelled and running["id"] in report.cancelled
        assert future["id"] not in report.cancelled
        done = jobs.get(queued["id"])
        assert done["status"] == "cancelled" and done["error"]["reason"] == "deadline_exceeded"
        assert "deadline" in jobs.events(queued["id"])[-1]["message"]
        assert jobs.status(running["id"]) == "cancelling"  # its worker stops at the next check
        assert "deadline" in jobs.events(running["id"])[-1]["message"]
    finally:
        jobs.release_lease(running["id"], "someone")
        for j in (queued, running, future):
            jobs.transition(j["id"], "cancelled", {"queued", "running", "cancelling"})


@pytest.mark.redis
def test_reporter_raises_past_the_deadline() -> None:
    from worker.reporter import JobReporter

    job = _job("running", **deadlines.job_fields(0.3))
    reporter = JobReporter(job["id"])
    reporter.check_cancelled()  # before the deadline: nothing
    wait_until(lambda: deadlines.expired(job), 5, what="the job's 0.3 s deadline")
    with pytest.raises(deadlines.DeadlineExceededError, match=r"deadline of 0\.3 s"):
        reporter.check_cancelled()


def test_post_goes_to_the_checked_address_with_the_urls_host() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from worker.webhooks import post_pinned

    seen: list[tuple[str, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            seen.append((self.headers["host"], self.path, body))
            self.send_response(202)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.handle_request, daemon=True).start()
    port = server.server_address[1]
    try:
        url = f"http://receiver.invalid:{port}/hooks?x=1"  # never resolved: pinned instead
        assert post_pinned(url, "127.0.0.1", {"webhook-id": "m"}, '{"a":1}') == 202
    finally:
        server.server_close()
    assert seen == [(f"receiver.invalid:{port}", "/hooks?x=1", b'{"a":1}')]


@pytest.mark.redis
def test_delivery_rechecks_the_address_and_gives_up_on_a_refusal() -> None:
    """A stored delivery whose host now resolves to loopback (this process does not allow
    private addresses) is refused at delivery time: one attempt, logged, no retry."""
    from worker.webhooks import deliver_webhook_task

    job = _job("succeeded", finished_at="2020-01-01T00:00:00.000Z")
    tenant = job["tenant"]
    store.rotate_secret(tenant)
    delivery = {
        "id": "msg_recheck", "seq": 0, "tenant": tenant, "event": "succeeded",
        "url": "http://localhost:9/hook", "status": "pending", "created_at": "t",
        "attempts": [], "payload": {"type": "job.succeeded", "data": {"id": job["id"]}},
    }  # fmt: skip
    store.put_delivery(job["id"], delivery)
    deliver_webhook_task(job["id"], "msg_recheck")
    (done,) = store.deliveries(job["id"])
    assert done["status"] == "failed"
    (attempt,) = done["attempts"]
    assert attempt["error"].startswith("refused:") and "non-public" in attempt["error"]
    assert attempt["status_code"] is None and attempt["next_retry_at"] is None
    deliver_webhook_task(job["id"], "msg_recheck")  # a redelivered message changes nothing
    assert len(store.deliveries(job["id"])[0]["attempts"]) == 1


@pytest.mark.redis
def test_an_unresolved_host_is_retried_a_refused_address_is_not() -> None:
    from worker.webhooks import _attempt

    tenant = f"t-{time.time_ns()}"
    store.rotate_secret(tenant)
    base = {"id": "msg_x", "tenant": tenant, "payload": {"type": "job.running"}}
    status, error, retryable = _attempt({**base, "url": "http://receiver.invalid/hook"})
    assert status is None and "does not resolve" in error and retryable
    status, error, retryable = _attempt({**base, "url": "http://10.0.0.1/hook"})
    assert status is None and error.startswith("refused:") and not retryable


def _pending(job: dict, event: str, msg_id: str) -> None:
    delivery = {
        "id": msg_id, "seq": 0, "tenant": job["tenant"], "event": event,
        "url": "http://localhost:9/hook", "status": "pending", "created_at": "t",
        "attempts": [], "payload": {"type": f"job.{event}", "data": {"id": job["id"]}},
    }  # fmt: skip
    store.put_delivery(job["id"], delivery)


@pytest.mark.redis
def test_progress_of_a_job_that_has_ended_is_superseded_not_sent() -> None:
    """A progress delivery that runs after its job ended is marked ``superseded`` with no
    attempt (the URL here would be refused, so a POST try would log one), and a progress
    event of a job no longer running is not even recorded."""
    from core.webhooks import dispatch
    from worker.webhooks import deliver_webhook_task

    job = _job(
        "cancelled", finished_at=now_iso(), webhook={"url": "http://x", "events": ["progress"]}
    )
    store.rotate_secret(job["tenant"])
    _pending(job, "progress", "msg_stale")
    deliver_webhook_task(job["id"], "msg_stale")
    (done,) = store.deliveries(job["id"])
    assert done["status"] == "superseded" and done["attempts"] == []
    assert not store.progress_in_flight(job["id"])  # its in-flight mark is cleared
    dispatch.progress(job["id"])
    assert len(store.deliveries(job["id"])) == 1


@pytest.mark.redis
def test_a_final_event_waits_for_a_progress_post_under_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker import webhooks

    job = _job("succeeded", finished_at=now_iso())
    store.rotate_secret(job["tenant"])
    _pending(job, "succeeded", "msg_final")
    requeued: list[dict] = []
    monkeypatch.setattr(
        webhooks.deliver_webhook_task, "apply_async", lambda **kw: requeued.append(kw)
    )
    store.begin_progress_post(job["id"], "msg_progress", ttl_s=30)
    webhooks.deliver_webhook_task(job["id"], "msg_final")
    (waiting,) = store.deliveries(job["id"])
    assert waiting["status"] == "pending" and waiting["attempts"] == []  # not tried yet
    assert requeued == [
        {"args": [job["id"], "msg_final"], "countdown": webhooks.IN_FLIGHT_RECHECK_S,
         "queue": webhooks.get_settings().queue}
    ]  # fmt: skip
    store.end_progress_post(job["id"], "msg_progress")
    webhooks.deliver_webhook_task(job["id"], "msg_final")  # now it goes (and is refused)
    (tried,) = store.deliveries(job["id"])
    assert tried["status"] == "failed" and len(tried["attempts"]) == 1
    assert len(requeued) == 1

"""``/metrics`` (Prometheus), JSON logs and ``X-Request-ID``, through the running service."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.embedded_redis import free_port
from core.observability import counters
from tests.e2e.conftest import Service, api_without_worker

pytestmark = pytest.mark.e2e


def scrape(svc: Service) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """family name -> {(sample name, sorted labels): value}, fetched without an API key."""
    resp = httpx.get(f"{svc.base_url}/metrics", timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return {
        family.name: {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        for family in text_string_to_metric_families(resp.text)
    }


def value(families: dict, family: str, sample: str, **labels: str) -> float:
    return families[family].get((sample, tuple(sorted(labels.items()))), 0.0)


def test_metrics_parse_and_move_with_a_job(service: Service, model_files: dict[str, Path]) -> None:
    model = service.upload(model_files["keras"])
    service.wait_inspection(model["id"])
    before = scrape(service)
    for name in (
        "prunekit_http_requests", "prunekit_http_request_duration_seconds", "prunekit_jobs",
        "prunekit_queue_depth", "prunekit_job_duration_seconds", "prunekit_jobs_retried",
        "prunekit_worker_resident_memory_bytes", "prunekit_webhook_deliveries",
    ):  # fmt: skip
        assert name in before, name

    body = {"model_id": model["id"], "strategy": {"name": "magnitude", "sparsity": 0.5}}
    job = service.client.post("/v1/jobs", json=body).json()
    assert service.wait_job(job["id"])["status"] == "succeeded"
    after = scrape(service)

    post = {"method": "POST", "route": "/v1/jobs", "status": "202"}
    assert value(after, "prunekit_http_requests", "prunekit_http_requests_total", **post) == (
        value(before, "prunekit_http_requests", "prunekit_http_requests_total", **post) + 1
    )
    get_job = {"method": "GET", "route": "/v1/jobs/{job_id}", "status": "200"}
    assert value(
        after, "prunekit_http_request_duration_seconds",
        "prunekit_http_request_duration_seconds_count", **get_job,
    ) >= 1  # fmt: skip
    # jobs by status and durations count every job of the service: other tests' jobs may
    # finish meanwhile (the service is shared), so this job moves them by at least one
    succeeded = ("prunekit_jobs", "prunekit_jobs", {"status": "succeeded"})
    assert (
        value(after, *succeeded[:2], **succeeded[2])
        >= value(before, *succeeded[:2], **succeeded[2]) + 1
    )
    durations = ("prunekit_job_duration_seconds", "prunekit_job_duration_seconds_count")
    assert value(after, *durations, strategy="magnitude") >= (
        value(before, *durations, strategy="magnitude") + 1
    )
    assert value(after, "prunekit_job_duration_seconds", "prunekit_job_duration_seconds_sum",
                 strategy="magnitude") > 0  # fmt: skip
    rss = after["prunekit_worker_resident_memory_bytes"]
    assert rss and all(v > 10 * 2**20 for v in rss.values())  # a TF worker: tens of MiB at least
    assert ("prunekit_queue_depth", (("queue", service_queue()),)) in after["prunekit_queue_depth"]


def service_queue() -> str:
    import os

    return os.environ["PRUNEKIT_QUEUE"]


def test_worker_figures_recorded_in_redis_reach_the_scrape(service: Service) -> None:
    """What a worker process records (here: this test process, as the webhook task would)."""
    before = value(scrape(service), "prunekit_webhook_deliveries",
                   "prunekit_webhook_deliveries_total", outcome="delivered")  # fmt: skip
    counters.record_webhook_delivery("delivered")
    counters.record_webhook_delivery("delivered")
    after = value(scrape(service), "prunekit_webhook_deliveries",
                  "prunekit_webhook_deliveries_total", outcome="delivered")  # fmt: skip
    assert after == before + 2
    retried = ("prunekit_jobs_retried", "prunekit_jobs_retried_total")
    was = value(scrape(service), *retried)
    counters.record_job_retried()
    assert value(scrape(service), *retried) == was + 1


@pytest.fixture(scope="module")
def metrics_off(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    env = {"PRUNEKIT_METRICS": "off"}
    yield from api_without_worker(tmp_path_factory.mktemp("metrics-off"), "metrics-off", env)


def test_metrics_can_be_turned_off(metrics_off: Service) -> None:
    assert httpx.get(f"{metrics_off.base_url}/metrics").status_code == 404


def test_metrics_on_their_own_port(tmp_path_factory: pytest.TempPathFactory) -> None:
    port = free_port()
    env = {"PRUNEKIT_METRICS_PORT": str(port)}
    for svc in api_without_worker(tmp_path_factory.mktemp("metrics-port"), "metrics-port", env):
        assert httpx.get(f"{svc.base_url}/metrics").status_code == 404
        resp = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
        assert resp.status_code == 200
        names = {f.name for f in text_string_to_metric_families(resp.text)}
        assert {"prunekit_jobs", "prunekit_http_requests"} <= names


def _json_lines(path: Path) -> list[dict]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def test_request_id_echoed_and_logged_with_tenant(
    service: Service, model_files: dict[str, Path]
) -> None:
    resp = service.client.get("/v1/jobs", headers={"X-Request-ID": "pipe-42.a"})
    assert resp.headers["x-request-id"] == "pipe-42.a"
    generated = service.client.get("/v1/jobs").headers["x-request-id"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    for hostile in ('a b {"forged": 1}', "x" * 200):  # not a token, or too long: replaced
        echoed = service.client.get("/v1/jobs", headers={"X-Request-ID": hostile})
        assert len(echoed.headers["x-request-id"]) == 32

    model = service.upload(model_files["keras"])
    body = {"model_id": model["id"], "strategy": {"name": "magnitude", "sparsity": 0.5}}
    job = service.client.post("/v1/jobs", json=body, headers={"X-Request-ID": "submit-7"}).json()
    assert service.wait_job(job["id"])["status"] == "succeeded"

    deadline = time.monotonic() + 10
    while True:
        api_lines = _json_lines(service.log_dir / "api.log")
        worker_lines = _json_lines(service.log_dir / "worker.log")
        mine = [x for x in api_lines if x.get("request_id") == "pipe-42.a"]
        phases = [x for x in worker_lines if x.get("job_id") == job["id"]]
        if (mine and any(p["phase"] == "succeeded" for p in phases)) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert mine[0] | {"ts": None, "duration_ms": None} == {
        "ts": None, "kind": "request", "method": "GET", "route": "/v1/jobs", "path": "/v1/jobs",
        "status": 200, "duration_ms": None, "tenant": "tests", "request_id": "pipe-42.a",
    }  # fmt: skip
    assert mine[0]["duration_ms"] >= 0
    assert phases[0]["phase"] == "running"
    assert phases[-1]["phase"] == "succeeded"
    assert len(phases) >= 4  # running, the engine's phases, succeeded
    assert all(p["tenant"] == "tests" and p["request_id"] == "submit-7" for p in phases)

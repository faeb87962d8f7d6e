"""Pipelines over HTTP: live events (SSE)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Service

pytestmark = pytest.mark.e2e


def read_sse(service: Service, job_id: str, **headers: str) -> list[dict[str, Any]]:
    """Every SSE message of a job's event stream until the server ends it."""
    messages: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with service.client.stream(
        "GET", f"/v1/jobs/{job_id}/events",
        headers={"Accept": "text/event-stream", **headers}, timeout=120,
    ) as resp:  # fmt: skip
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if not line:
                if "data" in current:
                    messages.append(current)
                current = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(":")
                current[field] = value.removeprefix(" ")
    return messages


def test_sse_streams_every_event_in_order_and_resumes(
    service: Service, model_files: dict[str, Path]
) -> None:
    model = service.upload(model_files["keras"])
    resp = service.client.post(
        "/v1/jobs", json={"model_id": model["id"], "strategy": {"name": "magnitude",
                                                                "sparsity": 0.5}},
    )  # fmt: skip
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]

    streamed = read_sse(service, job_id)  # opened while the job is queued or running
    polled = service.client.get(f"/v1/jobs/{job_id}/events").json()["items"]
    assert [int(m["id"]) for m in streamed] == list(range(len(polled)))
    assert [json.loads(m["data"]) for m in streamed] == polled
    assert [m["event"] for m in streamed] == [e["type"] for e in polled]
    assert polled[-1]["type"] == "status" and polled[-1]["data"]["status"] == "succeeded"

    resumed = read_sse(service, job_id, **{"Last-Event-ID": "1"})
    assert [json.loads(m["data"]) for m in resumed] == polled[2:]
    assert read_sse(service, job_id, **{"Last-Event-ID": str(len(polled) - 1)}) == []


def test_sse_on_unknown_job_is_404(service: Service) -> None:
    resp = service.client.get("/v1/jobs/nope/events", headers={"Accept": "text/event-stream"})
    assert resp.status_code == 404

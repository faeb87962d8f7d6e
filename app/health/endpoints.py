"""``/healthz`` (the process is up) and ``/readyz`` (Redis answers and a worker does)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app import durability
from app.problems import Problem
from core.queue import workers_answering
from core.redis import get_redis

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:  # on the event loop: it needs no thread to answer
    return {"status": "ok"}


@router.get("/readyz")
def readyz() -> dict[str, Any]:
    try:
        get_redis().ping()
    except Exception as exc:
        raise Problem(503, "not-ready", "Not ready", f"Redis is not reachable: {exc}") from exc
    workers = workers_answering(timeout=2.0)
    if not workers:
        raise Problem(503, "not-ready", "Not ready", "no worker answered a ping within 2 s")
    return {
        "status": "ready",
        "redis": "ok",
        "durability": durability.report(get_redis()),
        "workers": workers,
    }

"""``/healthz`` (the process is up) and ``/readyz`` (Redis answers, the artifact store
accepts this server's credentials, and a worker answers)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app import durability
from app.problems import Problem
from core import artifacts
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
    try:
        artifacts.check()
    except Exception as exc:  # wrong credentials, no bucket, store down: say which
        raise Problem(
            503, "not-ready", "Not ready",
            f"the artifact store ({artifacts.describe()}) is not usable: {exc}",
        ) from exc  # fmt: skip
    workers = workers_answering(timeout=2.0)
    if not workers:
        raise Problem(503, "not-ready", "Not ready", "no worker answered a ping within 2 s")
    return {
        "status": "ready",
        "redis": "ok",
        "artifacts": artifacts.describe(),
        "durability": durability.report(get_redis()),
        "workers": workers,
    }

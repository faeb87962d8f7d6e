"""``/healthz`` (the process is up) and ``/readyz`` (Redis answers, the artifact store
accepts this server's credentials, and a worker answers)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app import durability
from app.problems import Problem
from core import artifacts
from core.queue import served_queues
from core.redis import get_redis
from core.routing import RESOURCES, choose
from core.settings import get_settings

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
    served = served_queues(timeout=2.0, max_age_s=0)  # a live worker answers with its queues
    workers = sorted({w for names in served.values() for w in names})
    if not workers:
        raise Problem(503, "not-ready", "Not ready", "no worker answered a ping within 2 s")
    base = get_settings().queue
    if not served.get(base):
        raise Problem(
            503, "not-ready", "Not ready",
            f"no worker consumes the queue {base!r} (one-shot jobs, inspections, webhooks): "
            f"start one with -Q {base}; workers answering: {', '.join(workers)}",
        )  # fmt: skip
    routes = {r: choose(base, r == "gpu", None, served).as_dict() for r in RESOURCES}
    return {
        "status": "ready",
        "redis": "ok",
        "artifacts": artifacts.describe(),
        "durability": durability.report(get_redis()),
        "workers": workers,
        "queues": served,
        # where a job that trains (gpu) and a one-shot job (cpu) go now, and why
        "routing": routes,
    }

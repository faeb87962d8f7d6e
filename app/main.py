"""The FastAPI application: routers and problem+json error handling."""

from __future__ import annotations

import logging

from fastapi import Depends, FastAPI

from app import problems
from app.auth.tenancy import current_principal
from app.datasets.endpoints import router as datasets_router
from app.health.endpoints import router as health_router
from app.jobs.endpoints import router as jobs_router
from app.models.endpoints import router as models_router
from app.observability import metrics
from app.observability.requests import RequestTelemetry
from app.strategies.endpoints import router as strategies_router
from app.ui.endpoints import router as ui_router
from app.webhooks.endpoints import router as webhooks_router
from prunekit import __version__


def create_app() -> FastAPI:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = FastAPI(
        title="prunekit",
        version=__version__,
        description="Upload a TensorFlow model, prune it on a worker, download the result.",
        lifespan=metrics.lifespan,  # PRUNEKIT_METRICS_PORT: /metrics on its own port
    )
    problems.install(app)
    app.add_middleware(RequestTelemetry)  # X-Request-ID, JSON request log, request metrics
    app.include_router(health_router)  # /healthz and /readyz stay open
    if metrics.enabled() and metrics.separate_port() is None:
        app.include_router(metrics.router)  # /metrics, no key
    app.include_router(ui_router)  # /ui: the dashboard's static files; its data needs a key
    routers = (models_router, datasets_router, jobs_router, strategies_router, webhooks_router)
    for router in routers:
        app.include_router(router, dependencies=[Depends(current_principal)])  # a key each
    return app


app = create_app()

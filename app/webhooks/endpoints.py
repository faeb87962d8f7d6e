"""HTTP endpoints for webhooks: the signing secret and a job's delivery log."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.auth.tenancy import Principal, current_principal
from app.jobs import service as jobs
from app.json_body import JSONBodyRoute
from app.webhooks import service
from app.webhooks.schemas import Deliveries, WebhookSecret

router = APIRouter(prefix="/v1", route_class=JSONBodyRoute, tags=["webhooks"])


@router.post("/webhook-secret", status_code=201, response_model=WebhookSecret)
def rotate_webhook_secret(principal: Principal = Depends(current_principal)) -> WebhookSecret:
    """Create or rotate the tenant's signing secret; it is shown only in this answer. After a
    rotation, deliveries also carry a signature made with the previous secret for 24 h."""
    return WebhookSecret.model_validate(service.rotate_secret(principal.tenant))


@router.get("/jobs/{job_id}/webhooks", response_model=Deliveries)
def job_webhooks(job_id: str, principal: Principal = Depends(current_principal)) -> Deliveries:
    """Every delivery of the job's webhook, oldest first, with each attempt: status code,
    latency, error, and when the next retry is due."""
    jobs.get_or_404(job_id, principal.tenant)
    return Deliveries.model_validate({"job_id": job_id, "items": service.deliveries(job_id)})

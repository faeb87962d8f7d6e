"""HTTP endpoints for webhooks: the signing secret and a job's delivery log."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from app.auth.tenancy import Principal, current_principal
from app.jobs import service as jobs
from app.json_body import JSONBodyRoute
from app.webhooks import service
from app.webhooks.schemas import Deliveries, WebhookOut, WebhookSecret, WebhookSpec

router = APIRouter(prefix="/v1", route_class=JSONBodyRoute, tags=["webhooks"])


@router.post("/webhook-secret", status_code=201, response_model=WebhookSecret)
def rotate_webhook_secret(principal: Principal = Depends(current_principal)) -> WebhookSecret:
    """Create or rotate the tenant's signing secret; it is shown only in this answer. After a
    rotation, deliveries also carry a signature made with the previous secret for 24 h."""
    return WebhookSecret.model_validate(service.rotate_secret(principal.tenant))


@router.put("/webhook", response_model=WebhookOut, responses={409: {}})
def set_default_webhook(
    body: WebhookSpec, principal: Principal = Depends(current_principal)
) -> WebhookOut:
    """The tenant's default webhook, used by jobs whose spec names none (``"webhook": null``
    opts a job out); the job keeps the default as it was at submission."""
    return WebhookOut.model_validate(service.set_default(body, principal.tenant))


@router.get("/webhook", response_model=WebhookOut)
def get_default_webhook(principal: Principal = Depends(current_principal)) -> WebhookOut:
    return WebhookOut.model_validate(service.get_default_or_404(principal.tenant))


@router.delete("/webhook", status_code=204)
def delete_default_webhook(principal: Principal = Depends(current_principal)) -> Response:
    service.delete_default(principal.tenant)
    return Response(status_code=204)


@router.get("/jobs/{job_id}/webhooks", response_model=Deliveries)
def job_webhooks(job_id: str, principal: Principal = Depends(current_principal)) -> Deliveries:
    """Every delivery of the job's webhook, oldest first, with each attempt: status code,
    latency, error, and when the next retry is due."""
    jobs.get_or_404(job_id, principal.tenant)
    return Deliveries.model_validate({"job_id": job_id, "items": service.deliveries(job_id)})

"""Webhooks: the tenant's signing secret, a job's webhook at submission, its delivery log."""

from __future__ import annotations

from typing import Any

from app.problems import Problem
from app.webhooks.schemas import WebhookSpec
from core.records import DeliveryRecord, JobHandling
from core.webhooks import store


def rotate_secret(tenant: str) -> dict[str, Any]:
    return store.rotate_secret(tenant)


def require_secret(tenant: str) -> None:
    """409 when the tenant has no signing secret: a delivery is never sent unsigned."""
    if not store.has_secret(tenant):
        raise Problem(
            409,
            "webhook-secret-missing",
            "No webhook signing secret",
            "deliveries are signed with your tenant's secret, and there is none yet: create "
            "it with POST /v1/webhook-secret (it is shown once), then submit again",
        )


def job_fields(webhook: WebhookSpec | None, named: bool, tenant: str) -> JobHandling:
    """What a job record keeps of its webhook: its own, else (when the spec did not name one;
    an explicit null opts out) the tenant's default, as it is now."""
    if webhook is not None:
        require_secret(tenant)
        return {"webhook": webhook.model_dump(mode="json")}
    default = None if named else store.get_default(tenant)
    return {"webhook": default} if default is not None else {}


def set_default(webhook: WebhookSpec, tenant: str) -> dict[str, Any]:
    require_secret(tenant)
    record = webhook.model_dump(mode="json")
    store.set_default(tenant, record)
    return record


def get_default_or_404(tenant: str) -> dict[str, Any]:
    record = store.get_default(tenant)
    if record is None:
        raise Problem(
            404, "not-found", "No default webhook",
            "this tenant has no default webhook; set one with PUT /v1/webhook",
        )  # fmt: skip
    return record


def delete_default(tenant: str) -> None:
    get_default_or_404(tenant)
    store.set_default(tenant, None)


def deliveries(job_id: str) -> list[DeliveryRecord]:
    return store.deliveries(job_id)

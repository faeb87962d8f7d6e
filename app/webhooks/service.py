"""Webhooks: the tenant's signing secret, a job's webhook at submission, its delivery log."""

from __future__ import annotations

from typing import Any

from app.problems import Problem
from app.webhooks import store
from app.webhooks.schemas import WebhookSpec


def rotate_secret(tenant: str) -> dict[str, Any]:
    return store.rotate_secret(tenant)


def job_fields(webhook: WebhookSpec | None, tenant: str) -> dict[str, Any]:
    """What a job record keeps of its webhook; 409 when the tenant has no signing secret
    (a delivery is never sent unsigned)."""
    if webhook is None:
        return {}
    if not store.has_secret(tenant):
        raise Problem(
            409,
            "webhook-secret-missing",
            "No webhook signing secret",
            "deliveries are signed with your tenant's secret, and there is none yet: create "
            "it with POST /v1/webhook-secret (it is shown once), then submit again",
        )
    return {"webhook": webhook.model_dump(mode="json")}


def deliveries(job_id: str) -> list[dict[str, Any]]:
    return store.deliveries(job_id)

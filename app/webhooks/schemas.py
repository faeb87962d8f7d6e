"""What the API takes and shows for webhooks."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

from core.settings import get_settings
from core.webhooks.addresses import AddressRefusedError, resolve_checked

WebhookEvent = Literal["running", "progress", "succeeded", "failed", "cancelled"]
ALL_EVENTS: tuple[WebhookEvent, ...] = ("running", "progress", "succeeded", "failed", "cancelled")


class WebhookSpec(BaseModel):
    """Where to POST the job's events, and which ones."""

    model_config = ConfigDict(extra="forbid")

    url: HttpUrl = Field(
        description="http(s) URL; its host must resolve to public addresses unless the "
        "operator allows private ones (PRUNEKIT_WEBHOOK_ALLOW_PRIVATE)"
    )
    events: list[WebhookEvent] = Field(
        default_factory=lambda: list(ALL_EVENTS),
        min_length=1,
        max_length=len(ALL_EVENTS),
        description="which events to deliver; `progress` is throttled "
        "(PRUNEKIT_WEBHOOK_PROGRESS_INTERVAL)",
    )

    @field_validator("url")
    @classmethod
    def _public_address(cls, url: HttpUrl) -> HttpUrl:
        if len(str(url)) > 2048:
            raise ValueError("the URL is longer than 2048 characters")
        try:
            resolve_checked(str(url), get_settings().webhook_allow_private)
        except AddressRefusedError as exc:
            raise ValueError(str(exc)) from exc
        return url

    @field_validator("events")
    @classmethod
    def _unique(cls, events: list[WebhookEvent]) -> list[WebhookEvent]:
        return list(dict.fromkeys(events))


class WebhookOut(BaseModel):
    """A stored webhook as shown back (not re-checked: the check runs on input and delivery)."""

    url: str
    events: list[str]


class WebhookSecret(BaseModel):
    """A tenant's signing secret, shown once, when created or rotated."""

    secret: str = Field(description="`whsec_` + base64; verify deliveries with it")
    created_at: str
    previous_valid_until: str | None = Field(
        default=None,
        description="after a rotation, deliveries carry a second signature made with the "
        "previous secret until then",
    )


class DeliveryAttempt(BaseModel):
    attempt: int
    at: str
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    next_retry_at: str | None = None


class Delivery(BaseModel):
    id: str = Field(description="the `webhook-id` header: the same on every retry")
    event: str
    url: str
    status: Literal["pending", "retrying", "delivered", "failed", "superseded"]
    created_at: str
    attempts: list[DeliveryAttempt]
    payload: dict[str, Any]


class Deliveries(BaseModel):
    job_id: str
    items: list[Delivery]

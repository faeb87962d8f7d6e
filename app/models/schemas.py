"""What the API shows of a model."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from app.redaction import redact
from prunekit.formats import ModelFormat


class Inspection(BaseModel):
    """Filled in by a worker that loads the model (the API never does)."""

    status: Literal["pending", "succeeded", "failed"]
    details: dict[str, Any] | None = Field(
        default=None, description="signatures, parameters, prunable weights, layers"
    )
    error: dict[str, Any] | None = None
    attempts: int = Field(default=0, description="how many times a worker started inspecting it")
    finished_at: str | None = None

    @field_validator("error")
    @classmethod
    def _no_server_paths(cls, error: dict[str, Any] | None) -> dict[str, Any] | None:
        return redact(error)


class ModelOut(BaseModel):
    id: str
    filename: str
    format: ModelFormat
    size_bytes: int
    sha256: str
    created_at: str
    metadata: dict[str, str] = Field(
        default_factory=dict, description="labels, set as `?metadata[key]=value` at upload"
    )
    inspection: Inspection


class ModelList(BaseModel):
    items: list[ModelOut]
    next_after: str | None = None

"""HTTP endpoints for models."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from app.models import service
from app.models.schemas import ModelList, ModelOut

router = APIRouter(prefix="/v1/models", tags=["models"])

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "A SavedModel directory as .zip or .tar.gz, "
                            "or a .keras file.",
                        }
                    },
                }
            }
        },
    }
}


@router.post("", status_code=201, response_model=ModelOut, openapi_extra=UPLOAD_BODY)
async def upload_model(request: Request) -> ModelOut:
    """Upload a model. The body is streamed to disk; the format is judged by content."""
    return ModelOut.model_validate(await service.upload(request))


@router.get("", response_model=ModelList)
def list_models(
    limit: int = Query(default=20, ge=1, le=200), after: str | None = None
) -> ModelList:
    items, next_after = service.list_models(limit, after)
    return ModelList(items=[ModelOut.model_validate(i) for i in items], next_after=next_after)


@router.get("/{model_id}", response_model=ModelOut)
def get_model(model_id: str) -> ModelOut:
    return ModelOut.model_validate(service.get_or_404(model_id))

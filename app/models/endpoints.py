"""HTTP endpoints for models."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response

from app import labels
from app.auth.tenancy import Principal, current_principal
from app.json_body import JSONBodyRoute
from app.models import service
from app.models.schemas import ModelList, ModelOut
from app.uploads import multipart_file_body

router = APIRouter(prefix="/v1/models", route_class=JSONBodyRoute, tags=["models"])

UPLOAD_BODY = multipart_file_body("A SavedModel directory as .zip or .tar.gz, or a .keras file.")


@router.post("", status_code=201, response_model=ModelOut, openapi_extra=UPLOAD_BODY)
async def upload_model(
    request: Request, principal: Principal = Depends(current_principal)
) -> ModelOut:
    """Upload a model. The body is streamed to disk; the format is judged by content.
    Labels: ``?metadata[key]=value`` query parameters (see ``app.labels`` for the bounds)."""
    metadata = labels.from_query(request.query_params)
    out = await service.upload(request, principal.tenant, metadata)
    return ModelOut.model_validate(out)


@router.get("", response_model=ModelList)
def list_models(
    request: Request,
    limit: int = Query(default=20, ge=1, le=200),
    after: str | None = None,
    principal: Principal = Depends(current_principal),
) -> ModelList:
    """Models, newest first; ``?metadata[key]=value`` keeps those with that label."""
    items, next_after = service.list_models(
        principal.tenant, limit, after, labels.from_query(request.query_params)
    )
    return ModelList(items=[ModelOut.model_validate(i) for i in items], next_after=next_after)


@router.get("/{model_id}", response_model=ModelOut)
def get_model(model_id: str, principal: Principal = Depends(current_principal)) -> ModelOut:
    return ModelOut.model_validate(service.get_or_404(model_id, principal.tenant))


@router.get("/{model_id}/speedup-paths", responses={409: {}, 422: {}})
def model_speedup_paths(
    model_id: str, principal: Principal = Depends(current_principal)
) -> dict[str, Any]:
    """Before any job runs: per prunable layer, which path can turn sparsity into speed on
    which runtime (block-sparse FC kernels, XNNPACK's sparse 1x1 convolutions, channel
    removal, 2:4 on GPU sparse tensor cores), so a pipeline can choose a strategy."""
    return service.speedup_paths(model_id, principal.tenant)


@router.delete("/{model_id}", status_code=204, responses={409: {"description": "in use"}})
def delete_model(model_id: str, principal: Principal = Depends(current_principal)) -> Response:
    """Delete the model and its files; 409 while an unfinished job uses it."""
    service.delete(model_id, principal.tenant)
    return Response(status_code=204)

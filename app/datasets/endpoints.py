"""HTTP endpoints for datasets."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response

from app import labels
from app.auth.tenancy import Principal, current_principal
from app.datasets import service
from app.datasets.schemas import DatasetList, DatasetOut
from app.json_body import JSONBodyRoute
from app.uploads import multipart_file_body

router = APIRouter(prefix="/v1/datasets", route_class=JSONBodyRoute, tags=["datasets"])

UPLOAD_BODY = multipart_file_body(
    "A NumPy .npz with x_train, y_train and optionally "
    "x_val/y_val, x_test/y_test (numeric arrays, no pickles)."
)


@router.post("", status_code=201, response_model=DatasetOut, openapi_extra=UPLOAD_BODY)
async def upload_dataset(
    request: Request, principal: Principal = Depends(current_principal)
) -> DatasetOut:
    """Upload a dataset. Streamed to disk; only the array headers are read here.
    Labels: ``?metadata[key]=value`` query parameters (see ``app.labels`` for the bounds)."""
    metadata = labels.from_query(request.query_params)
    out = await service.upload(request, principal.tenant, metadata)
    return DatasetOut.model_validate(out)


@router.get("", response_model=DatasetList)
def list_datasets(
    request: Request,
    limit: int = Query(default=20, ge=1, le=200),
    after: str | None = None,
    principal: Principal = Depends(current_principal),
) -> DatasetList:
    """Datasets, newest first; ``?metadata[key]=value`` keeps those with that label."""
    items, next_after = service.list_datasets(
        principal.tenant, limit, after, labels.from_query(request.query_params)
    )
    return DatasetList(items=[DatasetOut.model_validate(i) for i in items], next_after=next_after)


@router.get("/{dataset_id}", response_model=DatasetOut)
def get_dataset(dataset_id: str, principal: Principal = Depends(current_principal)) -> DatasetOut:
    return DatasetOut.model_validate(service.get_or_404(dataset_id, principal.tenant))


@router.delete("/{dataset_id}", status_code=204, responses={409: {"description": "in use"}})
def delete_dataset(dataset_id: str, principal: Principal = Depends(current_principal)) -> Response:
    """Delete the dataset and its file; 409 while an unfinished job uses it."""
    service.delete(dataset_id, principal.tenant)
    return Response(status_code=204)

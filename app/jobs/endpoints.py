"""HTTP endpoints for jobs."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import FileResponse

from app.jobs import service
from app.jobs.schemas import JobCreate, JobEvents, JobList, JobOut

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def _out(record: dict[str, Any]) -> JobOut:
    job_id = record["id"]
    links = {"self": f"/v1/jobs/{job_id}", "events": f"/v1/jobs/{job_id}/events"}
    if record.get("status") == "succeeded":
        links["model"] = f"/v1/jobs/{job_id}/model"
        for fmt in (record.get("artifact") or {}).get("alternates") or {}:
            links[f"model_{fmt}"] = f"/v1/jobs/{job_id}/model?format={fmt}"
    fields = {k: v for k, v in record.items() if k in JobOut.model_fields}
    return JobOut.model_validate({**fields, "links": links})


@router.post("", status_code=202, response_model=JobOut)
def create_job(body: JobCreate, response: Response) -> JobOut:
    """Submit a pruning job. It is recorded, then queued; poll it with ``GET /v1/jobs/{id}``."""
    record = service.create(body)
    response.headers["Location"] = f"/v1/jobs/{record['id']}"
    return _out(record)


@router.get("", response_model=JobList)
def list_jobs(limit: int = Query(default=20, ge=1, le=200), after: str | None = None) -> JobList:
    """Jobs, newest first. Pass ``next_after`` back as ``after`` for the next page."""
    items, next_after = service.list_jobs(limit, after)
    return JobList(items=[_out(i) for i in items], next_after=next_after)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str) -> JobOut:
    return _out(service.get_or_404(job_id))


@router.get("/{job_id}/events", response_model=JobEvents)
def job_events(job_id: str, start: int = Query(default=0, ge=0)) -> JobEvents:
    """The job's ordered log: status changes, phases, messages (``start`` skips seen ones)."""
    return JobEvents.model_validate({"job_id": job_id, "items": service.events(job_id, start)})


@router.get(
    "/{job_id}/model",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, 409: {}, 422: {}},
)
def download_model(
    job_id: str,
    if_none_match: str | None = Header(default=None),
    fmt: Literal["keras", "saved_model"] | None = Query(
        default=None,
        alias="format",
        description="Structured jobs also have the other format: keras or saved_model.",
    ),
) -> Response:
    """The pruned model in the input's format: a `.keras` file or a zipped SavedModel
    (``?format=`` picks the other one for structured strategies)."""
    path, art = service.artifact(job_id, fmt)
    etag = f'"{art["sha256"]}"'
    if if_none_match and etag in [t.strip() for t in if_none_match.split(",")]:
        return Response(status_code=304, headers={"ETag": etag})
    return FileResponse(
        path,
        media_type=art["media_type"],
        filename=art["filename"],
        headers={"ETag": etag},
    )

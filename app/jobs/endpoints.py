"""HTTP endpoints for jobs."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from app import labels
from app.auth.tenancy import Principal, current_principal
from app.downloads import file_download, object_download
from app.jobs import dry_run, live_events, service
from app.jobs.cancel_after import parse_cancel_after
from app.jobs.filters import JobFilter
from app.jobs.schemas import JobCreate, JobEvents, JobList, JobOut, JobReport, JobStatus
from app.json_body import JSONBodyRoute
from core import artifacts
from core.records import JobRecord
from core.settings import get_settings
from prunekit.formats import ArtifactFormat

router = APIRouter(prefix="/v1/jobs", route_class=JSONBodyRoute, tags=["jobs"])


def _out(record: JobRecord) -> JobOut:
    job_id = record["id"]
    links = {"self": f"/v1/jobs/{job_id}", "events": f"/v1/jobs/{job_id}/events"}
    if record.get("status") == "succeeded":
        links["model"] = f"/v1/jobs/{job_id}/model"
        links["report"] = f"/v1/jobs/{job_id}/report"
        artifact = record.get("artifact")
        for fmt in (artifact.get("alternates") or {}) if artifact else {}:
            links[f"model_{fmt}"] = f"/v1/jobs/{job_id}/model?format={fmt}"
    fields = {k: v for k, v in record.items() if k in JobOut.model_fields}
    return JobOut.model_validate({**fields, "links": links})


@router.post(
    "",
    status_code=202,
    response_model=JobOut,
    responses={
        200: {"description": "`validate_only=true`: the dry run's answer, nothing recorded"},
        409: {},
    },
)
def create_job(
    body: JobCreate,
    response: Response,
    validate_only: bool = Query(
        default=False,
        description="dry run: run every check, answer 200 with the resolved spec, the layers "
        "that would be pruned, expected parameters, FLOPs and an estimated duration; no job "
        "is written and nothing is queued",
    ),
    principal: Principal = Depends(current_principal),
    idempotency_key: str | None = Header(
        default=None,
        min_length=1,
        max_length=255,
        description="Retry-safe submission: the same key and body return the same job; "
        "the same key with another body answers 409. Kept 24 h, per tenant.",
    ),
    cancel_after: str | None = Header(
        default=None,
        max_length=32,
        description="Cancel the job when it is unfinished this long after submission: "
        "seconds (`90`) or a duration (`5m`, `1h30m`); sets `deadline_seconds`.",
    ),
) -> JobOut | Response:
    """Submit a pruning job. It is recorded, then queued; poll it with ``GET /v1/jobs/{id}``."""
    if cancel_after is not None:
        seconds = parse_cancel_after(cancel_after)
        body = body.model_copy(update={"deadline_seconds": seconds})
    if validate_only:
        return JSONResponse(dry_run.preview(body, principal.tenant))
    record, replayed = service.create(body, principal.tenant, idempotency_key)
    response.headers["Location"] = f"/v1/jobs/{record['id']}"
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return _out(record)


@router.get("", response_model=JobList)
def list_jobs(
    request: Request,
    limit: int = Query(default=20, ge=1, le=200),
    after: str | None = None,
    status: list[JobStatus] = Query(
        default=[], description="only jobs in these statuses (repeat the parameter for several)"
    ),
    created_after: datetime | None = Query(
        default=None, description="only jobs created after this time (ISO 8601; naive = UTC)"
    ),
    principal: Principal = Depends(current_principal),
) -> JobList:
    """Jobs, newest first. Pass ``next_after`` back as ``after`` for the next page. Filters:
    ``status``, ``created_after`` and labels (``metadata[team]=vision``, all must match); a
    filtered page looks at no more than 5000 jobs and may then be short, with ``next_after``
    set to continue."""
    if created_after is not None and created_after.tzinfo is None:
        created_after = created_after.replace(tzinfo=UTC)
    filters = JobFilter(
        statuses=frozenset(s.value for s in status),
        created_after=created_after,
        metadata=labels.from_query(request.query_params),
    )
    items, next_after = service.list_jobs(principal.tenant, limit, after, filters)
    return JobList(items=[_out(i) for i in items], next_after=next_after)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, principal: Principal = Depends(current_principal)) -> JobOut:
    return _out(service.get_or_404(job_id, principal.tenant))


@router.post("/{job_id}/cancel", status_code=202, response_model=JobOut, responses={409: {}})
def cancel_job(job_id: str, principal: Principal = Depends(current_principal)) -> JobOut:
    """Cancel: a queued job is cancelled at once, a running one goes ``cancelling`` and the
    worker stops at its next check; 409 if the job already finished."""
    return _out(service.cancel(job_id, principal.tenant))


@router.delete("/{job_id}", status_code=204, responses={409: {}})
def delete_job(job_id: str, principal: Principal = Depends(current_principal)) -> Response:
    """Delete a finished job with its events and pruned model; 409 while it is unfinished."""
    service.delete(job_id, principal.tenant)
    return Response(status_code=204)


@router.get(
    "/{job_id}/events",
    response_model=JobEvents,
    responses={200: {"content": {live_events.MEDIA_TYPE: {}}}},
)
def job_events(
    job_id: str,
    start: int = Query(
        default=0, ge=0, le=2**31, description="skip this many events (those already seen)"
    ),
    accept: str | None = Header(default=None),
    last_event_id: str | None = Header(
        default=None, description="SSE resume: the stream starts after this event seq"
    ),
    principal: Principal = Depends(current_principal),
) -> JobEvents | Response:
    """The job's ordered log: status changes, phases, messages (``start`` skips seen ones).
    With ``Accept: text/event-stream`` the log is streamed as Server-Sent Events (``id`` = seq,
    ``event`` = type, ``data`` = the event) until the job's terminal event."""
    if live_events.wants_stream(accept):
        service.get_or_404(job_id, principal.tenant)
        first = live_events.resume_from(last_event_id, start)
        return StreamingResponse(
            live_events.stream(job_id, first),
            media_type=live_events.MEDIA_TYPE,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    items = service.events(job_id, principal.tenant, start)
    return JobEvents.model_validate({"job_id": job_id, "items": items})


@router.get("/{job_id}/report", response_model=JobReport, responses={409: {}})
def job_report(job_id: str, principal: Principal = Depends(current_principal)) -> JobReport:
    """Before/after metrics: quality on held-out data, agreement with the original, FLOPs,
    latency, parameters, sizes, per-layer sparsity; ``409`` until the job succeeded."""
    return JobReport.model_validate(service.report(job_id, principal.tenant))


@router.get(
    "/{job_id}/model",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        206: {"description": "the byte range asked for with `Range`"},
        304: {"description": "`If-None-Match` names the current ETag"},
        307: {"description": "PRUNEKIT_S3_PRESIGN: a short-lived presigned URL of the file"},
        400: {"description": "malformed `Range`"},
        409: {},
        410: {"description": "the record names files the artifact store no longer has"},
        416: {"description": "`Range` outside the file"},
        422: {},
    },
)
def download_model(
    job_id: str,
    request: Request,
    if_none_match: str | None = Header(
        default=None,
        description='304 when it names the current ETag (weak comparison: W/"x" matches '
        '"x") or is *',
    ),
    principal: Principal = Depends(current_principal),
    fmt: ArtifactFormat | None = Query(
        default=None,
        alias="format",
        description="Default: the input's format. Structured jobs also have the other Keras "
        "format; `tflite` / `tflite_int8` exist when the job spec's `exports` asked for them. "
        "A format the job did not produce answers 409 with the reason.",
    ),
) -> Response:
    """The pruned model in the input's format: a `.keras` file or a zipped SavedModel;
    ``?format=`` picks another format the job produced (LiteRT exports, or the other Keras
    format of a structured job)."""
    path, art = service.artifact(job_id, principal.tenant, fmt.value if fmt else None)
    etag = f'"{art["sha256"]}"'
    store = artifacts.object_store()
    if store is not None:
        return object_download(
            request, store, art["path"], etag, art["media_type"], art["filename"],
            if_none_match, presign=get_settings().s3_presign,
        )  # fmt: skip
    return file_download(request, path, etag, art["media_type"], art["filename"], if_none_match)

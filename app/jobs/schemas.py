"""What the API takes and shows for jobs."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from app import labels
from app.redaction import redact_paths
from app.webhooks.schemas import WebhookSpec
from core.jobs.status import MAX_DEADLINE_S, JobStatus
from core.routing import Resource
from prunekit.spec import PruneSpec


class JobCreate(PruneSpec):
    """A pruning request: the engine's spec plus the ids of what it runs on."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model_id": "3f2c…",
                    "strategy": {"name": "magnitude", "sparsity": 0.8, "scope": "global"},
                }
            ]
        },
    )

    model_id: str = Field(min_length=1, max_length=64)
    dataset_id: str | None = Field(default=None, max_length=64)
    metadata: Annotated[dict[str, str], AfterValidator(labels.check)] = Field(
        default_factory=dict,
        description=f"labels: at most {labels.MAX_KEYS} keys of [a-z0-9_.-]{{1,63}}, values of "
        f"at most {labels.MAX_VALUE_CHARS} characters; filter lists with ?metadata[key]=value",
    )
    webhook: WebhookSpec | None = Field(
        default=None, description="POST the job's events, signed, to this URL"
    )
    deadline_seconds: float | None = Field(
        default=None,
        gt=0,
        le=MAX_DEADLINE_S,
        description="cancel the job when it is still unfinished this long after submission "
        "(the `Cancel-After` header sets it too)",
    )
    resources: Resource | None = Field(
        default=None,
        description="gpu or cpu: the class of worker to run on (queue PRUNEKIT_QUEUE-gpu or "
        "PRUNEKIT_QUEUE). Default: gpu for a job that trains (fine-tuning, or a strategy that "
        "takes gradients) while a GPU worker serves that queue, else cpu",
    )


# JobCreate fields that configure the job's handling, not the engine's PruneSpec
HANDLING_FIELDS = frozenset({"webhook", "deadline_seconds", "resources"})


class Progress(BaseModel):
    phase: str
    fraction: float = Field(ge=0, le=1)
    detail: dict[str, Any] | None = None


class JobError(BaseModel):
    reason: str
    message: str

    @field_validator("message")
    @classmethod
    def _no_server_paths(cls, message: str) -> str:
        return redact_paths(message)


class JobOut(BaseModel):
    id: str
    model_id: str
    dataset_id: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    status: JobStatus
    progress: Progress
    spec: dict[str, Any]
    metrics: dict[str, Any] | None = None
    error: JobError | None = None
    attempts: int = 0
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    updated_at: str | None = None
    webhook: dict[str, Any] | None = None
    deadline_seconds: float | None = None
    deadline_at: str | None = None
    routing: dict[str, Any] | None = Field(
        default=None,
        description="the queue the job was sent to and why (resources gpu or cpu), the "
        "workers that consumed it at submission, and what it waits for when none did",
    )
    links: dict[str, str] = Field(default_factory=dict)


class JobList(BaseModel):
    items: list[JobOut]
    next_after: str | None = Field(
        default=None, description="Pass as `after` to get the next (older) page."
    )


class JobReport(BaseModel):
    """Before/after metrics of a succeeded job (``GET /v1/jobs/{id}/report``)."""

    job_id: str
    model_id: str
    dataset_id: str | None = None
    strategy: dict[str, Any]
    evaluation: dict[str, Any] | None = Field(
        default=None, description="split, samples used, loss; null for a job without data"
    )
    before: dict[str, Any]
    after: dict[str, Any] = Field(description="as `before`, plus `agreement` with the original")
    delta: dict[str, Any] = Field(description="after - before for every number both have")
    layers: list[dict[str, Any]]
    speedup: dict[str, Any] | None = Field(
        default=None,
        description="latency speed-up of the pruned model over the original, per runtime and "
        "batch size (`tf` -> `batch_1`...): median of interleaved pairs, `ci95`, `runs`, "
        "`method`, per-side median/p90 (`a`: original, `b`: pruned) and the load context, or "
        '`{"skipped": why}` for a batch size the job\'s latency budget could not hold; '
        "`litert_<format>_<n>thread(s)`: the dense float32 LiteRT file against each export",
    )
    exports: dict[str, Any] | None = Field(
        default=None,
        description="per LiteRT export the spec asked for: status, size, quantisation, sparse "
        "tensors, kernels (XNNPACK or builtin per op), the file's own quality and agreement "
        "run in the interpreter; null when the job asked for none",
    )
    eligibility: dict[str, Any] | None = Field(
        default=None,
        description="per prunable layer of the pruned model: which path can turn its sparsity "
        "into speed (block-sparse FC kernels, sparse 1x1 convolutions, channel removal, 2:4)",
    )
    allocation: dict[str, Any] | None = Field(
        default=None,
        description="the layer budget (`rule`: uniform, global, lamp, erk, sensitivity) and "
        "what each prunable tensor got (`layers`: size, pruned, sparsity); null for strategies "
        "without one",
    )
    sensitivity: dict[str, Any] | None = Field(
        default=None,
        description="one-shot sensitivity curves (strategy sensitivity or auto, allocation "
        "sensitivity): per layer or channel group, accuracy/loss/drop at each ratio; the plot "
        "downloads with `?format=sensitivity_png`",
    )
    search: dict[str, Any] | None = Field(
        default=None,
        description="strategy auto: the budget, every candidate (ratio, allocation, validation "
        "accuracy, size, FLOPs, latency, on the Pareto front or not), the choice and why, and "
        "the test figure",
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="results a user should not ship blind: a sparse export that is not faster "
        "than dense on its runtime, a file whose outputs drift from the pruned TF model",
    )
    wall_seconds: float | None = None


class JobEvent(BaseModel):
    seq: int
    at: str
    type: str
    message: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class JobEvents(BaseModel):
    job_id: str
    items: list[JobEvent]

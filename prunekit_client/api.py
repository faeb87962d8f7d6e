"""``Client``: the prunekit API over HTTP, one method per operation.

It never imports the service's packages: everything goes through the documented routes, so
it works against any prunekit server it can reach."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypedDict

import httpx

from prunekit_client.archives import zip_directory
from prunekit_client.config import resolve_config
from prunekit_client.problems import ProblemError

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
PAGE = 200  # the API's largest page
HASH_CHUNK = 1 << 20


class Progress(TypedDict, total=False):
    phase: str
    fraction: float
    detail: dict[str, Any] | None


class Job(TypedDict, total=False):
    id: str
    model_id: str
    dataset_id: str | None
    status: str
    progress: Progress
    spec: dict[str, Any]
    metrics: dict[str, Any] | None
    error: dict[str, str] | None
    attempts: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    updated_at: str | None
    links: dict[str, str]


class Model(TypedDict, total=False):
    id: str
    filename: str
    format: str
    size_bytes: int
    sha256: str
    created_at: str
    inspection: dict[str, Any]


class Dataset(TypedDict, total=False):
    id: str
    filename: str
    size_bytes: int
    sha256: str
    created_at: str
    splits: dict[str, dict[str, Any]]


class Event(TypedDict, total=False):
    seq: int
    at: str
    type: str  # "status", "phase", "message"
    message: str | None
    data: dict[str, Any]


@dataclass
class Update:
    """One step of :meth:`Client.wait`: the job as last seen and the events new since the
    previous step (in order, possibly none: a progress move within a phase)."""

    job: Job
    events: list[Event] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        return float((self.job.get("progress") or {}).get("fraction") or 0.0)

    @property
    def phase(self) -> str:
        return str((self.job.get("progress") or {}).get("phase") or self.job.get("status", ""))


class WaitTimeoutError(TimeoutError):
    """:meth:`Client.wait` ran past its ``timeout``; ``job`` is the last state seen."""

    def __init__(self, job: Job, timeout: float) -> None:
        self.job = job
        super().__init__(f"job {job.get('id')} still {job.get('status')} after {timeout:g} s")


class JobEndedError(RuntimeError):
    """:meth:`Client.prune`'s job ended ``failed`` or ``cancelled``; ``job`` says why."""

    def __init__(self, job: Job) -> None:
        self.job = job
        error = job.get("error") or {}
        reason = f": {error.get('reason')}: {error.get('message')}" if error else ""
        super().__init__(f"job {job.get('id')} {job.get('status')}{reason}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class Client:
    """The prunekit API. ``base_url`` and ``api_key`` default as :func:`resolve_config` says
    (``PRUNEKIT_URL`` / ``PRUNEKIT_API_KEY``, the config file, the local key).

    Every error answer raises :class:`ProblemError`; network failures raise ``httpx``'s."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        config = resolve_config(base_url, api_key)
        self.base_url = config.url
        headers = {"User-Agent": "prunekit-client"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ProblemError.from_response(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    def _all(self, path: str) -> Iterator[dict[str, Any]]:
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": PAGE}
            if after:
                params["after"] = after
            page = self._json("GET", path, params=params)
            yield from page["items"]
            after = page.get("next_after")
            if not after:
                return

    def _find_by_sha256(self, path: str, sha256: str) -> dict[str, Any] | None:
        return next((item for item in self._all(path) if item.get("sha256") == sha256), None)

    def _upload(self, path: str, name: str, stream: BinaryIO) -> dict[str, Any]:
        return dict(self._json("POST", path, files={"file": (name, stream)}))

    def _ensure(self, route: str, path: Path) -> tuple[dict[str, Any], bool]:
        """(the record, whether it was uploaded now): an upload with the same sha256 in the
        tenant's list is reused. A directory (a SavedModel) is zipped reproducibly first, so
        the same directory has the same sha256 every time."""
        path = Path(path)
        with zip_directory(path) if path.is_dir() else _as_is(path) as file:
            found = self._find_by_sha256(route, sha256_file(file))
            if found is not None:
                return found, False
            with file.open("rb") as stream:
                name = f"{path.name}.zip" if path.is_dir() else path.name
                return self._upload(route, name, stream), True

    # -- models and datasets -------------------------------------------------------------------

    def ensure_model(self, path: Path | str) -> tuple[Model, bool]:
        """(the model, uploaded now?): reuses the tenant's upload of the same bytes."""
        record, uploaded = self._ensure("/v1/models", Path(path))
        return Model(**record), uploaded  # type: ignore[typeddict-item]

    def upload_model(self, path: Path | str) -> Model:
        """A ``.keras`` file, a SavedModel as ``.zip``/``.tar.gz``, or a SavedModel directory;
        not uploaded again when the tenant already has the same bytes."""
        return self.ensure_model(path)[0]

    def ensure_dataset(self, path: Path | str) -> tuple[Dataset, bool]:
        record, uploaded = self._ensure("/v1/datasets", Path(path))
        return Dataset(**record), uploaded  # type: ignore[typeddict-item]

    def upload_dataset(self, path: Path | str) -> Dataset:
        """An ``.npz`` with ``x_train``, ``y_train`` (and ``x_val``/``x_test``...); not
        uploaded again when the tenant already has the same bytes."""
        return self.ensure_dataset(path)[0]

    def models(self) -> list[Model]:
        return [Model(**m) for m in self._all("/v1/models")]  # type: ignore[typeddict-item]

    def datasets(self) -> list[Dataset]:
        return [Dataset(**d) for d in self._all("/v1/datasets")]  # type: ignore[typeddict-item]

    def get_model(self, model_id: str) -> Model:
        return Model(**self._json("GET", f"/v1/models/{model_id}"))

    def delete_model(self, model_id: str) -> None:
        self._request("DELETE", f"/v1/models/{model_id}")

    def delete_dataset(self, dataset_id: str) -> None:
        self._request("DELETE", f"/v1/datasets/{dataset_id}")

    def strategies(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/v1/strategies")["items"])

    # -- jobs ----------------------------------------------------------------------------------

    def submit_job(
        self,
        model_id: str,
        strategy: str | Mapping[str, Any],
        *,
        dataset_id: str | None = None,
        idempotency_key: str | None = None,
        **spec: Any,
    ) -> Job:
        """Submit a job. ``strategy`` is a name or ``{"name", **params}``; ``spec`` takes the
        rest of the job spec as the API names it (``exports``, ``exclude``, ``fine_tune``,
        ``preprocessing``, ``seed``, ``loss``). A retry with the same ``idempotency_key``
        returns the same job (one is generated when none is given)."""
        body: dict[str, Any] = {
            "model_id": model_id,
            "strategy": {"name": strategy} if isinstance(strategy, str) else dict(strategy),
            **{k: v for k, v in spec.items() if v is not None},
        }
        if dataset_id:
            body["dataset_id"] = dataset_id
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        return Job(**self._json("POST", "/v1/jobs", json=body, headers=headers))

    def get_job(self, job_id: str) -> Job:
        return Job(**self._json("GET", f"/v1/jobs/{job_id}"))

    def jobs(self, limit: int | None = None) -> list[Job]:
        out: list[Job] = []
        for job in self._all("/v1/jobs"):
            out.append(Job(**job))  # type: ignore[typeddict-item]
            if limit is not None and len(out) >= limit:
                break
        return out

    def events(self, job_id: str, start: int = 0) -> list[Event]:
        """The job's events from ``start`` on (every one, however many pages)."""
        out: list[Event] = []
        while True:
            page = self._json("GET", f"/v1/jobs/{job_id}/events", params={"start": start})
            items = [Event(**e) for e in page["items"]]
            if not items:
                return out
            out.extend(items)
            start = int(items[-1].get("seq", start + len(items) - 1)) + 1

    def cancel(self, job_id: str) -> Job:
        """Cancel: queued → cancelled at once, running → cancelling, then cancelled.
        A job that already succeeded or failed answers 409 (a :class:`ProblemError`)."""
        return Job(**self._json("POST", f"/v1/jobs/{job_id}/cancel"))

    def delete(self, job_id: str) -> None:
        """Delete a finished job with its events and pruned model (409 while unfinished)."""
        self._request("DELETE", f"/v1/jobs/{job_id}")

    def report(self, job_id: str) -> dict[str, Any]:
        """Before/after metrics of a succeeded job (409 before that)."""
        return dict(self._json("GET", f"/v1/jobs/{job_id}/report"))

    def download(self, job_id: str, path: Path | str, format: str | None = None) -> Path:
        """The pruned model (``format``: ``tflite``, ``tflite_int8``, the other Keras format
        of a structured job; default the input's) written to ``path``, whole or not at all."""
        path = Path(path)
        params = {"format": format} if format else None
        partial = path.with_name(f".{path.name}.part")
        with self._http.stream("GET", f"/v1/jobs/{job_id}/model", params=params) as response:
            if response.status_code >= 400:
                response.read()
                raise ProblemError.from_response(response)
            with partial.open("wb") as f:
                for chunk in response.iter_bytes(HASH_CHUNK):
                    f.write(chunk)
        partial.replace(path)
        return path

    def wait(
        self, job_id: str, timeout: float | None = None, poll_interval: float = 0.5
    ) -> Iterator[Update]:
        """Follow a job to its end: yields an :class:`Update` for every new event or move of
        progress; the last one holds the finished job. Uses the server's event stream
        (Server-Sent Events) when it offers one, else polls the events and the job.
        Raises :class:`WaitTimeoutError` after ``timeout`` seconds (the job keeps running)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        job = self.get_job(job_id)
        yield Update(job)
        next_seq = 0
        if job.get("status") not in TERMINAL:
            for update in self._stream_events(job, deadline):
                next_seq = _after(update.events, next_seq)
                job = update.job
                yield update
                if job.get("status") in TERMINAL:
                    break
        last_progress = job.get("progress")
        while True:
            events = self.events(job_id, next_seq)
            next_seq = _after(events, next_seq)
            fresh = self.get_job(job_id)
            if events or fresh.get("progress") != last_progress or fresh != job:
                job, last_progress = fresh, fresh.get("progress")
                yield Update(job, events)
            if job.get("status") in TERMINAL:
                tail = self.events(job_id, next_seq)  # written with the final status
                if tail:
                    yield Update(job, tail)
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(job, timeout or 0.0)
            pause = poll_interval
            if deadline is not None:
                pause = max(0.0, min(pause, deadline - time.monotonic()))
            time.sleep(pause)

    def _stream_events(self, job: Job, deadline: float | None) -> Iterator[Update]:
        """Server-Sent Events from ``GET /v1/jobs/{id}/events`` when the server answers
        ``text/event-stream``; yields nothing when it answers JSON (a poll-only server), on a
        stream error or when the stream ends, and :meth:`wait` carries on by polling."""
        read_timeout = 30.0 if deadline is None else max(0.1, deadline - time.monotonic())
        headers = {"Accept": "text/event-stream"}
        try:
            with self._http.stream(
                "GET",
                f"/v1/jobs/{job['id']}/events",
                headers=headers,
                timeout=httpx.Timeout(10.0, read=read_timeout),
            ) as response:
                kind = response.headers.get("content-type", "")
                if response.status_code != 200 or not kind.startswith("text/event-stream"):
                    return
                progress = dict(job.get("progress") or {})
                for event in parse_sse(response.iter_lines()):
                    if event.get("type") == "error":
                        return
                    job = _applied(job, event, progress)
                    yield Update(job, [event])
                    if job.get("status") in TERMINAL or (
                        deadline is not None and time.monotonic() >= deadline
                    ):
                        return
        except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError):
            return

    # -- the whole thing -----------------------------------------------------------------------

    def prune(
        self,
        model: Path | str,
        strategy: str | Mapping[str, Any],
        *,
        out: Path | str,
        dataset: Path | str | None = None,
        timeout: float | None = None,
        spec: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> Job:
        """Upload what is not uploaded yet, prune, wait, download to ``out``; returns the
        finished job. ``params`` are the strategy's (``sparsity=0.9``), ``spec`` the rest of
        the job spec (``{"exports": ["tflite"], "exclude": [...]}``); raises
        :class:`JobEndedError` when the job failed or was cancelled."""
        model_id = self.upload_model(model)["id"]
        dataset_id = self.upload_dataset(dataset)["id"] if dataset is not None else None
        name = {"name": strategy} if isinstance(strategy, str) else dict(strategy)
        job = self.submit_job(model_id, {**name, **params}, dataset_id=dataset_id, **(spec or {}))
        for update in self.wait(job["id"], timeout=timeout):
            job = update.job
        if job.get("status") != "succeeded":
            raise JobEndedError(job)
        self.download(job["id"], out)
        return job


class _as_is:
    """A file used as it is (the counterpart of :func:`zip_directory`)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        return None


def _after(events: Sequence[Event], next_seq: int) -> int:
    for event in events:
        if "seq" in event:
            next_seq = max(next_seq, int(event["seq"]) + 1)
    return next_seq


def _applied(job: Job, event: Event, progress: dict[str, Any]) -> Job:
    """``job`` as ``event`` leaves it: a status event sets the status, a phase event the
    progress (so a stream alone moves the progress bar)."""
    data = event.get("data") or {}
    job = Job(**job)
    if event.get("type") == "status" and data.get("status"):
        job["status"] = str(data["status"])
    if event.get("type") == "phase":
        progress.update(phase=event.get("message") or "", fraction=data.get("fraction", 0.0))
        job["progress"] = Progress(**progress)  # type: ignore[typeddict-item]
    return job


def parse_sse(lines: Iterator[str]) -> Iterator[Event]:
    """Server-Sent Events as event dicts: each ``data:`` block is a JSON event; ``id:`` gives
    its ``seq`` when the JSON lacks one and ``event:`` its ``type`` (``error`` included)."""
    data: list[str] = []
    event_id: str | None = None
    kind: str | None = None
    for line in lines:
        if line == "":
            if data:
                yield _sse_event("\n".join(data), event_id, kind)
            data, event_id, kind = [], None, None
            continue
        if line.startswith(":"):
            continue  # a comment: keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "id":
            event_id = value
        elif name == "event":
            kind = value
    if data:
        yield _sse_event("\n".join(data), event_id, kind)


def _sse_event(text: str, event_id: str | None, kind: str | None) -> Event:
    try:
        payload = json.loads(text)
    except ValueError:
        payload = {"message": text}
    if not isinstance(payload, dict):
        payload = {"message": str(payload)}
    event = Event(**payload)  # type: ignore[typeddict-item]
    if "seq" not in event and event_id is not None and event_id.isdigit():
        event["seq"] = int(event_id)
    if kind and (kind == "error" or "type" not in event):
        event["type"] = kind
    event.setdefault("data", {})
    return event

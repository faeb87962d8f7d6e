"""``prunekit``: prune a model from the terminal or a pipeline, over the HTTP API.

Exit codes a pipeline can branch on: 0 succeeded, 1 failed (the job, the server or the
network), 2 usage error (bad options, or the server refused the request with a 4xx problem),
3 cancelled or timed out (``--timeout``; the job is then cancelled)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from prunekit_client import render
from prunekit_client.api import Client, Job, WaitTimeoutError
from prunekit_client.config import ConfigError, resolve_config
from prunekit_client.problems import ProblemError


class ExitCode(IntEnum):
    SUCCEEDED = 0
    FAILED = 1
    USAGE = 2
    CANCELLED = 3  # or timed out


EXPORT_SUFFIX = {"tflite": ".tflite", "tflite_int8": ".int8.tflite"}
MODEL_SUFFIX = {"keras": ".keras", "saved_model": ".zip"}

app = typer.Typer(
    name="prunekit",
    help="Prune TensorFlow models with a prunekit service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
jobs_app = typer.Typer(help="Jobs: list, show, follow, cancel, delete.", no_args_is_help=True)
models_app = typer.Typer(help="Uploaded models.", no_args_is_help=True)
datasets_app = typer.Typer(help="Uploaded datasets.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(models_app, name="models")
app.add_typer(datasets_app, name="datasets")

out = Console()
err = Console(stderr=True)

JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print only machine-readable JSON on stdout.")
]


@dataclass
class Connection:
    url: str | None
    api_key: str | None
    config: Path | None

    def client(self) -> Client:
        config = resolve_config(self.url, self.api_key, self.config)
        return Client(config.url, config.api_key)


@app.callback()
def connection(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option("--url", help="The service (default: PRUNEKIT_URL, config).")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", help="The API key (default: PRUNEKIT_API_KEY, config)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="A TOML file with url and api_key (default: ~/.config/prunekit/config.toml).",
        ),
    ] = None,
) -> None:
    ctx.obj = Connection(url, api_key, config)


def _emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _fail(code: ExitCode, message: str, as_json: bool, document: Any = None) -> NoReturn:
    if as_json:
        _emit_json(document if document is not None else {"error": message})
    else:
        err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(int(code))


@contextmanager
def answering(as_json: bool) -> Iterator[None]:
    """Errors as exit codes: a 4xx problem is the caller's mistake (2), a 5xx or a network
    failure is a failure (1), a config that cannot be read is a usage error (2)."""
    try:
        yield
    except ProblemError as exc:
        code = ExitCode.USAGE if 400 <= exc.status < 500 else ExitCode.FAILED
        _fail(code, str(exc), as_json, {"error": exc.body})
    except ConfigError as exc:
        _fail(ExitCode.USAGE, str(exc), as_json)
    except httpx.HTTPError as exc:
        _fail(ExitCode.FAILED, f"cannot reach the service: {exc}", as_json)


def _client(ctx: typer.Context) -> Client:
    connection: Connection = ctx.obj
    return connection.client()


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``k=v`` pairs as strategy parameters: ``v`` is read as JSON (numbers, booleans, lists)
    and kept as a string when it is not JSON."""
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{pair!r} is not key=value", param_hint="--param")
        try:
            params[name.strip()] = json.loads(value)
        except ValueError:
            params[name.strip()] = value
    return params


def export_path(out_path: Path, fmt: str) -> Path:
    """Where an export goes: next to the model, same stem (``m.keras`` → ``m.tflite``)."""
    stem = out_path.name.removesuffix(".zip").removesuffix(".keras")
    return out_path.with_name(stem + EXPORT_SUFFIX.get(fmt, f".{fmt}"))


def _is_warning(event: dict[str, Any]) -> bool:
    return (event.get("data") or {}).get("level", "info") != "info"


def _follow(client: Client, job: Job, timeout: float | None, as_json: bool, shown: set[str]) -> Job:
    """Wait for the job, with a progress bar (none with --json) and its warnings as they come
    (added to ``shown``); on timeout the job is cancelled and the command exits 3."""
    try:
        if as_json:
            for update in client.wait(job["id"], timeout=timeout):
                job = update.job
            return job
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err, transient=False) as bar:
            task = bar.add_task(f"job {job['id']}: {job.get('status')}", total=1.0)
            for update in client.wait(job["id"], timeout=timeout):
                job = update.job
                for event in update.events:
                    if event.get("type") == "message" and _is_warning(event):
                        shown.add(str(event.get("message")))
                        bar.console.print(
                            f"[yellow]warning:[/yellow] {event.get('message')}", highlight=False
                        )
                bar.update(
                    task,
                    completed=1.0 if job.get("status") == "succeeded" else update.fraction,
                    description=f"job {job['id']}: {job.get('status')} · {update.phase}",
                )
        return job
    except WaitTimeoutError as exc:
        job = exc.job
        try:
            job = client.cancel(job["id"])
        except ProblemError:  # it finished meanwhile
            job = client.get_job(job["id"])
            if job.get("status") in ("succeeded", "failed"):
                return job
        _fail(
            ExitCode.CANCELLED,
            f"{exc}; cancelled it",
            as_json,
            {"job": job, "timed_out": True},
        )


@app.command()
def prune(
    ctx: typer.Context,
    model: Annotated[
        Path, typer.Argument(help=".keras file, SavedModel .zip/.tar.gz or directory.")
    ],
    strategy: Annotated[str, typer.Option("--strategy", "-s", help="magnitude, filter...")],
    sparsity: Annotated[float | None, typer.Option(help="The strategy's sparsity.")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Strategy parameter k=v (JSON v).")
    ] = None,
    data: Annotated[Path | None, typer.Option("--data", help="An .npz dataset.")] = None,
    rescale: Annotated[
        float | None, typer.Option(help="Multiply inputs by this (1/255) before use.")
    ] = None,
    export: Annotated[
        list[str] | None, typer.Option("--export", help="tflite or tflite_int8 (repeatable).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Fine-tuning epochs.")] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Layer regex to leave alone (RE2).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible runs.")] = None,
    out_path: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Where the pruned model goes (default: MODEL-pruned)."),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the job.")] = True,
    timeout: Annotated[
        float | None, typer.Option(help="Cancel the job and exit 3 when it runs longer (s).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Upload what is not uploaded yet, prune, follow the job, print before/after, download."""
    for path in (model, data):
        if path is not None and not path.exists():
            raise typer.BadParameter(f"{path} does not exist")
    params = parse_params(param or [])
    if sparsity is not None:
        params["sparsity"] = sparsity
    with answering(as_json):
        client = _client(ctx)
        model_rec, model_new = client.ensure_model(model)
        dataset_rec, dataset_new = client.ensure_dataset(data) if data else (None, False)
        if not as_json:
            verb = "uploaded" if model_new else "already uploaded"
            err.print(f"model {model_rec['id']} ({verb})", highlight=False)
            if dataset_rec:
                verb = "uploaded" if dataset_new else "already uploaded"
                err.print(f"dataset {dataset_rec['id']} ({verb})", highlight=False)
        job = client.submit_job(
            model_rec["id"],
            {"name": strategy, **params},
            dataset_id=dataset_rec["id"] if dataset_rec else None,
            exports=export or None,
            exclude=exclude or None,
            seed=seed,
            preprocessing={"rescale": rescale} if rescale is not None else None,
            fine_tune={"epochs": epochs} if epochs is not None else None,
        )
        summary: dict[str, Any] = {
            "model": model_rec,
            "model_uploaded": model_new,
            "dataset": dataset_rec,
            "dataset_uploaded": dataset_new,
        }
        if not wait:
            if as_json:
                _emit_json({**summary, "job": job})
            else:
                out.print(f"job {job['id']} {job.get('status')}", highlight=False)
            return
        shown: set[str] = set()
        try:
            job = _follow(client, job, timeout, as_json, shown)
        except KeyboardInterrupt:
            err.print(f"job {job['id']} keeps running: prunekit jobs cancel {job['id']}")
            raise typer.Exit(130) from None
        summary["job"] = job
        if job.get("status") != "succeeded":
            error = job.get("error") or {}
            reason = f": {error.get('reason')}: {error.get('message')}" if error else ""
            code = ExitCode.FAILED if job.get("status") == "failed" else ExitCode.CANCELLED
            _fail(code, f"job {job['id']} {job.get('status')}{reason}", as_json, summary)
        report = client.report(job["id"])
        target = out_path or model.parent / (
            model.name.split(".")[0] + "-pruned" + MODEL_SUFFIX.get(model_rec["format"], "")
        )
        downloads = {"model": str(client.download(job["id"], target))}
        for fmt, result in (report.get("exports") or {}).items():
            if isinstance(result, dict) and result.get("status") == "failed":
                if not as_json:
                    err.print(f"[yellow]export {fmt} failed:[/yellow] {result.get('error')}")
                continue
            downloads[fmt] = str(client.download(job["id"], export_path(target, fmt), fmt))
        if as_json:
            _emit_json({**summary, "report": report, "downloads": downloads})
            return
        out.print(render.report_table(report))
        for warning in [w for w in report.get("warnings") or [] if w not in shown]:
            err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
        for name, path in downloads.items():
            out.print(f"{name}: {path}", highlight=False)


@jobs_app.command("ls")
def jobs_ls(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Your jobs, newest first."""
    with answering(as_json):
        jobs = _client(ctx).jobs(limit)
        _emit_json(jobs) if as_json else out.print(render.jobs_table(jobs))


@jobs_app.command("show")
def jobs_show(ctx: typer.Context, job_id: str, as_json: JsonFlag = False) -> None:
    """A job; with its before/after table once it succeeded."""
    with answering(as_json):
        client = _client(ctx)
        job = client.get_job(job_id)
        report = client.report(job_id) if job.get("status") == "succeeded" else None
        if as_json:
            _emit_json({"job": job, "report": report})
            return
        out.print(render.job_table(job))
        if report is not None:
            out.print(render.report_table(report))


@jobs_app.command("events")
def jobs_events(
    ctx: typer.Context,
    job_id: str,
    start: Annotated[int, typer.Option(min=0, help="Skip this many events.")] = 0,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Until the job ends.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """The job's ordered events (status changes, phases, messages)."""
    with answering(as_json):
        client = _client(ctx)
        if not follow:
            events = client.events(job_id, start)
            _emit_json(events) if as_json else out.print(render.events_table(events))
            return
        seen = start
        for update in client.wait(job_id):
            for event in update.events:
                if int(event.get("seq", seen)) < seen:
                    continue
                seen = int(event.get("seq", seen)) + 1
                if as_json:
                    sys.stdout.write(json.dumps(event) + "\n")  # one event a line
                    sys.stdout.flush()
                else:
                    out.print(render.event_line(event), highlight=False)


@jobs_app.command("cancel")
def jobs_cancel(ctx: typer.Context, job_id: str, as_json: JsonFlag = False) -> None:
    """Cancel a queued or running job (a finished one answers 409: exit 2)."""
    with answering(as_json):
        job = _client(ctx).cancel(job_id)
        _emit_json(job) if as_json else out.print(f"job {job_id} {job.get('status')}")


def _deleted(kind: str, ident: str, as_json: bool) -> None:
    _emit_json({"deleted": ident}) if as_json else out.print(f"{kind} {ident} deleted")


@jobs_app.command("rm")
def jobs_rm(ctx: typer.Context, job_id: str, as_json: JsonFlag = False) -> None:
    """Delete a finished job with its events and pruned model."""
    with answering(as_json):
        _client(ctx).delete(job_id)
        _deleted("job", job_id, as_json)


def _upload_commands(group: typer.Typer, kind: str, table: Callable[[Any], Any]) -> None:
    """``ls`` and ``rm`` for one kind of upload (``model``, ``dataset``)."""

    @group.command("ls", help=f"Your uploaded {kind}s.")
    def ls(ctx: typer.Context, as_json: JsonFlag = False) -> None:
        with answering(as_json):
            items = getattr(_client(ctx), f"{kind}s")()
            _emit_json(items) if as_json else out.print(table(items))

    @group.command("rm", help=f"Delete a {kind} and its files (409 while a job uses it).")
    def rm(
        ctx: typer.Context,
        ident: Annotated[str, typer.Argument(metavar="ID", help="Its id.")],
        as_json: JsonFlag = False,
    ) -> None:
        with answering(as_json):
            getattr(_client(ctx), f"delete_{kind}")(ident)
            _deleted(kind, ident, as_json)


_upload_commands(models_app, "model", render.models_table)
_upload_commands(datasets_app, "dataset", render.datasets_table)


@app.command()
def strategies(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """The strategies the service offers, with their parameters."""
    with answering(as_json):
        items = _client(ctx).strategies()
        _emit_json(items) if as_json else out.print(render.strategies_table(items))


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""The client's own logic, without a server: problem parsing, configuration precedence, the
event stream parser, strategy parameters, and ``wait`` over a scripted transport."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer

from prunekit_client.api import Client, WaitTimeoutError, parse_sse, sha256_file
from prunekit_client.archives import zip_directory
from prunekit_client.cli import export_path, parse_params
from prunekit_client.config import DEFAULT_URL, ConfigError, resolve_config
from prunekit_client.problems import ProblemError


def _response(status: int, body: Any, content_type: str = "application/problem+json") -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers={"content-type": content_type})


def test_problem_json_keeps_status_title_detail_and_fields() -> None:
    body = {
        "type": "urn:prunekit:problem:validation-error",
        "title": "Request validation failed",
        "status": 422,
        "detail": "the request is not valid: check body.strategy.sparsity",
        "errors": [{"field": "body.strategy.sparsity", "message": "too big", "type": "le"}],
    }
    problem = ProblemError.from_response(_response(422, body))
    assert (problem.status, problem.title) == (422, "Request validation failed")
    assert problem.detail == body["detail"] and problem.errors == body["errors"]
    assert problem.fields == ["body.strategy.sparsity"]
    assert problem.body == body  # every member kept (type, job_status...)
    assert "body.strategy.sparsity: too big" in str(problem)


def test_a_problem_without_errors_and_a_non_json_error_page() -> None:
    conflict = {"title": "Report not available", "status": 409, "detail": "job x is failed",
                "job_status": "failed"}  # fmt: skip
    problem = ProblemError.from_response(_response(409, conflict))
    assert problem.errors == [] and problem.body["job_status"] == "failed"
    page = ProblemError.from_response(_response(502, b"<html>bad gateway</html>", "text/html"))
    assert (page.status, page.title, page.detail) == (
        502,
        "Bad Gateway",
        "<html>bad gateway</html>",
    )
    assert page.errors == []


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_config_precedence_argument_env_file_default(tmp_path: Path) -> None:
    cfg = _write(tmp_path / "xdg" / "prunekit" / "config.toml",
                 'url = "http://file:1"\napi_key = "file-key"\n')  # fmt: skip
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    from_file = resolve_config(env=env, cwd=tmp_path)
    assert (from_file.url, from_file.api_key) == ("http://file:1", "file-key")
    assert from_file.url_from == f"config file {cfg}"
    env |= {"PRUNEKIT_URL": "http://env:2/", "PRUNEKIT_API_KEY": "env-key"}
    from_env = resolve_config(env=env, cwd=tmp_path)
    assert (from_env.url, from_env.api_key, from_env.url_from) == (
        "http://env:2", "env-key", "environment",
    )  # fmt: skip
    explicit = resolve_config("http://flag:3", "flag-key", env=env, cwd=tmp_path)
    assert (explicit.url, explicit.api_key, explicit.api_key_from) == (
        "http://flag:3", "flag-key", "argument",
    )  # fmt: skip
    mixed = resolve_config(api_key="flag-key", env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert (mixed.url, mixed.api_key) == ("http://file:1", "flag-key")  # each picked alone


def test_named_config_file_and_bad_files(tmp_path: Path) -> None:
    named = _write(tmp_path / "ci.toml", 'api_key = "ci-key"\n')
    got = resolve_config(config_path=named, env={}, cwd=tmp_path)
    assert (got.url, got.url_from, got.api_key) == (DEFAULT_URL, "default", "ci-key")
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config(config_path=tmp_path / "nope.toml", env={}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve_config(config_path=_write(tmp_path / "bad.toml", "url = "), env={}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="unknown keys"):
        resolve_config(config_path=_write(tmp_path / "u.toml", 'uri = "x"'), env={}, cwd=tmp_path)


def test_local_key_only_for_the_local_default_url(tmp_path: Path) -> None:
    _write(tmp_path / "var" / "api-key", "local-key\n")
    env = {"XDG_CONFIG_HOME": str(tmp_path / "none")}
    local = resolve_config(env=env, cwd=tmp_path)
    assert (local.url, local.api_key) == (DEFAULT_URL, "local-key")
    assert local.api_key_from == f"local key {tmp_path / 'var' / 'api-key'}"
    remote = resolve_config(env={**env, "PRUNEKIT_URL": "https://prune.example"}, cwd=tmp_path)
    assert remote.api_key is None and remote.api_key_from is None
    home = _write(tmp_path / "home" / "api-key", "home-key")
    assert resolve_config(env={**env, "PRUNEKIT_HOME": str(home.parent)}, cwd=tmp_path).api_key == (
        "home-key"
    )


def test_sse_blocks_become_events() -> None:
    lines = [
        ": keep-alive",
        "id: 0",
        "event: status",
        'data: {"type": "status", "message": "queued", "data": {"status": "queued"}}',
        "",
        "id: 7",
        "event: phase",
        'data: {"message": "loading",',
        'data:  "data": {"fraction": 0.02}}',
        "",
        "event: error",
        'data: {"message": "redis went away"}',
    ]
    events = list(parse_sse(iter(lines)))
    assert [e["type"] for e in events] == ["status", "phase", "error"]
    assert [e.get("seq") for e in events] == [0, 7, None]
    assert events[1]["data"] == {"fraction": 0.02} and events[2]["message"] == "redis went away"


def test_params_are_json_or_strings_and_exports_sit_next_to_the_model() -> None:
    assert parse_params(["sparsity=0.5", "scope=global", "block=[1, 4]", "x=true"]) == {
        "sparsity": 0.5, "scope": "global", "block": [1, 4], "x": True,
    }  # fmt: skip
    with pytest.raises(typer.BadParameter):
        parse_params(["sparsity"])
    assert export_path(Path("out/m.keras"), "tflite") == Path("out/m.tflite")
    assert export_path(Path("out/m.zip"), "tflite_int8") == Path("out/m.int8.tflite")


def test_a_directory_zips_to_the_same_bytes_every_time(tmp_path: Path) -> None:
    src = tmp_path / "sm"
    _write(src / "saved_model.pb", "graph")
    _write(src / "variables" / "variables.index", "index")
    with zip_directory(src) as first:
        digest = sha256_file(first)
    (src / "saved_model.pb").touch()  # a new mtime, the same content
    with zip_directory(src) as second:
        assert sha256_file(second) == digest
    _write(src / "saved_model.pb", "other graph")
    with zip_directory(src) as third:
        assert sha256_file(third) != digest


class ScriptedJob:
    """A poll-only server whose job moves one step each time it is read."""

    def __init__(self, steps: list[tuple[str, float]], events: list[dict[str, Any]]) -> None:
        self.steps, self.events, self.reads = steps, events, 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/jobs/j1/events":
            start = int(request.url.params.get("start", 0))
            shown = self.events[: 2 * self.reads + 1]
            items = [{"seq": i, **e} for i, e in enumerate(shown)][start:]
            return httpx.Response(200, json={"job_id": "j1", "items": items})
        status, fraction = self.steps[min(self.reads, len(self.steps) - 1)]
        self.reads += 1
        job = {"id": "j1", "status": status, "progress": {"phase": status, "fraction": fraction}}
        return httpx.Response(200, json=job)


def test_wait_polls_events_in_order_until_the_job_ends() -> None:
    events = [{"type": "status", "message": m, "data": {}} for m in "abcdefg"]
    script = ScriptedJob([("queued", 0), ("running", 0.2), ("running", 0.6), ("succeeded", 1)],
                         events)  # fmt: skip
    client = Client("http://test", "k", transport=httpx.MockTransport(script))
    updates = list(client.wait("j1", poll_interval=0))
    seen = [e["seq"] for u in updates for e in u.events]
    assert seen == list(range(len(events)))  # each once, in order, the tail included
    assert updates[-1].job["status"] == "succeeded" and updates[-1].fraction == 1
    fractions = [u.fraction for u in updates]
    assert fractions == sorted(fractions)


def test_wait_times_out_with_the_last_state() -> None:
    script = ScriptedJob([("running", 0.3)], [{"type": "status", "data": {}}])
    client = Client("http://test", "k", transport=httpx.MockTransport(script))
    with pytest.raises(WaitTimeoutError) as caught:
        for _ in client.wait("j1", timeout=0.2, poll_interval=0.05):
            pass
    assert caught.value.job["status"] == "running"


def test_errors_raise_problem_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return _response(404, {"title": "Job not found", "status": 404, "detail": "no job"})

    client = Client("http://test", "k", transport=httpx.MockTransport(handler))
    with pytest.raises(ProblemError) as caught:
        client.get_job("nope")
    assert (caught.value.status, caught.value.title) == (404, "Job not found")


def test_wait_follows_the_event_stream_when_the_server_offers_one() -> None:
    stream = "".join(
        f"id: {seq}\nevent: {kind}\ndata: {json.dumps(body)}\n\n"
        for seq, kind, body in [
            (0, "status", {"seq": 0, "type": "status", "data": {"status": "running"}}),
            (1, "phase", {"seq": 1, "type": "phase", "message": "pruning",
                          "data": {"fraction": 0.2}}),
            (2, "status", {"seq": 2, "type": "status", "data": {"status": "succeeded"}}),
        ]
    )  # fmt: skip
    polled: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            if request.headers.get("accept") == "text/event-stream":
                return httpx.Response(
                    200, text=stream, headers={"content-type": "text/event-stream"}
                )
            polled.append(int(request.url.params["start"]))
            return httpx.Response(200, json={"job_id": "j1", "items": []})
        done = len(polled) > 0
        status, fraction = ("succeeded", 1.0) if done else ("queued", 0.0)
        return httpx.Response(
            200,
            json={
                "id": "j1",
                "status": status,
                "progress": {"phase": status, "fraction": fraction},
            },
        )

    client = Client("http://test", "k", transport=httpx.MockTransport(handler))
    updates = list(client.wait("j1", poll_interval=0))
    assert [e["seq"] for u in updates for e in u.events] == [0, 1, 2]
    assert [u.phase for u in updates[1:3]] == ["queued", "pruning"]  # a phase moves the bar
    assert updates[2].fraction == 0.2
    assert polled and min(polled) == 3  # polling resumes after the streamed events
    assert updates[-1].job["status"] == "succeeded"


def test_the_client_imports_nothing_of_the_service_nor_tensorflow() -> None:
    """HTTP only: it installs and starts anywhere, fast (no TensorFlow import)."""
    code = (
        "import sys, prunekit_client.cli\n"
        "roots = {name.split('.')[0] for name in sys.modules}\n"
        "print(sorted(roots & {'app', 'worker', 'prunekit', 'tensorflow', 'keras'}))\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

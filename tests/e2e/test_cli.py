"""The ``prunekit`` CLI against the real service, in a subprocess as a pipeline runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from prunekit_client import Client, JobEndedError, ProblemError
from tests.e2e.conftest import REPO, Service, new_key

pytestmark = pytest.mark.e2e


class Cli:
    """``python -m prunekit_client.cli`` with a tenant of its own, configured by env only."""

    def __init__(self, service: Service, workdir: Path) -> None:
        self.api_key = new_key(f"cli-{uuid.uuid4().hex[:8]}")
        self.service = service.as_key(self.api_key)
        self.workdir = workdir
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "PRUNEKIT_URL": service.base_url,
            "PRUNEKIT_API_KEY": self.api_key,
            "XDG_CONFIG_HOME": str(workdir / "no-config"),
            "COLUMNS": "160",
        }

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "prunekit_client.cli", *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def json(self, *args: str, code: int = 0) -> Any:
        proc = self.run(*args, "--json")
        assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
        return json.loads(proc.stdout)


@pytest.fixture
def cli(service: Service, tmp_path: Path) -> Cli:
    return Cli(service, tmp_path)


def test_prune_waits_downloads_and_reuses_the_upload(
    cli: Cli, model_files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "pruned.keras"
    first = cli.json(
        "prune", str(model_files["keras"]), "--strategy", "magnitude", "--sparsity", "0.5",
        "--param", "scope=global", "--out", str(out),
    )  # fmt: skip
    assert first["model_uploaded"] is True
    job = first["job"]
    assert job["status"] == "succeeded", job
    spec = job["spec"]["strategy"]
    assert (spec["name"], spec["sparsity"], spec["scope"]) == ("magnitude", 0.5, "global")
    assert first["report"]["job_id"] == job["id"]
    assert first["downloads"] == {"model": str(out)}
    pruned = keras.saving.load_model(out)
    kernels = np.concatenate([layer.kernel.numpy().ravel() for layer in pruned.layers[1:]])
    assert np.mean(kernels == 0) == pytest.approx(0.5, abs=0.01)  # global 50% of the kernels

    second = cli.run(
        "prune", str(model_files["keras"]), "-s", "magnitude", "--sparsity", "0.8",
        "-o", str(tmp_path / "pruned80.keras"), "--export", "tflite",
    )  # fmt: skip
    assert second.returncode == 0, (second.stdout, second.stderr)
    assert f"model {first['model']['id']} (already uploaded)" in second.stderr
    assert f"tflite: {tmp_path / 'pruned80.tflite'}" in second.stdout  # next to --out
    interpreter = Interpreter(model_path=str(tmp_path / "pruned80.tflite"))
    interpreter.allocate_tensors()
    assert list(interpreter.get_input_details()[0]["shape"]) == [1, 8]
    models = cli.json("models", "ls")
    assert [m["id"] for m in models] == [first["model"]["id"]]  # uploaded once

    listed = cli.json("jobs", "ls")
    assert [j["id"] for j in listed][1] == job["id"]  # newest first
    after = cli.json("jobs", "show", listed[0]["id"])["report"]["after"]
    sparsity_row = next(line for line in second.stdout.splitlines() if " sparsity " in line)
    assert f"{100 * after['sparsity']:.1f}%" in sparsity_row, second.stdout  # the table
    assert 0.79 < after["sparsity"] < 0.81
    shown = cli.json("jobs", "show", job["id"])
    assert shown["job"]["id"] == job["id"] and shown["report"]["after"]["sparsity"] > 0.49
    events = cli.json("jobs", "events", job["id"])
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[-1]["data"] == {"status": "succeeded"}
    assert any(s["name"] == "magnitude" for s in cli.json("strategies"))
    refused = cli.json("jobs", "cancel", job["id"], code=2)  # finished: 409
    assert refused["error"]["status"] == 409
    assert cli.json("jobs", "rm", job["id"]) == {"deleted": job["id"]}
    assert cli.json("jobs", "show", job["id"], code=2)["error"]["status"] == 404


def test_a_failed_job_exits_1_with_its_reason(cli: Cli, model_files: dict[str, Path]) -> None:
    result = cli.json(
        "prune", str(model_files["keras"]), "-s", "magnitude", "--sparsity", "0.5",
        "--exclude", ".*", code=1,
    )  # fmt: skip
    assert result["job"]["status"] == "failed"
    assert result["job"]["error"]["reason"] == "invalid_spec"
    assert "no prunable weights" in result["job"]["error"]["message"]
    assert not list(cli.workdir.glob("*pruned*"))  # nothing downloaded


def test_timeout_cancels_the_job_and_exits_3(cli: Cli, big_model_zip: Path) -> None:
    result = cli.json(
        "prune", str(big_model_zip), "-s", "magnitude", "--sparsity", "0.5", "--timeout", "0.5",
        code=3,
    )  # fmt: skip
    assert result["timed_out"] is True
    assert result["job"]["status"] in {"cancelled", "cancelling"}
    assert cli.service.wait_job(result["job"]["id"])["status"] == "cancelled"


def test_no_wait_with_data_then_cancel_and_clean_up(
    cli: Cli, big_model_zip: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "wide.npz"
    np.savez(data, x_train=rng.normal(size=(64, 256)).astype("float32"),
             y_train=rng.integers(0, 10, size=64))  # fmt: skip
    submitted = cli.json(
        "prune", str(big_model_zip), "-s", "magnitude", "--sparsity", "0.5",
        "--data", str(data), "--rescale", "0.5", "--epochs", "1", "--seed", "7", "--no-wait",
    )  # fmt: skip
    job, dataset = submitted["job"], submitted["dataset"]
    spec = job["spec"]
    assert (spec["preprocessing"]["rescale"], spec["fine_tune"]["epochs"], spec["seed"]) == (
        0.5, 1, 7,
    )  # fmt: skip
    assert submitted["dataset_uploaded"] is True and job["dataset_id"] == dataset["id"]
    assert job["status"] in {"queued", "running"}
    assert cli.json("jobs", "cancel", job["id"])["status"] in {"cancelled", "cancelling"}
    assert cli.service.wait_job(job["id"])["status"] == "cancelled"
    assert [d["id"] for d in cli.json("datasets", "ls")] == [dataset["id"]]
    assert cli.json("jobs", "rm", job["id"]) == {"deleted": job["id"]}
    assert cli.json("datasets", "rm", dataset["id"]) == {"deleted": dataset["id"]}
    assert cli.json("models", "rm", job["model_id"]) == {"deleted": job["model_id"]}
    assert cli.json("datasets", "ls") == [] and cli.json("models", "ls") == []


def test_usage_errors_exit_2(cli: Cli, model_files: dict[str, Path], tmp_path: Path) -> None:
    model = str(model_files["keras"])
    bad_option = cli.run("prune", model, "-s", "magnitude", "--sparsity", "lots")
    assert bad_option.returncode == 2, bad_option.stderr
    assert cli.run("prune", str(tmp_path / "missing.keras"), "-s", "magnitude").returncode == 2
    assert cli.run("prune", model, "-s", "magnitude", "-p", "novalue").returncode == 2
    refused = cli.json("prune", model, "-s", "magnitude", "--sparsity", "1.5", code=2)
    assert refused["error"]["status"] == 422
    assert "body.strategy.sparsity" in [e["field"] for e in refused["error"]["errors"]]
    unknown = cli.json("prune", model, "-s", "no-such-strategy", code=2)
    assert unknown["error"]["status"] == 422
    assert cli.json("jobs", "ls") == []  # nothing was submitted


def test_the_notebook_example_and_its_errors(cli: Cli, model_files: dict[str, Path]) -> None:
    client = Client(cli.service.base_url, cli.api_key)
    out = cli.workdir / "nb.keras"
    job = client.prune(model_files["keras"], "magnitude", sparsity=0.5, out=out)
    assert job["status"] == "succeeded" and keras.saving.load_model(out) is not None
    with pytest.raises(JobEndedError) as ended:
        client.prune(
            model_files["keras"], "magnitude", sparsity=0.5, out=out, spec={"exclude": [".*"]}
        )
    assert ended.value.job["error"]["reason"] == "invalid_spec"
    with pytest.raises(ProblemError) as refused:
        client.submit_job(job["model_id"], {"name": "magnitude", "sparsity": 2})
    assert refused.value.status == 422 and "body.strategy.sparsity" in refused.value.fields
    assert len(client.models()) == 1  # the second prune reused the upload


def test_config_file_and_flags_over_the_environment(cli: Cli, tmp_path: Path) -> None:
    nowhere = "http://127.0.0.1:9"  # the discard port: nothing answers
    cli.env |= {"PRUNEKIT_URL": nowhere, "PRUNEKIT_API_KEY": "pk_wrong"}
    unreachable = cli.run("strategies", "--json")
    assert unreachable.returncode == 1 and "cannot reach" in json.loads(unreachable.stdout)["error"]
    config = tmp_path / "ci.toml"
    config.write_text(f'url = "{cli.service.base_url}"\napi_key = "{cli.api_key}"\n')
    del cli.env["PRUNEKIT_URL"], cli.env["PRUNEKIT_API_KEY"]
    assert cli.json("--config", str(config), "models", "ls") == []  # the file alone
    cli.env["PRUNEKIT_API_KEY"] = "pk_wrong"  # the environment wins over the file...
    assert cli.json("--config", str(config), "models", "ls", code=2)["error"]["status"] == 401
    flags = ["--api-key", cli.api_key, "--config", str(config)]  # ...and a flag over both
    assert cli.json(*flags, "models", "ls") == []
    missing = cli.run("--config", str(tmp_path / "none.toml"), "models", "ls")
    assert missing.returncode == 2 and "does not exist" in missing.stderr

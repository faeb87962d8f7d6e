"""The service under load: jobs per minute with 1 and 2 worker processes, status-poll latency.

A real service is started as ``make run`` would, but private: uvicorn on a free loopback
port and a Celery worker (``--concurrency 1``, then restarted with ``--concurrency 2``),
over the Redis the tests use (database 15) with a unique key prefix and queue, artifacts
under ``bench/work/service-<id>/``; every key and file is removed afterwards.

For each worker count:

* **throughput**: one warm-up job, then N global-magnitude jobs on LeNet-300-100 (a
  SavedModel zip) submitted back to back; jobs/min = N / (last ``finished_at`` - first
  ``created_at``), the service's own timestamps. Only one client thread polls (every
  0.25 s), so the measurement is not disturbed by the load generator.
* **status-poll latency**: M more jobs are submitted and, while they run, a bounded load
  generator (``threads`` x ``requests`` GETs of ``/v1/jobs/{id}``, loopback only, one
  ``httpx.Client`` per thread, stopping by itself after its count or a deadline) records
  every request's latency: p50 and p99, errors, and the share of polls that saw a job still
  queued or running.

Authentication: set ``PRUNEKIT_API_KEY`` and every request carries
``Authorization: Bearer <key>``.

Run: ``python -m bench.run_all --only service_load [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    REPO_ROOT,
    WORK_DIR,
    bench_command,
    machine_info,
    median,
    percentile,
    ratio,
    write_result,
)

SUITE = "service_load"
TERMINAL = {"succeeded", "failed", "cancelled"}
ACTIVE = {"queued", "running"}
JOB_SPEC = {"name": "magnitude", "sparsity": 0.8, "scope": "global"}


@dataclass(frozen=True)
class LoadConfig:
    jobs: int  # throughput jobs per worker count
    poll_jobs: int  # jobs running while the load generator polls
    threads: int
    requests_per_thread: int
    poll_deadline_s: float = 60.0
    job_timeout_s: float = 300.0


QUICK = LoadConfig(jobs=4, poll_jobs=2, threads=4, requests_per_thread=50)
FULL = LoadConfig(jobs=12, poll_jobs=4, threads=4, requests_per_thread=200)


def auth_headers() -> dict[str, str]:
    """``Authorization: Bearer $PRUNEKIT_API_KEY`` when the variable is set, else nothing."""
    key = os.environ.get("PRUNEKIT_API_KEY", "").strip()
    return {"Authorization": f"Bearer {key}"} if key else {}


def parse_time(stamp: str) -> float:
    """Seconds since the epoch of a service timestamp like ``2025-01-01T00:00:00.123Z``."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def jobs_per_minute(jobs: Sequence[dict[str, Any]]) -> tuple[float, float]:
    """(jobs/min, elapsed s) from the first ``created_at`` to the last ``finished_at``."""
    start = min(parse_time(j["created_at"]) for j in jobs)
    end = max(parse_time(j["finished_at"]) for j in jobs)
    elapsed = end - start
    return ratio(len(jobs) * 60.0, elapsed), elapsed


# ------------------------------------------------------------------------------ the model
def ensure_lenet_zip() -> Path:
    """LeNet-300-100 (random weights, seed 0) as a zipped SavedModel, cached."""
    path = WORK_DIR / "lenet_300_100_sm.zip"
    if path.exists():
        return path
    sm = WORK_DIR / "lenet_300_100_sm"
    shutil.rmtree(sm, ignore_errors=True)
    code = (
        "import keras; keras.utils.set_random_seed(0); "
        "inp = keras.Input((784,), name='pixels'); "
        "x = keras.layers.Dense(300, activation='relu')(inp); "
        "x = keras.layers.Dense(100, activation='relu')(x); "
        f"keras.Model(inp, keras.layers.Dense(10)(x)).export({str(sm)!r}, verbose=False)"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(sm.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(sm).as_posix())
    tmp.replace(path)
    shutil.rmtree(sm, ignore_errors=True)
    return path


# ------------------------------------------------------------------------------ the service
class Service:
    """Private API + worker processes; logs under the run's home."""

    def __init__(self, home: Path) -> None:
        from core.embedded_redis import free_port, resolve

        self.home = home
        self.run_id = uuid.uuid4().hex[:8]
        url, self._embedded = resolve(home)
        base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
        self.redis_url = f"{base}/15"
        self.prefix = f"prunekit-bench-{self.run_id}"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "PYTHONUNBUFFERED": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PRUNEKIT_HOME": str(home),
            "PRUNEKIT_REDIS_URL": self.redis_url,
            "PRUNEKIT_KEY_PREFIX": self.prefix,
            "PRUNEKIT_QUEUE": self.prefix,
        }
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.headers = auth_headers() or self._private_key_headers()
        self.client = httpx.Client(base_url=self.base_url, timeout=30, headers=self.headers)
        self.api: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self._worker_starts = 0
        self.model_id: str | None = None
        self.device: str | None = None  # the workers' device, as their job metrics say

    def _private_key_headers(self) -> dict[str, str]:
        """An API key for this run's private key space, made with the operators' CLI."""
        out = subprocess.run(
            [sys.executable, "-m", "app.auth.cli", "create", "--tenant", "bench", "--json"],
            cwd=REPO_ROOT, env=self.env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        return {"Authorization": f"Bearer {json.loads(out.stdout)['key']}"}

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        out = (self.home / log).open("wb")
        return subprocess.Popen(
            [sys.executable, *args], cwd=REPO_ROOT, env=self.env, stdout=out, stderr=out
        )

    def start_api(self) -> None:
        args = ["-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(self.port)]
        self.api = self._spawn(args, "api.log")

    def start_worker(self, concurrency: int) -> None:
        self._worker_starts += 1
        self.worker = self._spawn(
            ["-m", "celery", "-A", "worker.celery_app:celery_app", "worker", "--loglevel",
             "INFO", "--concurrency", str(concurrency), "-Q", self.prefix,
             "--hostname", f"bench-{self.run_id}-{self._worker_starts}@%h"],
            f"worker-{concurrency}.log",
        )  # fmt: skip
        self.wait_ready()

    def stop_worker(self) -> None:
        if self.worker is not None:
            _stop(self.worker)
            self.worker = None

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in (self.api, self.worker):
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"a service process exited:\n{self.logs()}")
            try:
                if self.client.get("/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"service not ready in {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(p.read_text()[-2000:] for p in sorted(self.home.glob("*.log")))

    def upload(self, path: Path) -> str:
        with path.open("rb") as f:
            resp = self.client.post("/v1/models", files={"file": (path.name, f)})
        resp.raise_for_status()
        return str(resp.json()["id"])

    def submit(self, model_id: str) -> str:
        resp = self.client.post("/v1/jobs", json={"model_id": model_id, "strategy": JOB_SPEC})
        resp.raise_for_status()
        return str(resp.json()["id"])

    def wait_all(self, ids: Sequence[str], timeout: float) -> list[dict[str, Any]]:
        done: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(done) < len(ids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(ids) - len(done)} jobs unfinished after {timeout}s")
            for job_id in ids:
                if job_id not in done:
                    job = self.client.get(f"/v1/jobs/{job_id}").json()
                    if job["status"] in TERMINAL:
                        done[job_id] = job
            time.sleep(0.25)
        failed = [j for j in done.values() if j["status"] != "succeeded"]
        if failed:
            raise RuntimeError(f"{len(failed)} jobs did not succeed: {failed[0].get('error')}")
        return [done[i] for i in ids]

    def close(self) -> None:
        self.stop_worker()
        if self.api is not None:
            _stop(self.api)
        self.client.close()
        import redis

        r = redis.Redis.from_url(self.redis_url)
        for key in r.scan_iter(match=f"{self.prefix}*", count=1000):
            r.delete(key)
        if self._embedded is not None:
            self._embedded.stop()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@contextmanager
def running_service() -> Iterator[Service]:
    home = WORK_DIR / f"service-{uuid.uuid4().hex[:8]}"
    home.mkdir(parents=True)
    svc = Service(home)
    try:
        svc.start_api()
        yield svc
    finally:
        svc.close()
        shutil.rmtree(home, ignore_errors=True)


# ------------------------------------------------------------------------------ load
def poll_load(
    base_url: str,
    ids: Sequence[str],
    threads: int,
    requests_per_thread: int,
    deadline_s: float,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``threads`` x ``requests_per_thread`` GETs of ``/v1/jobs/{id}`` (round robin over
    ``ids``), back to back; stops by itself after its count or ``deadline_s``."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    active: list[int] = [0] * threads
    errors: list[int] = [0] * threads
    stop_at = time.monotonic() + deadline_s

    def worker(k: int) -> None:
        with httpx.Client(base_url=base_url, timeout=10, headers=headers) as client:
            for i in range(requests_per_thread):
                if time.monotonic() > stop_at:
                    return
                job_id = ids[(k + i) % len(ids)]
                start = time.perf_counter()
                try:
                    resp = client.get(f"/v1/jobs/{job_id}")
                    elapsed = time.perf_counter() - start
                    if resp.status_code != 200:
                        errors[k] += 1
                        continue
                    latencies[k].append(elapsed)
                    if resp.json().get("status") in ACTIVE:
                        active[k] += 1
                except httpx.HTTPError:
                    errors[k] += 1

    pool = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join(deadline_s + 15)
    wall = time.perf_counter() - started
    flat = [x for xs in latencies for x in xs]
    if not flat:
        raise RuntimeError(f"no successful status poll ({sum(errors)} errors)")
    return {
        "requests": len(flat),
        "errors": sum(errors),
        "p50_ms": percentile(flat, 50) * 1e3,
        "p99_ms": percentile(flat, 99) * 1e3,
        "median_ms": median(flat) * 1e3,
        "max_ms": max(flat) * 1e3,
        "requests_per_s": len(flat) / wall,
        "while_active": sum(active) / len(flat),
    }


def measure(svc: Service, model_zip: Path, workers: int, cfg: LoadConfig) -> dict[str, Any]:
    """Start a worker with ``workers`` processes, measure, stop it (the API keeps running)."""
    svc.start_worker(workers)
    try:
        model_id = svc.model_id or svc.upload(model_zip)
        svc.model_id = model_id
        svc.wait_all([svc.submit(model_id)], cfg.job_timeout_s)  # warm-up, not counted
        ids = [svc.submit(model_id) for _ in range(cfg.jobs)]
        jobs = svc.wait_all(ids, cfg.job_timeout_s)
        per_min, elapsed = jobs_per_minute(jobs)
        latency = (jobs[0].get("metrics") or {}).get("after", {}).get("latency") or {}
        svc.device = latency.get("device_name") or svc.device
        job_s = [parse_time(j["finished_at"]) - parse_time(j["started_at"]) for j in jobs]

        poll_ids = [svc.submit(model_id) for _ in range(cfg.poll_jobs)]
        polls = poll_load(
            svc.base_url,
            poll_ids,
            cfg.threads,
            cfg.requests_per_thread,
            cfg.poll_deadline_s,
            headers=svc.headers,
        )
        svc.wait_all(poll_ids, cfg.job_timeout_s)
    finally:
        svc.stop_worker()
    return {
        "workers": workers,
        "jobs": cfg.jobs,
        "elapsed_s": round(elapsed, 2),
        "jobs_per_min": round(per_min, 1),
        "job_median_s": round(median(job_s), 2),
        "poll_requests": polls["requests"],
        "poll_errors": polls["errors"],
        "poll_p50_ms": round(polls["p50_ms"], 2),
        "poll_p99_ms": round(polls["p99_ms"], 2),
        "polls_while_active": round(polls["while_active"], 2),
        "poll_rps": round(polls["requests_per_s"], 1),
    }


def main(quick: bool = False) -> Path:
    cfg = QUICK if quick else FULL
    model_zip = ensure_lenet_zip()
    rows: list[dict[str, Any]] = []
    with running_service() as svc:
        for workers in (1, 2):
            rows.append(measure(svc, model_zip, workers, cfg))
        device = svc.device
    speedup = ratio(rows[1]["jobs_per_min"], rows[0]["jobs_per_min"])
    notes = [
        f"Each job: global magnitude pruning at {JOB_SPEC['sparsity']} of LeNet-300-100 "
        "(266,610 parameters, zipped SavedModel), including the engine's before/after "
        "metrics (FLOPs, latency, sizes); no dataset.",
        "jobs/min: the service's own timestamps, first `created_at` to last `finished_at`, "
        "after one warm-up job; workers are processes of one Celery worker (`--concurrency`), "
        "each child recycled after one task.",
        f"Status polls: {cfg.threads} threads x {cfg.requests_per_thread} GETs of "
        f"`/v1/jobs/{{id}}` on loopback while {cfg.poll_jobs} jobs run; "
        "`polls_while_active` is the share of polls that saw a job queued or running.",
        f"2 workers / 1 worker throughput: {speedup:.2f}x (on "
        f"{os.cpu_count()} cores shared with the client and the API).",
    ]
    headline = [
        {"metric": f"jobs/min, {r['workers']} worker(s), LeNet-300-100 magnitude", "value":
         r["jobs_per_min"], "unit": "jobs/min"}
        for r in rows
    ] + [
        {"metric": "GET /v1/jobs/{id} p50 / p99 under load (2 workers)",
         "value": f"{rows[1]['poll_p50_ms']} / {rows[1]['poll_p99_ms']}", "unit": "ms"},
    ]  # fmt: skip
    return write_result(
        SUITE,
        rows,
        bench_command(SUITE, quick),
        extra={"config": cfg.__dict__, "job_spec": JOB_SPEC, "speedup_2_vs_1": speedup},
        quick=quick,
        headline=headline,
        notes=notes,
        machine={**machine_info(), "device": device} if device else None,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print(main(parser.parse_args().quick))

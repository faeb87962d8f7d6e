"""One API instance and one Redis under many workers' record traffic and polling dashboards.

MOCKED-OUT JOBS: no model runs. Every job here is created straight in the job store, marked
``metadata = {"simulated": "true", "runs": "no-model"}`` and ``model_id = "simulated"``, and
"run" by a simulated worker: a thread that makes the Redis calls a real worker makes for a
job, at a real worker's cadence (``worker.guard`` / ``worker.reporter``):

* take the lease, count the attempt, ``queued -> running`` (fenced);
* every ``PROGRESS_S`` (the reporter's 0.5 s throttle, its fastest) a fenced progress write
  and a cancellation check; a phase event every ``PHASE_S``;
* renew the lease every ``lease_ttl / 3`` s;
* after ``JOB_S`` s, ``running -> succeeded`` with a small metrics and artifact record, and
  the next job.

Dashboards: asyncio tasks that each poll ``GET /v1/jobs/{id}`` of a random running job every
``POLL_S`` s through the real API (uvicorn as ``make run`` starts it, one process). The
run is bounded: ``--seconds`` of load, then everything stops and is removed.

Measured: request latency p50/p99/max and errors, requests/s served against offered, Redis
commands/s (``INFO commandstats`` delta on a private ``redis-server``, so nothing else
counts), and the CPU time of the API process and of Redis (psutil), which tells which one
saturates first.

Run: ``python -m bench.scale_sim [--workers 100 --dashboards 500 --seconds 30]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.common import machine_info, percentile, write_result

SUITE = "scale_sim"
PROGRESS_S = 0.5
PHASE_S = 5.0
JOB_S = 20.0
POLL_S = 2.0
WORKER_PROCESSES = 4  # simulated workers are threads in a few processes (the GIL)
DASHBOARD_PROCESSES = 2


def _commands(client: Any) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


class SimulatedWorker(threading.Thread):
    """A worker's record traffic, for mocked-out jobs, one after another."""

    def __init__(self, index: int, tenant: str, stop: Any, running: set[str]) -> None:
        super().__init__(daemon=True, name=f"sim-worker-{index}")
        self.index = index
        self.tenant = tenant
        self.stop_event = stop
        self.running = running
        self.jobs_done = 0
        self.errors = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self._one_job()
            except Exception:
                self.errors += 1
                time.sleep(0.5)

    def _one_job(self) -> None:
        from core.jobs import store
        from core.records import new_id, now_iso
        from core.settings import get_settings

        job_id = new_id()
        store.create(
            {
                "id": job_id,
                "tenant": self.tenant,
                "model_id": "simulated",
                "dataset_id": None,
                "metadata": {"simulated": "true", "runs": "no-model"},  # mocked out
                "request_id": None,
                "status": "queued",
                "progress": {"phase": "queued", "fraction": 0.0},
                "spec": {"strategy": {"name": "magnitude", "sparsity": 0.5}},
                "metrics": None,
                "error": None,
                "attempts": 0,
                "created_at": now_iso(),
                "started_at": None,
                "finished_at": None,
                "updated_at": now_iso(),
            }
        )
        ttl = get_settings().lease_ttl
        owner = f"sim-{self.index}-{uuid.uuid4().hex[:6]}"
        fence = store.acquire_lease(job_id, owner, ttl)
        assert fence is not None
        store.incr_attempts(job_id)
        store.transition(job_id, "running", {"queued"}, fence=fence,
                         message="running (simulated: no model runs)",
                         started_at=now_iso())  # fmt: skip
        self.running.add(job_id)
        start = time.monotonic()
        last_phase = last_renew = start
        phase = 0
        while time.monotonic() - start < JOB_S and not self.stop_event.is_set():
            now = time.monotonic()
            if now - last_phase >= PHASE_S:
                phase += 1
                store.update(job_id, fence=fence, progress={"phase": f"p{phase}", "fraction": 0})
                store.add_event(job_id, "phase", f"p{phase}", fence=fence, fraction=0.0)
                last_phase = now
            store.update(job_id, fence=fence, progress={"phase": f"p{phase}",
                         "fraction": round((now - start) / JOB_S, 4)})  # fmt: skip
            store.status(job_id)  # the reporter's cancellation check
            if now - last_renew >= ttl / 3:
                store.renew_lease(job_id, owner, ttl, fence.token)
                last_renew = now
            time.sleep(PROGRESS_S)
        self.running.discard(job_id)
        store.transition(
            job_id, "succeeded", {"running"}, fence=fence,
            progress={"phase": "done", "fraction": 1.0},
            metrics={"simulated": True, "before": {}, "after": {}, "delta": {}},
            artifact={"simulated": True}, finished_at=now_iso(),
        )  # fmt: skip
        store.release_lease(job_id, owner)
        self.jobs_done += 1


async def dashboards(
    base_url: str, api_key: str, count: int, seconds: float, redis_url: str
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    failures = 0
    limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)
    headers = {"Authorization": f"Bearer {api_key}"}
    deadline = time.monotonic() + seconds
    running: list[str] = []

    async def refresh() -> None:  # the running jobs' ids, as a dashboard would list them
        import redis.asyncio

        from core.redis import key

        r = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
        while time.monotonic() < deadline:
            running[:] = [str(i) for i in await r.smembers(key("jobs", "active"))]
            await asyncio.sleep(1.0)
        await r.aclose()

    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=30
    ) as client:

        async def one(index: int) -> None:
            nonlocal failures
            await asyncio.sleep(random.uniform(0, POLL_S))  # spread the first polls
            while time.monotonic() < deadline:
                ids = list(running)
                if not ids:
                    await asyncio.sleep(0.1)
                    continue
                started = time.monotonic()
                try:
                    answer = await client.get(f"/v1/jobs/{random.choice(ids)}")
                    statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                    latencies.append(time.monotonic() - started)
                except httpx.HTTPError:
                    failures += 1
                await asyncio.sleep(max(0.0, POLL_S - (time.monotonic() - started)))

        await asyncio.gather(refresh(), *(one(i) for i in range(count)))
    return {"latencies": latencies, "statuses": statuses, "failures": failures}


def _worker_process(first: int, count: int, seconds: float, env: dict[str, str]) -> None:
    """``count`` simulated workers (threads) in one process, for ``seconds``."""
    os.environ.update(env)
    stop_event = threading.Event()
    sims = [SimulatedWorker(first + i, "simulated", stop_event, set()) for i in range(count)]
    for sim in sims:
        sim.start()
    time.sleep(seconds)
    stop_event.set()
    for sim in sims:
        sim.join(10)


def _dashboard_process(
    base: str, api_key: str, count: int, seconds: float, env: dict[str, str], out: Any
) -> None:
    os.environ.update(env)
    out.put(asyncio.run(dashboards(base, api_key, count, seconds, env["PRUNEKIT_REDIS_URL"])))


def run(workers: int, dashboards_n: int, seconds: float) -> dict[str, Any]:
    import redis

    from core.embedded_redis import free_port, start_embedded
    from tests.service_processes import spawn_api, stop

    work = Path(tempfile.mkdtemp(prefix="scale-sim-"))
    server = start_embedded(work / "redis", appendonly=True)
    prefix = f"sim{uuid.uuid4().hex[:6]}"
    env = {
        "PRUNEKIT_REDIS_URL": server.url,
        "PRUNEKIT_KEY_PREFIX": prefix,
        "PRUNEKIT_HOME": str(work / "home"),
        "PRUNEKIT_MAX_CONNECTIONS": "1024",
        "PRUNEKIT_TENANT_MAX_ACTIVE_JOBS": "0",
    }
    os.environ.update(env)
    from core.auth import keys
    from core.settings import get_settings

    get_settings.cache_clear()
    api_key = keys.create_key("simulated", name="scale_sim")[1]
    port = free_port()
    logs = work / "logs"
    logs.mkdir()
    api = spawn_api(logs, port, env)
    client = redis.Redis.from_url(server.url)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        per = max(1, workers // WORKER_PROCESSES)
        loaders = [
            ctx.Process(target=_worker_process, args=(i * per, per, seconds + 6, env))
            for i in range(WORKER_PROCESSES)
        ]
        for p in loaders:
            p.start()
        api_proc = psutil.Process(api.pid)
        redis_proc = psutil.Process(server.process.pid)
        time.sleep(5)  # every simulated worker has a running job
        results: Any = ctx.Queue()
        pollers = [
            ctx.Process(
                target=_dashboard_process,
                args=(base, api_key, dashboards_n // DASHBOARD_PROCESSES, seconds, env, results),
            )
            for _ in range(DASHBOARD_PROCESSES)
        ]
        before = _commands(client)
        api_cpu0, redis_cpu0 = api_proc.cpu_times(), redis_proc.cpu_times()
        wall0 = time.monotonic()
        for p in pollers:
            p.start()
        parts = [results.get(timeout=seconds + 120) for _ in pollers]
        wall = time.monotonic() - wall0
        after = _commands(client)
        api_cpu1, redis_cpu1 = api_proc.cpu_times(), redis_proc.cpu_times()
        jobs_done = int(client.zcard(f"{prefix}:jobs") or 0)
        for p in [*pollers, *loaders]:
            p.join(30)
        polled = {
            "latencies": [x for part in parts for x in part["latencies"]],
            "statuses": {},
            "failures": sum(part["failures"] for part in parts),
        }
        for part in parts:
            for code, n in part["statuses"].items():
                polled["statuses"][code] = polled["statuses"].get(code, 0) + n
    finally:
        stop(api)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    calls = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    calls = {name: n for name, n in sorted(calls.items(), key=lambda kv: -kv[1]) if n > 0}
    lat = polled["latencies"]
    ok = polled["statuses"].get(200, 0)
    return {
        "mocked_out_jobs": True,
        "workers": workers,
        "dashboards": dashboards_n,
        "seconds": round(wall, 1),
        "poll_interval_s": POLL_S,
        "offered_requests_per_s": round(dashboards_n / POLL_S, 1),
        "served_requests_per_s": round(len(lat) / seconds, 1),  # the pollers' own window
        "ok_share": round(ok / max(len(lat), 1), 4),
        "statuses": polled["statuses"],
        "transport_failures": polled["failures"],
        "latency_ms": {
            "p50": round(percentile(lat, 50) * 1000, 1) if lat else None,
            "p99": round(percentile(lat, 99) * 1000, 1) if lat else None,
            "max": round(max(lat) * 1000, 1) if lat else None,
        },
        "redis_commands_per_s": round(sum(calls.values()) / wall, 1),
        "redis_top_commands_per_s": {k: round(v / wall, 1) for k, v in list(calls.items())[:8]},
        "api_cpu_share": round(
            (api_cpu1.user + api_cpu1.system - api_cpu0.user - api_cpu0.system) / wall, 3
        ),
        "redis_cpu_share": round(
            (redis_cpu1.user + redis_cpu1.system - redis_cpu0.user - redis_cpu0.system) / wall,
            3,
        ),
        "simulated_jobs_created": jobs_done,
        "api_cpu_ms_per_request": round(
            1000
            * (api_cpu1.user + api_cpu1.system - api_cpu0.user - api_cpu0.system)
            / max(len(lat), 1),
            2,
        ),
        "redis_cpu_us_per_command": round(
            1e6
            * (redis_cpu1.user + redis_cpu1.system - redis_cpu0.user - redis_cpu0.system)
            / max(sum(calls.values()), 1),
            2,
        ),
        "load_average": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--dashboards", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    result = run(args.workers, args.dashboards, args.seconds)
    print(result)
    command = (
        f".venv/bin/python -m bench.scale_sim --workers {args.workers} "
        f"--dashboards {args.dashboards} --seconds {args.seconds:g}"
    )
    notes = ["MOCKED-OUT JOBS: simulated workers write records; no model runs"]
    write_result(SUITE, [result], command, notes=notes,
                 machine=machine_info(with_tensorflow=False))  # fmt: skip


if __name__ == "__main__":
    main()

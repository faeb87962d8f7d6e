"""The chaos drill: jobs through a real service while workers are SIGKILLed and Redis restarts.

A private stack, loopback only: its own ``redis-server`` (free port, AOF on, data in a temp
folder; restarted with the same folder and port), the API as ``make run`` starts it
(``app.serve``'s uvicorn command) and ``workers`` Celery worker processes of one pool child
each (``tests/service_processes.py``, as the end-to-end tests start them). Short lease and
reconcile intervals (``PRUNEKIT_LEASE_TTL``, ``PRUNEKIT_RECONCILE_INTERVAL``) so recovery
is quick; ``PRUNEKIT_MAX_ATTEMPTS`` is the default (3).

``jobs`` magnitude-pruning jobs on a ``wide_mlp`` (17.9 M parameters, ~10 s each) are
submitted at once. Then, at random moments drawn from a fixed seed, the drill

* SIGKILLs the pool child running a random running job (the worker's main process stays up
  and forks a new child), or the whole worker (its process group: main process, pool child,
  warden), then starts a fresh worker so ``workers`` stay up;
* stops Redis (SIGTERM) and starts it again on the same data folder and port.

No job is killed more than ``max_attempts - 1`` times, so every job can still succeed.
A monitor thread lists the jobs every 0.2 s and keeps each job's history (status, attempts,
progress).

It reports:

* **jobs lost**: not finished by the deadline, or failed with an infrastructure reason
  (a failure with another reason is listed separately; the goal is that every job succeeds);
* **jobs run twice with visible effects**: a published model whose bytes do not hash to its
  ETag or to the recorded sha256, more than one ``attempt-*`` directory left, events after the
  terminal one, or a final status that changed after it was first seen terminal (the drill
  waits past a lease TTL after the last job ended before checking, so a late writer would
  have acted);
* **time to recovery** of each disruption: for a kill, from the kill to the killed job's next
  progress (running again with a higher attempt count, or finished; this includes its wait in
  the queue behind the jobs submitted before it), and, apart, to its message being back in the
  queue (the failure handling alone); for a Redis restart, from the stop to ``/readyz``
  answering 200 again;
* totals: the attempts histogram, wall time, the load average.

Run: ``python -m bench.chaos_drill [--quick]`` (or ``python -m bench.run_all --only
chaos_drill``). Every process it starts is stopped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.common import WORK_DIR, bench_command, machine_info, median, percentile, write_result
from core.embedded_redis import EmbeddedRedis, free_port, start_embedded
from tests.service_processes import REPO, spawn_api, spawn_worker

SUITE = "chaos_drill"
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
PREFIX = QUEUE = "chaosdrill"
JOB_SPEC = {"name": "magnitude", "sparsity": 0.5}
LEASE_TTL_S = 3
WIDE_HIDDEN = 4096  # a job on it takes ~10 s here: kills land mid-job
# failures that mean the service lost the job, not that the job itself was bad
COLUMNS = ["kind", "at_s", "job_id", "attempt", "down_s", "requeue_s", "recovery_s", "recovered_by"]
INFRA_REASONS = frozenset(
    {"too_many_attempts", "worker_lost", "lease_lost", "internal_error", "timeout"}
)


@dataclass(frozen=True)
class DrillConfig:
    jobs: int
    workers: int
    child_kills: int  # SIGKILL of the pool child running a job
    worker_kills: int  # SIGKILL of a whole worker (its process group)
    redis_restarts: int
    seed: int = 13
    gap_s: tuple[float, float] = (1.0, 6.0)  # random wait before each disruption
    max_attempts: int = 3  # the service's default PRUNEKIT_MAX_ATTEMPTS
    deadline_s: float = 900.0  # the whole drill, startup excluded
    settle_s: float = 2 * LEASE_TTL_S + 2  # after the last job ends, before checking


FULL = DrillConfig(jobs=20, workers=2, child_kills=7, worker_kills=3, redis_restarts=2)
QUICK = DrillConfig(
    jobs=6, workers=2, child_kills=2, worker_kills=1, redis_restarts=1, deadline_s=420.0
)


@dataclass
class Disruption:
    kind: str  # "child_kill", "worker_kill", "redis_restart"
    at_s: float  # seconds since the drill started
    job_id: str | None = None
    attempt: int | None = None  # the job's attempts when it was killed
    down_s: float | None = None  # Redis: how long it was stopped
    recovered_at_s: float | None = None
    recovery_s: float | None = None
    recovered_by: str | None = None
    requeued_at_s: float | None = None  # kills: the job back in the queue (or running again)
    requeue_s: float | None = None


def schedule(cfg: DrillConfig, rng: random.Random) -> list[tuple[str, float]]:
    """The disruptions in a random order, each with its random wait before it."""
    kinds = (
        ["child_kill"] * cfg.child_kills
        + ["worker_kill"] * cfg.worker_kills
        + ["redis_restart"] * cfg.redis_restarts
    )
    rng.shuffle(kinds)
    return [(kind, rng.uniform(*cfg.gap_s)) for kind in kinds]


# ------------------------------------------------------------------------------ the stack
class Stack:
    """Private redis-server, API and workers; everything it starts is stopped in close()."""

    def __init__(self, tmp: Path, max_attempts: int) -> None:
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.home = tmp / "home"
        self.redis: EmbeddedRedis | None = None
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.everything: list[subprocess.Popen[bytes]] = []  # every process group started
        self.max_attempts = max_attempts
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.headers: dict[str, str] = {}
        self.client = httpx.Client(base_url=self.base_url, timeout=30)
        self.env: dict[str, str] = {}
        self._started = 0
        self.external_exits = 0  # workers that exited without the drill killing them

    def start(self, workers: int) -> None:
        """Redis, an API key, the API, ``workers`` workers (close() stops what got started)."""
        self.redis = start_embedded(self.tmp / "redis")
        self.env = {
            "PRUNEKIT_REDIS_URL": self.redis.url,
            "PRUNEKIT_HOME": str(self.home),
            "PRUNEKIT_KEY_PREFIX": PREFIX,
            "PRUNEKIT_QUEUE": QUEUE,
            "PRUNEKIT_LEASE_TTL": str(LEASE_TTL_S),
            "PRUNEKIT_RECONCILE_INTERVAL": "1",
            "PRUNEKIT_MAX_ATTEMPTS": str(self.max_attempts),
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        out = subprocess.run(
            [sys.executable, "-m", "app.auth.cli", "create", "--tenant", "drill", "--json"],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **self.env},
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        self.headers = {"Authorization": f"Bearer {json.loads(out.stdout)['key']}"}
        self.client.headers.update(self.headers)
        self.api = spawn_api(self.logs, self.port, self.env)
        self.everything.append(self.api)
        for _ in range(workers):
            self.start_worker()

    @property
    def r(self) -> redis.Redis:
        assert self.redis is not None
        return redis.Redis.from_url(self.redis.url, decode_responses=True, socket_timeout=5)

    def start_worker(self) -> subprocess.Popen[bytes]:
        w = spawn_worker(self.logs, self.env, concurrency=1, name=f"w{self._started}")
        self._started += 1
        self.workers.append(w)
        self.everything.append(w)
        return w

    def revive_workers(self) -> int:
        """Start a fresh worker for each that exited without the drill killing it (on a
        shared machine something else may end it); returns how many."""
        gone = [w for w in self.workers if w.poll() is not None]
        for w in gone:
            self.workers.remove(w)
            self.start_worker()
        return len(gone)

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.api is not None and self.api.poll() is not None:
                raise RuntimeError(f"the API exited:\n{self.tail_logs()}")
            with contextlib.suppress(httpx.HTTPError):
                if self.client.get("/readyz").status_code == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"service not ready in {timeout}s:\n{self.tail_logs()}")

    def tail_logs(self) -> str:
        return "\n".join(p.read_text()[-2000:] for p in sorted(self.logs.glob("*.log")))

    def job_record(self, job_id: str) -> dict[str, Any]:
        raw = self.r.hgetall(f"{PREFIX}:job:{job_id}")
        return {k: json.loads(v) for k, v in raw.items()}

    def lease_holder_pid(self, job_id: str) -> int | None:
        holder = self.r.get(f"{PREFIX}:job:{job_id}:lease")
        return int(holder.split(":")[1]) if holder else None

    def restart_redis(self) -> float:
        """Stop Redis (SIGTERM: it syncs its AOF and exits), start it on the same folder and
        port; returns how long it was down."""
        assert self.redis is not None
        port, started = self.redis.port, time.monotonic()
        self.redis.stop()
        time.sleep(1.0)  # clients see it gone, not a blip
        self.redis = start_embedded(self.tmp / "redis", port=port)
        return time.monotonic() - started

    def close(self) -> None:
        self.client.close()
        for proc in self.everything:  # SIGTERM first: workers end their children
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.everything:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        for proc in self.everything:  # then nothing of any group survives
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        if self.redis is not None:
            self.redis.stop()


@contextlib.contextmanager
def running_stack(cfg: DrillConfig) -> Iterator[Stack]:
    tmp = Path(tempfile.mkdtemp(prefix="prunekit-chaos-"))
    stack = Stack(tmp, cfg.max_attempts)
    try:
        stack.start(cfg.workers)
        yield stack
    finally:
        stack.close()
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------ observation
@dataclass
class Monitor:
    """Lists the jobs every ``every_s`` in a thread; keeps each job's changes."""

    stack: Stack
    t0: float
    every_s: float = 0.2
    history: dict[str, list[tuple[float, str, int, float]]] = field(default_factory=dict)
    answers: Counter[str] = field(default_factory=Counter)
    # (time, in the queue or not) each time a job's message entered or left the queue list
    queue_changes: dict[str, list[tuple[float, bool]]] = field(default_factory=dict)
    queue_polls: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _watch_queue(self, r: redis.Redis, inside: set[str]) -> set[str]:
        """Note the jobs whose message just entered or left the broker's queue."""
        try:
            waiting = "\n".join(r.lrange(f"{PREFIX}:celery:{QUEUE}", 0, -1))
        except redis.RedisError:
            return inside
        now = time.monotonic() - self.t0
        found = {job_id for job_id in self.history if job_id in waiting}
        for job_id in found ^ inside:
            self.queue_changes.setdefault(job_id, []).append((now, job_id in found))
        self.queue_polls.append(now)
        return found

    def in_queue(self, job_id: str, at_s: float) -> bool:
        state = False
        for t, inside in self.queue_changes.get(job_id, []):
            if t > at_s:
                break
            state = inside
        return state

    def _run(self) -> None:
        assert self.stack.redis is not None
        r = redis.Redis.from_url(
            self.stack.redis.url, decode_responses=True, socket_timeout=2, socket_connect_timeout=1
        )
        inside: set[str] = set()
        with httpx.Client(
            base_url=self.stack.base_url, timeout=5, headers=self.stack.headers
        ) as client:
            while not self._stop.wait(self.every_s):
                inside = self._watch_queue(r, inside)
                try:
                    resp = client.get("/v1/jobs", params={"limit": 200})
                except httpx.HTTPError as exc:
                    self.answers[type(exc).__name__] += 1
                    continue
                self.answers[str(resp.status_code)] += 1
                if resp.status_code != 200:
                    continue
                now = time.monotonic() - self.t0
                for job in resp.json()["items"]:
                    state = (
                        job["status"],
                        int(job["attempts"]),
                        float(job["progress"]["fraction"]),
                    )
                    seen = self.history.setdefault(job["id"], [])
                    if not seen or seen[-1][1:] != state:
                        seen.append((now, *state))

    def status(self, job_id: str) -> tuple[str, int] | None:
        seen = self.history.get(job_id)
        return (seen[-1][1], seen[-1][2]) if seen else None

    def progressed_after(self, job_id: str, at_s: float, attempt: int) -> float | None:
        """When ``job_id`` was first seen running a later attempt, or finished, after ``at_s``."""
        for t, status, attempts, _ in self.history.get(job_id, []):
            if t > at_s and (status in TERMINAL or (status == "running" and attempts > attempt)):
                return t
        return None

    def requeued_after(self, job_id: str, at_s: float, attempt: int) -> float | None:
        """When a message for ``job_id`` was first seen waiting in the queue after ``at_s``
        (a requeue, or a duplicate already there), or the job running again or finished."""
        back = next((t for t in self.queue_polls if t > at_s and self.in_queue(job_id, t)), None)
        ran = self.progressed_after(job_id, at_s, attempt)
        return min([t for t in (back, ran) if t is not None], default=None)

    def changed_after_terminal(self, job_id: str) -> list[str]:
        """What was seen to change after the job was first seen finished: its status or its
        attempt count (a second delivery that left a trace on a finished job)."""
        seen = self.history.get(job_id, [])
        first = next((i for i, (_, s, _, _) in enumerate(seen) if s in TERMINAL), None)
        if first is None:
            return []
        _, status, attempts, _ = seen[first]
        return [
            f"{s} (attempts {a}) at {t:.1f}s"
            for t, s, a, _ in seen[first + 1 :]
            if (s, a) != (status, attempts)
        ]


# ------------------------------------------------------------------------------ the drill
def wide_model_file(tmp: Path) -> Path:
    """``tests.tiny_models.wide_mlp`` with ``WIDE_HIDDEN`` units (17.9 M parameters) as a
    ``.keras`` file."""
    from tests import tiny_models

    path = tmp / "wide_mlp.keras"
    tiny_models.wide_mlp(seed=0, hidden=WIDE_HIDDEN).save(path)
    return path


def running_jobs(stack: Stack, ids: list[str]) -> dict[str, int]:
    """Job id -> the pid holding its lease, for the jobs a worker runs right now."""
    found: dict[str, int] = {}
    for job_id in ids:
        with contextlib.suppress(redis.RedisError):
            pid = stack.lease_holder_pid(job_id)
            if pid is not None:
                found[job_id] = pid
    return found


def disrupt(
    stack: Stack, monitor: Monitor, kind: str, ids: list[str], kills: Counter[str],
    cfg: DrillConfig, rng: random.Random, t0: float, deadline: float,
) -> Disruption | None:  # fmt: skip
    """Perform one disruption; None if every job finished (or the deadline passed) before
    one ran that could be killed."""
    if kind == "redis_restart":
        at = time.monotonic() - t0
        down = stack.restart_redis()
        d = Disruption(kind, round(at, 2), down_s=round(down, 2))
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if stack.client.get("/readyz", timeout=5).status_code == 200:
                    d.recovered_at_s = time.monotonic() - t0
                    d.recovered_by = "readyz 200"
                    break
            time.sleep(0.05)
        return d
    while time.monotonic() < deadline:
        candidates = {
            job_id: pid
            for job_id, pid in running_jobs(stack, ids).items()
            if kills[job_id] < cfg.max_attempts - 1
        }
        stack.external_exits += stack.revive_workers()
        if all((monitor.status(j) or ("", 0))[0] in TERMINAL for j in ids):
            return None  # nothing left to kill
        if candidates:
            job_id = rng.choice(sorted(candidates))
            pid = candidates[job_id]
            attempt = int(stack.job_record(job_id).get("attempts", 0))
            at = time.monotonic() - t0
            if kind == "worker_kill":
                try:
                    group = os.getpgid(pid)
                except ProcessLookupError:  # the child just ended; try again
                    continue
                worker = next((w for w in stack.workers if w.pid == group), None)
                if worker is None:  # the child just ended; try again
                    continue
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)
                stack.workers.remove(worker)
                stack.start_worker()  # keep the worker count
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
            kills[job_id] += 1
            return Disruption(kind, round(at, 2), job_id=job_id, attempt=attempt)
        time.sleep(0.1)
    return None


def check_job(stack: Stack, monitor: Monitor, job_id: str) -> dict[str, Any]:
    """The final state of one job and every visible sign of a second run."""
    job = stack.client.get(f"/v1/jobs/{job_id}").json()
    events = stack.client.get(f"/v1/jobs/{job_id}/events", params={"limit": 1000}).json()
    items = events["items"]
    terminal_at = next(
        (i for i, e in enumerate(items) if e["type"] == "status" and e["data"].get("status")
         in TERMINAL), None,
    )  # fmt: skip
    effects: list[str] = []
    if terminal_at is not None and terminal_at < len(items) - 1:
        effects.append(f"{len(items) - 1 - terminal_at} event(s) after the terminal one")
    changed = monitor.changed_after_terminal(job_id)
    if changed:
        effects.append(f"record changed after it was terminal: {changed}")
    job_dirs = [p for p in stack.home.rglob(job_id) if p.is_dir()]
    attempt_dirs = [a.name for d in job_dirs for a in d.glob("attempt-*")]
    if len(attempt_dirs) > 1:
        effects.append(f"{len(attempt_dirs)} attempt directories: {sorted(attempt_dirs)}")
    sha_ok = None
    if job["status"] == "succeeded":
        resp = stack.client.get(f"/v1/jobs/{job_id}/model")
        digest = hashlib.sha256(resp.content).hexdigest()
        recorded = (stack.job_record(job_id).get("artifact") or {}).get("sha256")
        sha_ok = resp.status_code == 200 and resp.headers.get("etag") == f'"{digest}"' == (
            f'"{recorded}"'
        )
        if not sha_ok:
            effects.append(
                f"download {resp.status_code}: bytes {digest[:12]}, ETag "
                f"{resp.headers.get('etag')}, recorded {recorded}"
            )
        if not attempt_dirs:
            effects.append("succeeded but no attempt directory")
    error = job.get("error") or {}
    return {
        "job_id": job_id,
        "status": job["status"],
        "attempts": job["attempts"],
        "error_reason": error.get("reason"),
        "events": len(items),
        "attempt_dirs": len(attempt_dirs),
        "sha256_matches": sha_ok,
        "double_effects": effects,
        "timeline": [f"{e['at'][11:23]} {e['message']}" for e in items],
    }


def drill(cfg: DrillConfig) -> dict[str, Any]:
    rng = random.Random(cfg.seed)
    plan = schedule(cfg, rng)
    load_before = os.getloadavg()
    with running_stack(cfg) as stack:
        model_path = wide_model_file(stack.tmp)
        stack.wait_ready()
        with model_path.open("rb") as f:
            model = stack.client.post("/v1/models", files={"file": (model_path.name, f)})
        model.raise_for_status()
        model_id = model.json()["id"]
        while stack.client.get(f"/v1/models/{model_id}").json()["inspection"]["status"] == (
            "pending"
        ):
            time.sleep(0.2)
        t0 = time.monotonic()
        deadline = t0 + cfg.deadline_s
        monitor = Monitor(stack, t0)
        monitor.start()
        try:
            ids = []
            for _ in range(cfg.jobs):
                resp = stack.client.post(
                    "/v1/jobs", json={"model_id": model_id, "strategy": JOB_SPEC}
                )
                resp.raise_for_status()
                ids.append(resp.json()["id"])
            kills: Counter[str] = Counter()
            disruptions: list[Disruption] = []
            for kind, gap in plan:
                time.sleep(gap)
                d = disrupt(stack, monitor, kind, ids, kills, cfg, rng, t0, deadline)
                if d is None:
                    break
                disruptions.append(d)
                print(f"[{d.at_s:7.1f}s] {kind} {d.job_id or ''}", flush=True)
            while time.monotonic() < deadline:
                stack.external_exits += stack.revive_workers()
                states = [monitor.status(j) for j in ids]
                if all(s is not None and s[0] in TERMINAL for s in states):
                    break
                time.sleep(0.5)
            last_end = time.monotonic() - t0
            time.sleep(cfg.settle_s)  # late writers, if any, act now
            time.sleep(2 * monitor.every_s)
        finally:
            monitor.stop()
        wall = time.monotonic() - t0
        for d in disruptions:
            if d.job_id is not None:
                d.recovered_at_s = monitor.progressed_after(d.job_id, d.at_s, d.attempt or 0)
                d.recovered_by = "job progressed" if d.recovered_at_s is not None else None
                requeued = monitor.requeued_after(d.job_id, d.at_s, d.attempt or 0)
                if requeued is not None:
                    d.requeued_at_s = round(requeued, 2)
                    d.requeue_s = round(requeued - d.at_s, 2)
            if d.recovered_at_s is not None:
                d.recovered_at_s = round(d.recovered_at_s, 2)
                d.recovery_s = round(d.recovered_at_s - d.at_s, 2)
        jobs = [check_job(stack, monitor, j) for j in ids]
        worker_logs = "".join(p.read_text() for p in stack.logs.glob("w*.log"))
        kept = WORK_DIR / f"{SUITE}_logs{'.quick' if cfg is QUICK else ''}"
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(stack.logs, kept)  # for a post-mortem; bench/work is not committed
    return {
        "jobs": jobs,
        "disruptions": [asdict(d) for d in disruptions],
        "planned": len(plan),
        "performed": len(disruptions),
        "workers_exited_externally": stack.external_exits,
        "wall_s": round(wall, 1),
        "last_job_end_s": round(last_end, 1),
        "api_answers_to_monitor": dict(monitor.answers),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "worker_log_mentions": {
            phrase: worker_logs.count(phrase)
            for phrase in ("queued again", "lease lost", "Traceback", "WorkerLostError")
        },
    }


def summarize(cfg: DrillConfig, out: dict[str, Any]) -> dict[str, Any]:
    jobs, disruptions = out["jobs"], out["disruptions"]
    lost = [
        j for j in jobs
        if j["status"] not in TERMINAL
        or (j["status"] != "succeeded" and (j["error_reason"] in INFRA_REASONS
                                            or j["status"] == "cancelled"))
    ]  # fmt: skip
    other_failures = [j for j in jobs if j["status"] == "failed" and j not in lost]
    doubled = [j for j in jobs if j["double_effects"]]
    recoveries = [d["recovery_s"] for d in disruptions if d["recovery_s"] is not None]
    requeues = [d["requeue_s"] for d in disruptions if d["requeue_s"] is not None]
    by_kind: dict[str, list[float]] = {}
    for d in disruptions:
        if d["recovery_s"] is not None:
            by_kind.setdefault(d["kind"], []).append(d["recovery_s"])
    return {
        "jobs": len(jobs),
        "succeeded": sum(j["status"] == "succeeded" for j in jobs),
        "jobs_lost": len(lost),
        "lost": [(j["job_id"], j["status"], j["error_reason"]) for j in lost],
        "other_failures": [(j["job_id"], j["error_reason"]) for j in other_failures],
        "jobs_run_twice_with_effects": len(doubled),
        "double_effects": {j["job_id"]: j["double_effects"] for j in doubled},
        "disruptions": dict(Counter(d["kind"] for d in disruptions)),
        "unrecovered": sum(d["recovery_s"] is None for d in disruptions),
        "recovery_p50_s": round(median(recoveries), 2) if recoveries else None,
        "recovery_p99_s": round(percentile(recoveries, 99), 2) if recoveries else None,
        "recovery_max_s": max(recoveries) if recoveries else None,
        "recovery_by_kind": {
            k: {"n": len(v), "median_s": round(median(v), 2), "max_s": max(v)}
            for k, v in by_kind.items()
        },
        "requeue_p50_s": round(median(requeues), 2) if requeues else None,
        "requeue_p99_s": round(percentile(requeues, 99), 2) if requeues else None,
        "attempts_histogram": {
            str(k): v for k, v in sorted(Counter(j["attempts"] for j in jobs).items())
        },
        "wall_s": out["wall_s"],
    }


def main(quick: bool = False) -> tuple[Path, bool]:
    cfg = QUICK if quick else FULL
    out = drill(cfg)
    s = summarize(cfg, out)
    print(json.dumps(s, indent=1), flush=True)
    rows = out["disruptions"]
    notes = [
        f"{cfg.jobs} jobs ({JOB_SPEC['name']} {JOB_SPEC['sparsity']} of wide_mlp, 17.9 M "
        f"parameters, .keras), {cfg.workers} Celery workers of one pool child each, private "
        f"redis-server with AOF; PRUNEKIT_LEASE_TTL={LEASE_TTL_S}, "
        f"PRUNEKIT_RECONCILE_INTERVAL=1, PRUNEKIT_MAX_ATTEMPTS={cfg.max_attempts}; seed "
        f"{cfg.seed}, a wait of U{cfg.gap_s} s before each disruption.",
        f"Disruptions: {cfg.child_kills} SIGKILLs of the pool child running a job, "
        f"{cfg.worker_kills} of a whole worker (restarted at once), {cfg.redis_restarts} "
        "Redis stops (SIGTERM) and restarts on the same data folder; no job killed more "
        f"than {cfg.max_attempts - 1} times.",
        "Recovery: kill -> the killed job seen running a later attempt or finished (includes "
        "its wait in the queue behind the jobs submitted before it; jobs are listed every "
        "0.2 s); Redis stop -> /readyz 200. Requeue: kill -> the job's message seen back in "
        "the queue (or the job running again), the failure handling itself.",
        f"Load average (1/5/15 min) before {out['load_before']}, after {out['load_after']} "
        f"on {os.cpu_count()} cores shared with other work.",
    ]
    headline = [
        {"metric": "chaos drill: jobs lost", "value": s["jobs_lost"], "unit": "jobs"},
        {"metric": "chaos drill: jobs run twice with visible effects",
         "value": s["jobs_run_twice_with_effects"], "unit": "jobs"},
        {"metric": "chaos drill: p99 time to recovery (kill: job running again, queue wait "
         "included; Redis: /readyz 200)", "value": s["recovery_p99_s"], "unit": "s"},
        {"metric": "chaos drill: p99 kill -> job back in the queue", "value": s["requeue_p99_s"],
         "unit": "s"},
    ]  # fmt: skip
    path = write_result(
        SUITE,
        rows,
        bench_command(SUITE, quick),
        extra={"config": asdict(cfg), "job_spec": JOB_SPEC, "summary": s, **out},
        quick=quick,
        headline=headline,
        notes=notes,
        columns=COLUMNS,
        machine=machine_info(),
    )
    ok = s["jobs_lost"] == 0 and s["jobs_run_twice_with_effects"] == 0 and not s["unrecovered"]
    return path, ok


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds: every process the drill started is stopped


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    result, goals_met = main(parser.parse_args().quick)
    print(result)
    sys.exit(0 if goals_met else 1)

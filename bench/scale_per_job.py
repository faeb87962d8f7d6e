"""What one job costs the shared parts: Redis commands, broker messages, object-store bytes,
and API requests while a client polls.

A private stack as several machines would run it: ``moto_server`` (S3 over HTTP) behind a
byte-counting TCP proxy, its own ``redis-server`` watched with ``MONITOR`` (every command,
sorted by key: records vs. broker), the API and one worker (each with its own empty
``PRUNEKIT_HOME``). One real job (a real model, really pruned: global magnitude at 0.5 on a
256-2048-10 MLP saved as .keras): upload, inspection, job, polling with the Python client's
interval, download. Counted between the upload and the end of the download, then once more
for a quiet stretch of polling alone (per request).

Run: ``python -m bench.scale_per_job``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.common import machine_info, write_result

SUITE = "scale_per_job"
POLL_S = 0.5  # prunekit_client's wait() default


class CountingProxy(threading.Thread):
    """A loopback TCP proxy to ``target`` that counts the bytes each way."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.up = 0  # client -> store
        self.down = 0  # store -> client
        self.connections = 0
        self.lock = threading.Lock()

    def run(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                with self.lock:
                    if up:
                        self.up += len(data)
                    else:
                        self.down += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def snapshot(self) -> tuple[int, int]:
        with self.lock:
            return self.up, self.down


class Monitor(threading.Thread):
    """Every command Redis runs (``MONITOR``), counted by kind: broker or records."""

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__(daemon=True)
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=None, health_check_interval=0)
        self.prefix = prefix
        self.counts: Counter[str] = Counter()
        self.commands: Counter[str] = Counter()
        self.messages_published = 0
        self.lock = threading.Lock()
        self.active = False

    def run(self) -> None:
        with self.client.monitor() as m:  # type: ignore[no-untyped-call]
            for item in m.listen():
                command = str(item.get("command", ""))
                words = command.split()
                if not words:
                    continue
                name = words[0].upper()
                arg = words[1].strip('"') if len(words) > 1 else ""
                if "celery" in arg or "kombu" in arg or "pidbox" in arg or arg.startswith("_"):
                    kind = "broker"
                elif name in ("MULTI", "EXEC", "WATCH", "UNWATCH", "PING", "INFO", "MONITOR"):
                    kind = "control"
                else:
                    kind = "records"
                with self.lock:
                    if not self.active:
                        continue
                    self.counts[kind] += 1
                    self.commands[f"{kind}:{name}"] += 1
                    if name in ("LPUSH", "RPUSH") and f"{self.prefix}:celery:" in arg:
                        self.messages_published += 1

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
            self.commands.clear()
            self.messages_published = 0
            self.active = True

    def take(self) -> dict[str, Any]:
        if not self.is_alive():
            raise RuntimeError("MONITOR stopped early: the counts would be short")
        with self.lock:
            self.active = False
            return {
                "by_kind": dict(self.counts),
                "top": dict(self.commands.most_common(12)),
                "broker_messages_published": self.messages_published,
            }


def run() -> dict[str, Any]:
    from core.embedded_redis import free_port, start_embedded
    from tests import tiny_models
    from tests.s3_server import MotoS3
    from tests.service_processes import spawn_api, spawn_worker, stop

    work = Path(tempfile.mkdtemp(prefix="scale-per-job-"))
    logs = work / "logs"
    logs.mkdir()
    model_path = work / "wide.keras"
    tiny_models.wide_mlp().save(model_path)
    s3 = MotoS3(logs).start()
    proxy = CountingProxy(("127.0.0.1", s3.port))
    proxy.start()
    server = start_embedded(work / "redis")
    prefix = f"perjob{uuid.uuid4().hex[:6]}"
    env = {
        **s3.env,
        "PRUNEKIT_S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
        "PRUNEKIT_REDIS_URL": server.url,
        "PRUNEKIT_KEY_PREFIX": prefix,
        "PRUNEKIT_QUEUE": prefix,
    }
    out = subprocess.run(
        [sys.executable, "-m", "app.auth.cli", "create", "--tenant", "bench", "--json"],
        env={**os.environ, **env, "PRUNEKIT_HOME": str(work / "cli")},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    key = json.loads(out.stdout)["key"]
    port = free_port()
    api = spawn_api(logs, port, {**env, "PRUNEKIT_HOME": str(work / "api")})
    worker = spawn_worker(logs, {**env, "PRUNEKIT_HOME": str(work / "w")}, concurrency=1)
    monitor = Monitor(server.url, prefix)
    monitor.start()
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the stack did not become ready")
            time.sleep(0.5)
        time.sleep(3)  # let start-up traffic settle
        up0, down0 = proxy.snapshot()
        monitor.reset()
        requests = 0
        started = time.monotonic()
        with model_path.open("rb") as f:
            model = client.post("/v1/models", files={"file": (model_path.name, f)}).json()
        requests += 1
        spec = {"model_id": model["id"], "strategy": {"name": "magnitude", "sparsity": 0.5}}
        job = client.post("/v1/jobs", json=spec).json()
        requests += 1
        polls = 0
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(POLL_S)
            job = client.get(f"/v1/jobs/{job['id']}").json()
            polls += 1
        assert job["status"] == "succeeded", job
        download = client.get(f"/v1/jobs/{job['id']}/model")
        requests += 1
        wall = time.monotonic() - started
        redis_job = monitor.take()
        up1, down1 = proxy.snapshot()
        # polling alone: Redis commands per GET /v1/jobs/{id}
        monitor.reset()
        quiet = 50
        for _ in range(quiet):
            client.get(f"/v1/jobs/{job['id']}")
        redis_poll = monitor.take()
    finally:
        client.close()
        stop(api, worker)
        server.stop()
        s3.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "job": "magnitude 0.5 on a 256-2048-10 MLP (.keras), one worker, S3 (moto) storage",
        "model_bytes": model["size_bytes"],
        "download_bytes": len(download.content),
        "wall_seconds_upload_to_download": round(wall, 1),
        "api_requests": {
            "upload_submit_download": requests,
            "polls": polls,
            "poll_interval_s": POLL_S,
        },
        "redis_commands_per_job": redis_job,
        "redis_commands_per_poll": {
            k: round(v / quiet, 2) for k, v in redis_poll["by_kind"].items()
        },
        "store_bytes_per_job": {"to_store": up1 - up0, "from_store": down1 - down0},
        "load_average": os.getloadavg(),
    }


def main() -> None:
    result = run()
    print(json.dumps(result, indent=2))
    write_result(SUITE, [result], ".venv/bin/python -m bench.scale_per_job",
                 machine=machine_info(with_tensorflow=False))  # fmt: skip


if __name__ == "__main__":
    main()

"""RabbitMQ as the broker: one job end to end, records in Redis, messages in a quorum queue.

A private stack (its own redis-server for the records, the API, one worker) with
``PRUNEKIT_BROKER_URL`` naming the RabbitMQ on 127.0.0.1:5672 (guest/guest) and a queue name
of its own, deleted afterwards. Skipped when no RabbitMQ answers, except under CI, where
that is a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.embedded_redis import free_port, start_embedded
from tests.e2e.conftest import REPO, Service, spawn_api, spawn_worker, stop, wait_ready

pytestmark = pytest.mark.e2e

AMQP_URL = os.environ.get("PRUNEKIT_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def rabbitmq_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def rabbit_stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Service, dict[str, str]]]:
    if not rabbitmq_answers():
        if os.environ.get("CI"):
            pytest.fail("RabbitMQ does not answer on 127.0.0.1:5672 (CI must start it)")
        pytest.skip("no RabbitMQ on 127.0.0.1:5672")
    tmp = tmp_path_factory.mktemp("rabbit")
    logs = tmp / "logs"
    logs.mkdir()
    redis_server = start_embedded(tmp / "redis")
    name = f"pk-test-{uuid.uuid4().hex[:8]}"
    env = {
        "PRUNEKIT_REDIS_URL": redis_server.url,
        "PRUNEKIT_BROKER_URL": AMQP_URL,
        "PRUNEKIT_KEY_PREFIX": name,
        "PRUNEKIT_QUEUE": name,
        "PRUNEKIT_HOME": str(tmp / "home"),
    }
    out = subprocess.run(
        [sys.executable, "-m", "app.auth.cli", "create", "--tenant", "rabbit", "--json"],
        cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    port = free_port()
    api = spawn_api(logs, port, env)
    worker = spawn_worker(logs, env, concurrency=1, name="rabbit")
    svc = Service(f"http://127.0.0.1:{port}", logs, json.loads(out.stdout)["key"])
    try:
        wait_ready(svc, [api, worker])
        yield svc, env
    finally:
        stop(api, worker)
        redis_server.stop()
        _delete_queues(name)


def _delete_queues(name: str) -> None:
    import amqp

    conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
    conn.connect()
    try:
        for queue in (name, f"{name}-gpu"):
            channel = conn.channel()
            channel.queue_delete(queue)
    finally:
        conn.close()


def test_a_job_through_rabbitmq(
    rabbit_stack: tuple[Service, dict[str, str]], model_files: dict[str, Path]
) -> None:
    import amqp
    import redis

    svc, env = rabbit_stack
    model = svc.upload(model_files["keras"])
    spec = {"model_id": model["id"], "strategy": {"name": "magnitude", "sparsity": 0.5}}
    resp = svc.client.post("/v1/jobs", json=spec)
    assert resp.status_code == 202, resp.text
    assert resp.json()["routing"]["queue"] == env["PRUNEKIT_QUEUE"]
    done = svc.wait_job(resp.json()["id"], timeout=120)
    assert done["status"] == "succeeded", done
    body = svc.client.get(f"/v1/jobs/{done['id']}/model")
    assert body.status_code == 200
    assert body.headers["etag"] == f'"{hashlib.sha256(body.content).hexdigest()}"'
    # the records are in Redis, the messages were not: no kombu key there
    r = redis.Redis.from_url(env["PRUNEKIT_REDIS_URL"])
    assert r.exists(f"{env['PRUNEKIT_KEY_PREFIX']}:job:{done['id']}")
    assert not list(r.scan_iter(match=f"{env['PRUNEKIT_KEY_PREFIX']}:celery:*"))
    # the queue is a quorum queue: declaring it classic is refused as inequivalent
    conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
    conn.connect()
    try:
        declared = conn.channel().queue_declare(env["PRUNEKIT_QUEUE"], passive=True)
        assert declared.message_count == 0  # consumed and acknowledged
        with pytest.raises(amqp.exceptions.PreconditionFailed, match="x-queue-type"):
            conn.channel().queue_declare(
                env["PRUNEKIT_QUEUE"], durable=True, auto_delete=False,
                arguments={"x-queue-type": "classic"},
            )  # fmt: skip
    finally:
        conn.close()

"""The queue contract between the API and the worker: task names, sending, broker inspection.

The API (and the reconciler) send tasks *by name* through a producer-side Celery app built
here; the worker (:mod:`worker.celery_app`) registers its tasks under the same names and
reads the same broker settings (:func:`broker_options`), so neither side imports the other.
Importing this module is TensorFlow-free and imports no task code.

The broker is Redis under ``<prefix>:celery:`` (kombu's ``global_keyprefix``). kombu keeps
a queue's waiting messages in lists named after the queue (``<prefix>:celery:<queue>``, one
per priority), messages a worker reserved but has not acknowledged in the hash
``<prefix>:celery:unacked`` and their reservation times in the sorted set
``<prefix>:celery:unacked_index``: :func:`waiting_messages` and :func:`unacked_messages`
read those, for the reconciler to see whether a job's message still exists.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from celery import Celery

from core.records import text, texts
from core.redis import get_redis, zset_scores
from core.settings import Settings, get_settings

RUN_JOB = "prunekit.run_job"
INSPECT_MODEL = "prunekit.inspect_model"
DELIVER_WEBHOOK = "prunekit.deliver_webhook"


def broker_key_prefix(settings: Settings) -> str:
    """Where kombu keeps every broker key in Redis (its ``global_keyprefix``)."""
    return f"{settings.key_prefix}:celery:"


def broker_options(settings: Settings) -> dict[str, Any]:
    """Celery configuration both ends share: broker, key layout, queue and message format."""
    return {
        "broker_url": settings.redis_url,
        "task_default_queue": settings.queue,
        "task_ignore_result": True,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout,
            "global_keyprefix": broker_key_prefix(settings),
        },
        "task_serializer": "json",
        "accept_content": ["json"],
    }


@lru_cache(maxsize=1)
def producer() -> Celery:
    """A Celery app used only as a client: it sends tasks and pings workers, runs none."""
    app = Celery("prunekit")
    app.conf.update(broker_options(get_settings()))
    return app


def enqueue(task_name: str, *args: str) -> None:
    """Send a task by name (no import of the task code, so no TensorFlow in the API)."""
    producer().send_task(task_name, args=list(args), queue=get_settings().queue)


def workers_answering(timeout: float = 1.0) -> list[str]:
    """The names of the workers that answered a ping within ``timeout`` seconds."""
    replies = producer().control.ping(timeout=timeout) or []
    return [name for reply in replies for name in reply]


def waiting_messages() -> str:
    """Every message waiting in our queue (not yet reserved by a worker), as one string."""
    r = get_redis()
    s = get_settings()
    parts: list[str] = []
    for k in r.scan_iter(match=f"{broker_key_prefix(s)}{s.queue}*", count=1000):
        if r.type(k) == "list":
            parts.extend(texts(r.lrange(k, 0, -1)))
    return "\n".join(parts)


def unacked_messages() -> list[tuple[float, str]]:
    """``(reserved at, message)`` for every message a worker took and has not acknowledged
    (kombu keeps them in ``unacked``, with the time of reservation in ``unacked_index``)."""
    r = get_redis()
    prefix = broker_key_prefix(get_settings())
    reserved_at = zset_scores(f"{prefix}unacked_index")
    unacked = r.hgetall(f"{prefix}unacked")
    return [(float(reserved_at.get(text(tag), 0.0)), text(msg)) for tag, msg in unacked.items()]


def messages_in_broker() -> str:
    """Every pending and unacknowledged message of our queue, as one string to search."""
    return "\n".join([waiting_messages(), *(msg for _, msg in unacked_messages())])

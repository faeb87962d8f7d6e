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

import contextlib
import threading
import time
from functools import lru_cache
from typing import Any

from celery import Celery

from core.records import text, texts
from core.redis import get_redis, zset_scores
from core.routing import consumers
from core.settings import Settings, get_settings

RUN_JOB = "prunekit.run_job"
INSPECT_MODEL = "prunekit.inspect_model"
DELIVER_WEBHOOK = "prunekit.deliver_webhook"


def broker_key_prefix(settings: Settings) -> str:
    """Where kombu keeps every broker key in Redis (its ``global_keyprefix``)."""
    return f"{settings.key_prefix}:celery:"


def is_amqp(url: str) -> bool:
    return url.startswith(("amqp://", "amqps://", "pyamqp://"))


def broker_options(settings: Settings) -> dict[str, Any]:
    """Celery configuration both ends share: broker, key layout, queue and message format.

    RabbitMQ (``PRUNEKIT_BROKER_URL=amqp://...``): quorum queues (replicated, fsynced before
    a publish is confirmed), publisher confirms (``send_task`` returns only once the broker
    has the message), topic exchanges (Celery's native delayed delivery for countdowns on
    quorum queues). Job records stay in Redis either way."""
    if is_amqp(settings.broker):
        return {
            "broker_url": settings.broker,
            "task_default_queue": settings.queue,
            "task_default_queue_type": "quorum",
            "task_default_exchange_type": "topic",
            "worker_detect_quorum_queues": True,
            "task_ignore_result": True,
            "broker_connection_retry_on_startup": True,
            "broker_transport_options": {"confirm_publish": True},
            "task_serializer": "json",
            "accept_content": ["json"],
        }
    return {
        "broker_url": settings.broker,
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


def enqueue(task_name: str, *args: str, queue: str | None = None) -> None:
    """Send a task by name (no import of the task code, so no TensorFlow in the API), to
    ``queue`` (a job's routed queue, :mod:`core.routing`) or the base ``PRUNEKIT_QUEUE``."""
    producer().send_task(task_name, args=list(args), queue=queue or get_settings().queue)


SERVED_TTL_S = 10.0
_served: tuple[float, dict[str, list[str]]] | None = None
_served_lock = threading.Lock()
_refreshing = threading.Event()


def _ask_workers(timeout: float) -> dict[str, list[str]]:
    global _served
    served = consumers(producer().control.inspect(timeout=timeout).active_queues())
    with _served_lock:
        _served = (time.monotonic(), served)
    return served


def _refresh_in_background(timeout: float) -> None:
    try:
        _ask_workers(timeout)
    except Exception:
        return  # the next caller tries again; the old view stays meanwhile
    finally:
        _refreshing.clear()


def served_queues(timeout: float = 1.0, max_age_s: float = SERVED_TTL_S) -> dict[str, list[str]]:
    """Queue name -> the live workers consuming it (Celery's ``active_queues`` broadcast,
    which waits ``timeout`` for replies). A view younger than ``max_age_s`` is returned at
    once; an older one too, while a thread asks again, so a submission waits for the
    broadcast only the first time (``max_age_s=0``: always ask and wait, as ``/readyz``)."""
    with _served_lock:
        cached = _served
    if cached is not None and max_age_s > 0:
        at, served = cached
        if time.monotonic() - at >= max_age_s and not _refreshing.is_set():
            _refreshing.set()
            threading.Thread(target=_refresh_in_background, args=(timeout,), daemon=True).start()
        return served
    return _ask_workers(timeout)


def workers_answering(timeout: float = 1.0) -> list[str]:
    """The names of the workers that answered a ping within ``timeout`` seconds."""
    replies = producer().control.ping(timeout=timeout) or []
    return [name for reply in replies for name in reply]


def queue_depths(queues: list[str]) -> dict[str, int]:
    """RabbitMQ: how many messages wait in each queue (AMQP can count a queue, not read it
    without consuming); a queue that does not exist yet counts 0."""
    depths: dict[str, int] = {}
    with producer().connection_for_read() as conn:
        for queue in queues:
            channel = conn.channel()
            try:
                depths[queue] = int(channel.queue_declare(queue, passive=True).message_count)
            except Exception:  # 404 NOT_FOUND closes the channel: no such queue yet
                depths[queue] = 0
            finally:
                with contextlib.suppress(Exception):
                    channel.close()
    return depths


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

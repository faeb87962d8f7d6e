"""The Celery application, configured from the service settings.

Importing this module is cheap and TensorFlow-free: the API imports it to send tasks by
name. The worker process additionally imports ``worker.tasks`` (via ``include``), which
imports TensorFlow in the parent *without running any op*, so forked children start fast
and do not deadlock (TF must not have run before ``fork``).
"""

from __future__ import annotations

from celery import Celery

from app.settings import Settings, get_settings

RUN_JOB = "prunekit.run_job"
INSPECT_MODEL = "prunekit.inspect_model"
DELIVER_WEBHOOK = "prunekit.deliver_webhook"


def create_celery(settings: Settings) -> Celery:
    app = Celery(
        "prunekit",
        broker=settings.redis_url,
        # worker.environment first: it sets KERAS_HOME etc. before worker.tasks imports Keras
        include=["worker.environment", "worker.tasks", "worker.lifecycle", "worker.webhooks"],
    )
    app.conf.update(
        task_default_queue=settings.queue,
        task_ignore_result=True,
        task_acks_late=True,  # a job is acknowledged only once it finished...
        task_reject_on_worker_lost=True,  # ...and redelivered if its worker died
        worker_prefetch_multiplier=1,
        worker_max_tasks_per_child=1,  # TF keeps memory per process: recycle children
        # resident-set limit, also enforced *during* a job by worker.guard (0: none)
        worker_max_memory_per_child=settings.worker_max_memory_mb * 1024 or None,
        worker_hijack_root_logger=False,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "global_keyprefix": f"{settings.key_prefix}:celery:",
        },
        worker_send_task_events=False,
        task_serializer="json",
        accept_content=["json"],
    )
    return app


celery_app = create_celery(get_settings())


def enqueue(task_name: str, *args: str) -> None:
    """Send a task by name (no import of the task code, so no TensorFlow in the API)."""
    celery_app.send_task(task_name, args=list(args), queue=get_settings().queue)


def workers_answering(timeout: float = 1.0) -> list[str]:
    replies = celery_app.control.ping(timeout=timeout) or []
    return [name for reply in replies for name in reply]

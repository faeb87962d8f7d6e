"""The worker's Celery application, configured from the service settings.

Task names and the broker settings both ends share come from :mod:`core.queue` (the API sends
by name through its producer there and never imports this module). The worker process
additionally imports ``worker.tasks`` (via ``include``), which imports TensorFlow in the
parent *without running any op*, so forked children start fast and do not deadlock (TF must
not have run before ``fork``).
"""

from __future__ import annotations

from celery import Celery

from core.queue import broker_options
from core.settings import Settings, get_settings


def create_celery(settings: Settings) -> Celery:
    app = Celery(
        "prunekit",
        # worker.environment first: it sets KERAS_HOME etc. before worker.tasks imports Keras
        include=["worker.environment", "worker.tasks", "worker.lifecycle", "worker.webhooks"],
    )
    app.conf.update(broker_options(settings))
    app.conf.update(
        task_acks_late=True,  # a job is acknowledged only once it finished...
        task_reject_on_worker_lost=True,  # ...and redelivered if its worker died
        worker_prefetch_multiplier=1,
        worker_max_tasks_per_child=1,  # TF keeps memory per process: recycle children
        # resident-set limit, also enforced *during* a job by worker.guard (0: none)
        worker_max_memory_per_child=settings.worker_max_memory_mb * 1024 or None,
        worker_hijack_root_logger=False,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        worker_send_task_events=False,
    )
    return app


celery_app = create_celery(get_settings())

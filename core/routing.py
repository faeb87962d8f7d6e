"""Which queue a job goes to: by the resources it needs, and who serves that queue.

Two classes of work:

* ``gpu``: jobs that run gradient steps on the job's dataset (fine-tuning with epochs > 0,
  or a strategy that trains or takes gradients: gradual, l0, l1, saliency, slimming, filter
  with the Taylor criterion). Queue ``PRUNEKIT_QUEUE + "-gpu"``.
* ``cpu``: everything else (one-shot strategies, model inspections, webhook deliveries).
  Queue ``PRUNEKIT_QUEUE`` itself, so a single worker started with ``-Q prunekit`` (the
  embedded default) still serves every job.

A job that would use the GPU goes to ``gpu`` only while some worker consumes that queue;
otherwise it runs on ``cpu`` (slower, not stuck). A spec may ask for a class
(``"resources": "gpu"``); then it goes there even with no worker serving it yet, and its
record and the dry run say so. Workers name their queues with ``-Q`` at start; the API
learns who serves what from the broker (``active_queues``), cached for a few seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Resource = Literal["gpu", "cpu"]
RESOURCES: tuple[Resource, ...] = ("gpu", "cpu")


def queue_name(base: str, resource: Resource) -> str:
    """The queue of ``resource`` for ``PRUNEKIT_QUEUE=base``."""
    return base if resource == "cpu" else f"{base}-gpu"


def trains(spec: Mapping[str, Any], has_dataset: bool) -> bool:
    """Whether a (normalised) job spec runs gradient steps on its dataset."""
    if not has_dataset:
        return False
    fine_tune = spec.get("fine_tune") or {}
    if fine_tune and int(fine_tune.get("epochs", 1)) > 0:
        return True
    from prunekit.strategies.registry import parse_params

    # a strategy that needs data trains or scores on it (StrategyParams.requires_data)
    return parse_params(dict(spec["strategy"])).requires_data()


@dataclass(frozen=True)
class Route:
    resource: Resource
    queue: str
    why: str
    workers: list[str] = field(default_factory=list)  # live workers consuming ``queue``

    @property
    def served(self) -> bool:
        return bool(self.workers)

    def waiting_reason(self) -> str | None:
        """What a job on this route waits for, when no worker serves its queue."""
        if self.served:
            return None
        return (
            f"no worker consumes the queue {self.queue!r} ({self.resource} jobs) yet: the job "
            f"waits queued until one starts (celery ... worker -Q {self.queue})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "resources": self.resource,
            "queue": self.queue,
            "why": self.why,
            "workers_serving": len(self.workers),
            "waiting_reason": self.waiting_reason(),
        }


def consumers(
    active_queues: Mapping[str, Iterable[Mapping[str, Any]]] | None,
) -> dict[str, list[str]]:
    """Queue name -> the workers consuming it, from Celery's ``inspect().active_queues()``."""
    served: dict[str, list[str]] = {}
    for worker, queues in (active_queues or {}).items():
        for queue in queues:
            served.setdefault(str(queue["name"]), []).append(worker)
    return served


def choose(
    base: str,
    wants_gpu: bool,
    requested: Resource | None,
    served: Mapping[str, list[str]],
) -> Route:
    """The route of a job: ``requested`` if the spec names a class, else ``gpu`` for a job
    that trains when a worker serves that queue, else ``cpu``."""
    gpu_queue, cpu_queue = queue_name(base, "gpu"), queue_name(base, "cpu")
    if requested is not None:
        queue = queue_name(base, requested)
        return Route(requested, queue, f"the spec asks for {requested}", served.get(queue, []))
    if wants_gpu and served.get(gpu_queue):
        return Route("gpu", gpu_queue, "the job trains and GPU workers serve it", served[gpu_queue])
    why = (
        f"the job trains, but no worker consumes {gpu_queue!r}: it runs on a CPU worker"
        if wants_gpu
        else "the job does not train (one-shot)"
    )
    return Route("cpu", cpu_queue, why, served.get(cpu_queue, []))

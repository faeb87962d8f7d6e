"""core.routing: which queue a job goes to (hand cases)."""

from __future__ import annotations

from core.routing import choose, consumers, queue_name, trains

ONE_SHOT = {"strategy": {"name": "magnitude", "sparsity": 0.5}}
FINE_TUNED = {**ONE_SHOT, "fine_tune": {"epochs": 2}}
GRADUAL = {"strategy": {"name": "gradual", "sparsity": 0.5}}


def test_queue_names_keep_the_base_queue_for_cpu_work() -> None:
    assert queue_name("prunekit", "cpu") == "prunekit"
    assert queue_name("prunekit", "gpu") == "prunekit-gpu"


def test_what_trains() -> None:
    assert not trains(ONE_SHOT, has_dataset=True)
    assert trains(FINE_TUNED, has_dataset=True)
    assert not trains({**ONE_SHOT, "fine_tune": {"epochs": 0}}, has_dataset=True)
    assert trains(GRADUAL, has_dataset=True)
    assert not trains(FINE_TUNED, has_dataset=False)  # nothing to train on
    taylor = {"strategy": {"name": "filter", "ratio": 0.5, "criterion": "taylor"}}
    assert trains(taylor, has_dataset=True)
    assert not trains({"strategy": {"name": "filter", "ratio": 0.5}}, has_dataset=True)


def test_consumers_from_active_queues() -> None:
    reply = {
        "gpu@a": [{"name": "prunekit-gpu"}, {"name": "prunekit"}],
        "cpu@b": [{"name": "prunekit"}],
    }
    assert consumers(reply) == {"prunekit-gpu": ["gpu@a"], "prunekit": ["gpu@a", "cpu@b"]}
    assert consumers(None) == {}


def test_training_goes_to_gpu_only_while_gpu_workers_serve_it() -> None:
    both = {"prunekit-gpu": ["gpu@a"], "prunekit": ["cpu@b"]}
    route = choose("prunekit", wants_gpu=True, requested=None, served=both)
    assert (route.queue, route.workers, route.waiting_reason()) == ("prunekit-gpu", ["gpu@a"], None)
    cpu_only = {"prunekit": ["cpu@b"]}
    route = choose("prunekit", wants_gpu=True, requested=None, served=cpu_only)
    assert route.resource == "cpu" and "no worker consumes 'prunekit-gpu'" in route.why
    route = choose("prunekit", wants_gpu=False, requested=None, served=both)
    assert route.queue == "prunekit"


def test_a_requested_class_with_no_worker_waits_with_a_reason() -> None:
    route = choose("prunekit", wants_gpu=False, requested="gpu", served={"prunekit": ["c"]})
    assert route.queue == "prunekit-gpu" and not route.served
    reason = route.waiting_reason()
    assert reason is not None and "-Q prunekit-gpu" in reason
    nobody = choose("prunekit", wants_gpu=False, requested=None, served={})
    assert nobody.as_dict()["waiting_reason"] is not None


def test_the_rabbitmq_broker_view_counts_instead_of_reading() -> None:
    """AMQP cannot read a queue without consuming it: the reconciler's view goes by each
    queue's message count (a job's message is live while its queue holds any)."""
    from core.lifecycle.reconciler import BrokerView

    view = BrokerView("", [], {"prunekit": 2, "prunekit-gpu": 0})
    assert view.delivery("job-1", now=0.0, grace_s=5.0, queue="prunekit") == "live"
    assert view.delivery("job-1", now=0.0, grace_s=5.0, queue="prunekit-gpu") == "lost"
    assert view.delivery("job-1", now=0.0, grace_s=5.0, queue="never-declared") == "lost"
    redis_view = BrokerView("a message naming job-1", [])  # Redis: read, not counted
    assert redis_view.delivery("job-1", now=0.0, grace_s=5.0) == "live"
    assert redis_view.delivery("job-2", now=0.0, grace_s=5.0) == "lost"

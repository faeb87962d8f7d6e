"""A Python client for the prunekit API (HTTP only) and the ``prunekit`` command line.

A notebook prunes in three lines (the URL and key from ``PRUNEKIT_URL`` / ``PRUNEKIT_API_KEY``,
or the config file)::

    from prunekit_client import Client
    client = Client()
    job = client.prune("lenet.keras", "magnitude", sparsity=0.9, out="lenet_pruned.keras")
"""

from prunekit_client.api import Client, JobEndedError, Update, WaitTimeoutError
from prunekit_client.config import ClientConfig, resolve_config
from prunekit_client.problems import ProblemError

__all__ = [
    "Client",
    "ClientConfig",
    "JobEndedError",
    "ProblemError",
    "Update",
    "WaitTimeoutError",
    "resolve_config",
]

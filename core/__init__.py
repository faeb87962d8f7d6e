"""The service core: what the API (``app``) and the worker (``worker``) share.

Settings, the Redis connection, the records and their stores (models, datasets, jobs,
webhooks, API keys), artifact storage, job deadlines, the queue contract (:mod:`core.queue`)
and the reconciler/sweeper. Nothing here imports FastAPI, the worker's task code or
TensorFlow; ``pyproject.toml`` ``[tool.importlinter]`` holds the layer rules.
"""

"""Celery workers: they load models and run the prunekit engine (the API never does)."""

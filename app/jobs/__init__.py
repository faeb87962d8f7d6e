"""Pruning jobs: ``POST/GET /v1/jobs``, events, download."""

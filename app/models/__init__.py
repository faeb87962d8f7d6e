"""Uploaded models: ``POST/GET /v1/models``."""

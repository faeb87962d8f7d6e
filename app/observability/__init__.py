"""Operators' view of the service: Prometheus metrics, JSON logs, request ids."""

"""Figures and JSON log lines the workers and the API both write."""

"""Uploaded datasets (``.npz``) for evaluation and fine-tuning: ``POST/GET /v1/datasets``."""

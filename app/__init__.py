"""prunekit's HTTP API (FastAPI). Per-resource packages: endpoints / service / store / schemas."""

"""``GET /v1/strategies``: what the engine can do, with each strategy's parameter schema."""

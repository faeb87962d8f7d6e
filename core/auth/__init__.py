"""API keys (stored as digests) and tenant names."""

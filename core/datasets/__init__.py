"""Dataset records."""

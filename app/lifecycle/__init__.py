"""The 409 a resource in use answers on DELETE (deletion itself: core.lifecycle)."""

"""HTTP endpoints for the strategy catalogue."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from prunekit.strategies import all_strategies, describe

router = APIRouter(prefix="/v1/strategies", tags=["strategies"])


@router.get("")
def list_strategies() -> dict[str, Any]:
    """Every registered strategy: name, aliases, kind, whether it needs data, parameters."""
    return {"items": [describe(s) for s in all_strategies()]}

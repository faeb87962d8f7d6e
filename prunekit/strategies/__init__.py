"""Pruning strategies. Importing this package registers every built-in strategy.

A new strategy is one new module here, decorated with ``@register`` and imported below.
"""

from prunekit.strategies import filter, magnitude, slimming  # noqa: F401  (registers)
from prunekit.strategies.base import Strategy, StrategyKind, StrategyParams
from prunekit.strategies.registry import (
    UnknownStrategyError,
    all_strategies,
    build,
    describe,
    get,
    names,
    parse_params,
    register,
)

__all__ = [
    "Strategy",
    "StrategyKind",
    "StrategyParams",
    "UnknownStrategyError",
    "all_strategies",
    "build",
    "describe",
    "get",
    "names",
    "parse_params",
    "register",
]

"""Pruning strategies. Importing this package registers every built-in strategy.

A new strategy is one new module here, decorated with ``@register`` and imported below.
"""

from prunekit.strategies import (  # noqa: F401  (importing registers them)
    auto,
    filter,
    gradual,
    l0,
    l1,
    magnitude,
    nm,
    random,
    saliency,
    sensitivity,
    slimming,
)
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

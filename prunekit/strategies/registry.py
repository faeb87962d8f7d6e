"""The strategy registry: name or alias -> strategy class."""

from __future__ import annotations

from typing import Any, TypeVar

from prunekit.strategies.base import Strategy, StrategyParams

_REGISTRY: dict[str, type[Strategy[Any]]] = {}
_ALIASES: dict[str, str] = {}

S = TypeVar("S", bound=type[Strategy[Any]])


class UnknownStrategyError(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown strategy {self.name!r}; known: {', '.join(sorted(names()))}"


def register(cls: S) -> S:
    """Class decorator: make a strategy selectable by its name and aliases."""
    for key in (cls.name, *cls.aliases):
        if key in _REGISTRY or key in _ALIASES:
            raise ValueError(f"strategy name {key!r} registered twice")
    _REGISTRY[cls.name] = cls
    for alias in cls.aliases:
        _ALIASES[alias] = cls.name
    return cls


def names() -> list[str]:
    """Canonical names and aliases."""
    return [*_REGISTRY, *_ALIASES]


def get(name: str) -> type[Strategy[Any]]:
    canonical = _ALIASES.get(name, name)
    try:
        return _REGISTRY[canonical]
    except KeyError:
        raise UnknownStrategyError(name) from None


def all_strategies() -> list[type[Strategy[Any]]]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def parse_params(raw: dict[str, Any]) -> StrategyParams:
    """Validate raw strategy parameters (raises ``pydantic.ValidationError``).

    The result carries the canonical name, so stored specs never depend on aliases.
    """
    cls = get(str(raw.get("name", "")))
    params = cls.Params.model_validate({**raw, "name": cls.name})
    return params


def build(params: StrategyParams) -> Strategy[Any]:
    return get(params.name)(params)


def describe(cls: type[Strategy[Any]]) -> dict[str, Any]:
    """What ``GET /v1/strategies`` shows for one strategy."""
    return {
        "name": cls.name,
        "aliases": list(cls.aliases),
        "kind": cls.kind.value,
        "needs_data": cls.Params.needs_data,
        "description": cls.description,
        "parameters": cls.Params.model_json_schema(),
    }

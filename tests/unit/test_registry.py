"""The strategy registry and the job spec."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from prunekit.spec import PruneSpec
from prunekit.strategies import all_strategies, describe, get, parse_params


def test_listing_strategies_does_not_import_tensorflow() -> None:
    code = (
        "import sys, prunekit.strategies, prunekit.spec; "
        "sys.exit(1 if 'tensorflow' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_every_strategy_describes_itself() -> None:
    for cls in all_strategies():
        d = describe(cls)
        assert d["name"] == cls.name and d["kind"] in {
            "unstructured",
            "semi_structured",
            "structured",
        }
        assert d["parameters"]["type"] == "object"
        assert get(cls.name) is cls
        for alias in cls.aliases:
            assert get(alias) is cls


@pytest.mark.parametrize(
    "raw",
    [
        {"name": "magnitude", "sparsity": 1.0},
        {"name": "magnitude", "sparsity": -0.1},
        {"name": "magnitude", "sparsity": 0.5, "bogus": 1},
        {"name": "magnitude", "sparsity": 0.5, "scope": "diagonal"},
        {"name": "magnitude"},
    ],
)
def test_bad_params_rejected(raw: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        parse_params(raw)


def test_defaults_filled() -> None:
    params = parse_params({"name": "magnitude", "sparsity": 0.3})
    assert params.model_dump(mode="json") == {
        "name": "magnitude",
        "sparsity": 0.3,
        "block": None,  # unstructured
        "scope": "global",
    }


def test_exclude_must_be_regex() -> None:
    with pytest.raises(ValidationError):
        PruneSpec(strategy={"name": "magnitude", "sparsity": 0.1}, exclude=["("])

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


def test_the_spec_is_data_that_imports_no_strategy() -> None:
    """``PruneSpec`` is pure data: no strategy, context or TensorFlow behind it (the old
    circle context -> spec -> strategies -> base -> context is gone)."""
    code = (
        "import sys, prunekit.spec; "
        "bad = [m for m in ('prunekit.strategies', 'prunekit.context', 'tensorflow') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    run = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_strategy_describes_itself() -> None:
    for cls in all_strategies():
        d = describe(cls)
        assert d["name"] == cls.name and d["kind"] in {
            "unstructured",
            "semi_structured",
            "structured",
            "search",
            "analysis",
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
        "allocation": None,  # follows scope
        "scope": "global",
    }


def test_exclude_must_be_regex() -> None:
    with pytest.raises(ValidationError):
        PruneSpec(strategy={"name": "magnitude", "sparsity": 0.1}, exclude=["("])


@pytest.mark.parametrize(
    ("pattern", "says"),
    [(r"(dense)_\1", "backreferences"), (r"dense(?!_1)", "lookaround"), ("(", "missing )")],
)
def test_exclude_refuses_what_re2_cannot_run(pattern: str, says: str) -> None:
    with pytest.raises(ValidationError) as info:
        PruneSpec(strategy={"name": "magnitude", "sparsity": 0.1}, exclude=["^ok$", pattern])
    (error,) = info.value.errors()
    assert error["loc"] == ("exclude", 1)  # the API turns this into body.exclude.1
    assert says in error["msg"] and "RE2" in error["msg"]


def test_catastrophic_pattern_runs_in_linear_time() -> None:
    import re
    import time

    from prunekit.patterns import compile_pattern

    name = "a" * 40 + "!"
    slow = re.compile(r"(a+)+$")
    start = time.perf_counter()
    assert slow.search("a" * 16 + "!") is None  # Python's re backtracks: 2^16 paths already
    backtracking_16 = time.perf_counter() - start
    pattern = compile_pattern(r"(a+)+$")
    start = time.perf_counter()
    assert pattern.search(name) is None  # 2^40 paths for re; linear for RE2
    assert pattern.search("a" * 40) is not None
    linear_40 = time.perf_counter() - start
    assert linear_40 < 0.01 and linear_40 < backtracking_16, (linear_40, backtracking_16)

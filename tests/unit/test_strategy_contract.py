"""Every registered unstructured / semi-structured strategy keeps the same promises.

Iterates the registry, so a new strategy is covered the day it is registered: exact target
sparsity, pruned weights still zero after (masked) fine-tuning, identical masks for the
same seed, and a saved model that loads and runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from prunekit.masks import count_to_prune
from prunekit.strategies import all_strategies
from prunekit.strategies.base import StrategyKind
from tests.unit import strategy_helpers as h

SPARSITY = 0.6
# auto (a search) and sensitivity (an analysis) hit no fixed target: tests/unit/test_search.py
STRATEGIES = [
    c
    for c in all_strategies()
    if c.kind in (StrategyKind.UNSTRUCTURED, StrategyKind.SEMI_STRUCTURED)
]
# quick settings for the strategies' own training knobs, applied when a strategy has them
FAST = {"epochs": 1, "steps": 2, "batches": 2, "frequency": 2, "fine_tune_epochs": 1}
FINE_TUNE = {"epochs": 1, "batch_size": 32, "learning_rate": 1e-3}


def params_for(cls: Any) -> dict[str, Any]:
    fields = cls.Params.model_fields
    raw: dict[str, Any] = {"name": cls.name}
    if "sparsity" in fields:
        raw["sparsity"] = SPARSITY
    raw.update({k: v for k, v in FAST.items() if k in fields})
    return raw


def expected_zeros(raw: dict[str, Any], masks: dict[str, np.ndarray]) -> int:
    total = sum(m.size for m in masks.values())
    if "sparsity" in raw:
        return count_to_prune(total, raw["sparsity"])
    if raw["name"] == "nm":
        n, m = raw.get("n", 2), raw.get("m", 4)
        return total - total * n // m
    raise AssertionError(f"no exactness rule for {raw['name']}")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return h.save_models(tmp_path_factory.mktemp("contract"))


def _run(path: Path, raw: dict[str, Any], seed: int = 3) -> tuple[Any, Any, Any]:
    model = h.load(path)
    ctx = h.context(model, raw, h.digits(), fine_tune=FINE_TUNE, seed=seed)
    from prunekit.strategies import build, parse_params

    outcome = build(parse_params(raw)).run(ctx)
    return model, outcome, ctx


def _check(model: Any, outcome: Any, raw: dict[str, Any], tmp: Path) -> None:
    masks = outcome.masks
    assert masks, "weight-level strategies return masks"
    by_name = {w.name: w.numpy() for w in model.prunable_weights()}
    pruned = sum(int((~m).sum()) for m in masks.values())
    assert pruned == expected_zeros(raw, masks)
    for name, m in masks.items():  # pruned weights are exactly zero after fine-tuning
        assert np.all(by_name[name][~m] == 0), name
    saved = model.save(tmp / ("out.keras" if model.keras_model is not None else "out_sm"))
    again = h.load(saved)
    out = again.predict(h.digits().test.x[:8])
    assert out.shape == (8, 10) and np.all(np.isfinite(out))
    assert h.zeros(again)[0] >= pruned


@pytest.mark.parametrize("cls", STRATEGIES, ids=lambda c: c.name)
def test_contract_keras(cls: Any, models: dict[str, Path], tmp_path: Path) -> None:
    raw = params_for(cls)
    model, outcome, _ = _run(models["keras"], raw)
    _check(model, outcome, raw, tmp_path)
    _, again, _ = _run(models["keras"], raw)  # same seed, same masks
    for name, m in outcome.masks.items():
        assert np.array_equal(m, again.masks[name]), name


@pytest.mark.parametrize("name", ["magnitude", "l1", "gradual"])
def test_contract_saved_model(name: str, models: dict[str, Path], tmp_path: Path) -> None:
    from prunekit.strategies import get

    raw = params_for(get(name))
    model, outcome, _ = _run(models["saved_model"], raw)
    _check(model, outcome, raw, tmp_path)
    before = h.load(models["saved_model"]).prunable_weights()
    after = {w.name: w.numpy() for w in model.prunable_weights()}
    changed = [
        not np.allclose(after[w.name][outcome.masks[w.name]], w.numpy()[outcome.masks[w.name]])
        for w in before
    ]
    assert any(changed), "fine-tuning through the signature updated the kept weights"

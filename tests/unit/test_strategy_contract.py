"""Every registered strategy keeps the same promises.

Iterates the registry, so a new strategy is covered the day it is registered, structured ones
included, and asks each one's parameters rather than its name: a strategy whose parameters say
it needs no data runs without any (and one that says it does refuses to, with
``dataset_required``, which is what the API checks at submission); it removes exactly the
``expected_zeros`` its parameters promise (weights, or channels of prunable groups); pruned
weights stay zero after (masked) fine-tuning; the same seed gives the same masks; the saved
model loads and runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from prunekit.errors import SpecError
from prunekit.strategies import all_strategies, build, get, parse_params
from prunekit.strategies.base import StrategyKind
from prunekit.structured import build_dependency_graph
from tests.unit import strategy_helpers as h

SPARSITY = 0.6
RATIO = 0.5
# auto (a search) and sensitivity (an analysis) hit no fixed target: tests/unit/test_search.py
STRATEGIES = [
    c for c in all_strategies() if c.kind not in (StrategyKind.SEARCH, StrategyKind.ANALYSIS)
]
# quick settings for the strategies' own training knobs, applied when a strategy has them
FAST = {
    "epochs": 1,
    "steps": 2,
    "batches": 2,
    "frequency": 2,
    "fine_tune_epochs": 1,
    "sparsity_epochs": 1,
}
FINE_TUNE = {"epochs": 1, "batch_size": 32, "learning_rate": 1e-3}


def params_for(cls: Any) -> dict[str, Any]:
    fields = cls.Params.model_fields
    raw: dict[str, Any] = {"name": cls.name}
    if "sparsity" in fields:
        raw["sparsity"] = SPARSITY
    if "ratio" in fields:
        raw["ratio"] = RATIO
    raw.update({k: v for k, v in FAST.items() if k in fields})
    return raw


def structured(cls: Any) -> bool:
    return bool(cls.kind is StrategyKind.STRUCTURED)


def units(model: Any, cls: Any) -> dict[str, tuple[int, ...]]:
    """What the strategy prunes: prunable weight tensors, or prunable channel groups."""
    if structured(cls):
        graph = build_dependency_graph(model.keras_model)
        return {str(g.id): (g.size,) for g in graph.prunable_groups}
    return {w.name: tuple(w.shape) for w in model.prunable_weights()}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("contract")
    paths = h.save_models(tmp)
    # the structured strategies' model: the same digits MLP with BatchNorm (slimming's scales)
    keras.utils.set_random_seed(0)
    inp = keras.Input((64,), name="features")
    x = inp
    for i, width in enumerate((32, 16)):
        x = keras.layers.Dense(width, use_bias=False, name=f"dense_{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn_{i}")(x)
        x = keras.layers.ReLU(name=f"relu_{i}")(x)
    bn_model = keras.Model(inp, keras.layers.Dense(10, name="logits")(x))
    paths["keras_bn"] = tmp / "mlp_bn.keras"
    bn_model.save(paths["keras_bn"])
    return paths


def _run(path: Path, raw: dict[str, Any], seed: int = 3, data: bool = True) -> tuple[Any, Any]:
    model = h.load(path)
    ctx = h.context(model, raw, h.digits() if data else None, fine_tune=FINE_TUNE, seed=seed)
    return model, build(parse_params(raw)).run(ctx)


def _removed(cls: Any, outcome: Any) -> int:
    if structured(cls):
        channels = outcome.details["structured"]["channels"]
        return int(channels["prunable_before"] - channels["prunable_after"])
    return sum(int((~m).sum()) for m in outcome.masks.values())


def _check(cls: Any, path: Path, raw: dict[str, Any], tmp: Path) -> Any:
    model, outcome = _run(path, raw)
    expected = parse_params(raw).expected_zeros(units(h.load(path), cls))
    assert expected is not None, "the contract's parameters fix the count in advance"
    assert _removed(cls, outcome) == expected
    if structured(cls):
        assert outcome.masks is None and outcome.model is not None
        pruned_model = outcome.model
    else:
        assert outcome.masks, "weight-level strategies return masks"
        by_name = {w.name: w.numpy() for w in model.prunable_weights()}
        for name, m in outcome.masks.items():  # pruned weights are exactly zero after tuning
            assert np.all(by_name[name][~m] == 0), name
        pruned_model = model
    saved = pruned_model.save(
        tmp / ("out.keras" if pruned_model.keras_model is not None else "out_sm")
    )
    again = h.load(saved)
    out = again.predict(h.digits().test.x[:8])
    assert out.shape == (8, 10) and np.all(np.isfinite(out))
    if not structured(cls):
        assert h.zeros(again)[0] >= expected
    return outcome


def _same(cls: Any, a: Any, b: Any) -> None:
    for name, m in a.masks.items():
        assert np.array_equal(m, b.masks[name]), name


@pytest.mark.parametrize("cls", STRATEGIES, ids=lambda c: c.name)
def test_contract_keras(cls: Any, models: dict[str, Path], tmp_path: Path) -> None:
    path = models["keras_bn" if structured(cls) else "keras"]
    raw = params_for(cls)
    outcome = _check(cls, path, raw, tmp_path)
    # structured strategies run once: a second run (surgery, save) costs seconds, and the
    # filter's determinism is tested in test_structured_strategies
    if not structured(cls):
        _same(cls, outcome, _run(path, raw)[1])  # same seed, same result


@pytest.mark.parametrize("cls", STRATEGIES, ids=lambda c: c.name)
def test_data_is_needed_exactly_when_the_parameters_say(cls: Any, models: dict[str, Path]) -> None:
    """What the API refuses at submission (``requires_data``) is what ``run`` needs."""
    path = models["keras_bn" if structured(cls) else "keras"]
    raw = params_for(cls)
    if parse_params(raw).requires_data():
        with pytest.raises(SpecError) as err:
            _run(path, raw, data=False)
        assert err.value.reason == "dataset_required"
    else:
        _run(path, raw, data=False)


@pytest.mark.parametrize("name", ["magnitude", "l1", "gradual"])
def test_contract_saved_model(name: str, models: dict[str, Path], tmp_path: Path) -> None:
    cls = get(name)
    raw = params_for(cls)
    model, outcome = _run(models["saved_model"], raw)
    _check(cls, models["saved_model"], raw, tmp_path)
    before = h.load(models["saved_model"]).prunable_weights()
    after = {w.name: w.numpy() for w in model.prunable_weights()}
    changed = [
        not np.allclose(after[w.name][outcome.masks[w.name]], w.numpy()[outcome.masks[w.name]])
        for w in before
    ]
    assert any(changed), "fine-tuning through the signature updated the kept weights"

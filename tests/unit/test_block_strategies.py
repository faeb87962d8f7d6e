"""The four unstructured strategies with ``block``: whole-block zeros, exact counts, kept
through masked training, kernels that do not tile left dense and reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from prunekit.errors import SpecError
from prunekit.masks import count_to_prune
from prunekit.model import LoadedModel
from prunekit.strategies import build, get, parse_params
from tests import tiny_models
from tests.unit import strategy_helpers as h

FAST = {"epochs": 1, "steps": 2, "batches": 2, "frequency": 2, "fine_tune_epochs": 1}
FINE_TUNE = {"epochs": 1, "batch_size": 32, "learning_rate": 1e-3}
SPARSITY = 0.6


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return h.save_models(tmp_path_factory.mktemp("blocks"))


def _run(model: LoadedModel, raw: dict[str, Any], data: Any, **spec: Any) -> tuple[Any, Any]:
    ctx = h.context(model, raw, data, **spec)
    return build(parse_params(raw)).run(ctx), ctx


def _zero_blocks(w: np.ndarray, k: int) -> np.ndarray:
    """Per-block flags: every weight of the 1 x k block is zero."""
    lead, cin, cout = w.shape[:-2], w.shape[-2], w.shape[-1]
    return np.all(w.reshape(*lead, cin // k, k, cout) == 0, axis=-2)


def _events(ctx: Any) -> list[dict[str, Any]]:
    return [c for kind, c in ctx.reporter.calls if kind == "event"]


@pytest.mark.parametrize("name", ["magnitude", "gradual", "l1", "saliency"])
def test_each_strategy_prunes_whole_blocks_exactly(name: str, models: dict[str, Path]) -> None:
    model = h.load(models["keras"])  # 64-32-32-10: every input dimension tiles by 4
    raw = {"name": name, "sparsity": SPARSITY, "block": "1x4"}
    raw.update({k: v for k, v in FAST.items() if k in get(name).Params.model_fields})
    outcome, _ = _run(model, raw, h.digits(), fine_tune=FINE_TUNE, seed=1)
    weights = {w.name: w.numpy() for w in model.prunable_weights()}
    n_blocks = sum(w.size // 4 for w in weights.values())
    pruned_blocks = 0
    for wname, mask in outcome.masks.items():
        blocks = mask.reshape(mask.shape[0] // 4, 4, mask.shape[1])
        assert np.all(blocks.all(axis=1) == blocks.any(axis=1)), wname  # whole blocks
        assert np.all(weights[wname][~mask] == 0), wname  # still zero after training
        pruned = ~blocks.all(axis=1)
        assert np.all(_zero_blocks(weights[wname], 4)[pruned])
        pruned_blocks += int(pruned.sum())
    assert pruned_blocks == count_to_prune(n_blocks, SPARSITY)  # global: one ranking
    assert outcome.details["block"]["layouts"] == dict.fromkeys(weights, "1x4")


def test_masked_fine_tuning_keeps_the_blocks(models: dict[str, Path]) -> None:
    model = h.load(models["keras"])
    raw = {"name": "magnitude", "sparsity": 0.75, "block": "1x16", "scope": "layer"}
    pruned_only, _ = _run(h.load(models["keras"]), raw, None)
    outcome, _ = _run(model, raw, h.digits(), fine_tune={**FINE_TUNE, "epochs": 2}, seed=2)
    assert outcome.details["fine_tune_loss"]  # it did train
    for w in model.prunable_weights():
        mask, after = outcome.masks[w.name], w.numpy()
        assert np.array_equal(mask, pruned_only.masks[w.name])
        zero = _zero_blocks(after, 16)
        kept = mask.reshape(after.shape[0] // 16, 16, after.shape[1]).all(axis=1)
        assert np.array_equal(zero, ~kept), w.name  # zeros are exactly the pruned blocks
        assert int(zero.sum()) == count_to_prune(zero.size, 0.75)
    before = {w.name: w.numpy() for w in h.load(models["keras"]).prunable_weights()}
    kept_after = [w.numpy()[outcome.masks[w.name]] for w in model.prunable_weights()]
    kept_before = [before[w.name][outcome.masks[w.name]] for w in model.prunable_weights()]
    assert not all(map(np.allclose, kept_after, kept_before))  # the kept weights trained


def test_untileable_kernels_are_skipped_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "mlp30.keras"  # 64-30-30-10: only dense_1's 64 inputs tile by 16
    tiny_models.mlp(seed=0, inputs=64, hidden=30, classes=10).save(path)
    model = h.load(path)
    before = {w.name: w.numpy() for w in model.prunable_weights()}
    outcome, ctx = _run(model, {"name": "magnitude", "sparsity": 0.5, "block": "1x16"}, None)
    first, *rest = before
    assert outcome.details["block"]["layouts"] == {first: "1x16"}
    assert outcome.details["block"]["skipped"] == {
        name: "input dimension 30 not a multiple of 16" for name in rest
    }
    after = {w.name: w.numpy() for w in model.prunable_weights()}
    for name in rest:
        assert np.array_equal(after[name], before[name])  # left dense
    assert int(_zero_blocks(after[first], 16).sum()) == count_to_prune(4 * 30, 0.5)
    warnings = [e for e in _events(ctx) if e["level"] == "warning"]
    assert [e["message"] for e in warnings] == [
        "magnitude: block 1x16: 1x16 in 1 kernel(s); left dense: "
        + ", ".join(f"{n} (input dimension 30 not a multiple of 16)" for n in rest)
    ]


def test_no_tileable_kernel_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "mlp6.keras"
    tiny_models.mlp(seed=0, inputs=6, hidden=6, classes=3).save(path)
    with pytest.raises(SpecError, match="block 1x4: no prunable kernel"):
        _run(h.load(path), {"name": "magnitude", "sparsity": 0.5, "block": "1x4"}, None)


def _lenet(tmp: Path) -> LoadedModel:
    keras.utils.set_random_seed(0)
    inp = keras.Input((784,))
    x = keras.layers.Dense(300, activation="relu", name="fc1")(inp)
    x = keras.layers.Dense(100, activation="relu", name="fc2")(x)
    out = keras.layers.Dense(10, name="fc3")(x)
    keras.Model(inp, out).save(tmp / "lenet.keras")
    return h.load(tmp / "lenet.keras")


def test_litert_presets_choose_per_layer_on_lenet(tmp_path: Path) -> None:
    model = _lenet(tmp_path)
    names = [w.name for w in model.prunable_weights()]
    before = {w.name: w.numpy() for w in model.prunable_weights()}
    raw = {"name": "magnitude", "sparsity": 0.9, "block": "litert_int8"}
    outcome, ctx = _run(model, raw, None)
    # int8: only 784 -> 300 tiles by 16; the 300- and 100-input kernels are pruned
    # unstructured (the int8 export reads them with a dense kernel), so the model is 90%
    assert outcome.details["block"]["layouts"] == {
        names[0]: "1x16",
        names[1]: "unstructured",
        names[2]: "unstructured",
    }
    assert outcome.details["block"]["skipped"] == {}
    assert list(outcome.details["block"]["unstructured"]) == names[1:]
    after = {w.name: w.numpy() for w in model.prunable_weights()}
    assert int(_zero_blocks(after[names[0]], 16).sum()) == count_to_prune(49 * 300, 0.9)
    rest_zeros = sum(int((after[n] == 0).sum()) for n in names[1:])
    assert rest_zeros == count_to_prune(300 * 100 + 100 * 10, 0.9)  # 27900, ranked together
    zeros = sum(int((w == 0).sum()) for w in after.values())
    assert zeros == 13230 * 16 + 27900  # 239580 of 266200 weights: 90%
    assert all(not np.array_equal(after[n], before[n]) for n in names)
    warnings = [e["message"] for e in _events(ctx) if e["level"] == "warning"]
    assert len(warnings) == 1 and "unstructured in 2 kernel(s)" in warnings[0]
    assert f"{names[1]} (input dimension 300 not a multiple of 16; pruned" in warnings[0]

    model = _lenet(tmp_path)
    raw = {"name": "magnitude", "sparsity": 0.9, "block": "litert_float32"}
    outcome, _ = _run(model, raw, None)
    # float32: every kernel in 1x4 blocks, one global ranking over all of them
    assert outcome.details["block"] == {
        "choice": "litert_float32",
        "layouts": dict.fromkeys(names, "1x4"),
        "skipped": {},
        "unstructured": {},
    }
    zeros = sum(int(_zero_blocks(w.numpy(), 4).sum()) for w in model.prunable_weights())
    assert zeros == count_to_prune((784 * 300 + 300 * 100 + 100 * 10) // 4, 0.9)


@pytest.mark.parametrize("name", ["gradual", "saliency"])
def test_2_4_through_stepwise_strategies(name: str, models: dict[str, Path]) -> None:
    # their intermediate targets pass below 50%; the final mask is 2:4 plus the lowest rest
    model = h.load(models["keras"])
    raw = {"name": name, "sparsity": 0.6, "block": "2:4"}
    raw.update({k: v for k, v in FAST.items() if k in get(name).Params.model_fields})
    outcome, ctx = _run(model, raw, h.digits(), fine_tune=FINE_TUNE, seed=1)
    total = 0
    for w in model.prunable_weights():
        mask, after = outcome.masks[w.name], w.numpy()
        groups = mask.reshape(mask.shape[0] // 4, 4, mask.shape[1])
        assert groups.sum(axis=1).max() <= 2, w.name  # at most 2 of every 4 kept
        assert np.all(after[~mask] == 0)
        total += mask.size
    assert sum(int((~m).sum()) for m in outcome.masks.values()) == count_to_prune(total, 0.6)
    assert any(
        e["message"].startswith(f"{name}: block 2:4: 2:4 in 3 kernel(s)") for e in _events(ctx)
    )

"""Block-sparse mask maths and the block field, against hand-computed cases (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from prunekit.blocks import Blocks, Unstructured, block_masks, nm_keep, nm_masks, plan_blocks
from prunekit.masks import count_to_prune
from prunekit.strategies import get, parse_params
from prunekit.strategies.nm import nm_mask

T, F = True, False
BLOCK_STRATEGIES = ("magnitude", "gradual", "l1", "saliency")


def _col(*values: float) -> np.ndarray:
    return np.array(values, dtype="float32")


# ------------------------------------------------------------------ 1xK blocks
def test_1x4_layer_sums_and_ties_by_position() -> None:
    # Dense (8 inputs, 2 outputs). Block sums: col 0: rows 0-3 -> 4, rows 4-7 -> 20;
    # col 1: rows 0-3 -> 3 (its largest weight, 3, is the largest outside col 0's second
    # block, yet the block goes), rows 4-7 -> 4. Block-score array [[4, 3], [20, 4]]: the
    # two 4s tie; (0, 0) comes first in C order, so it is pruned first.
    w = np.stack([_col(1, 1, 1, 1, 5, 5, 5, 5), _col(3, 0, 0, 0, 1, 1, 1, 1)], axis=1)
    by_s = {
        0.25: [[T, F]] * 4 + [[T, T]] * 4,  # 1 of 4 blocks: the sum 3
        0.5: [[F, F]] * 4 + [[T, T]] * 4,  # then the first 4
        0.75: [[F, F]] * 4 + [[T, F]] * 4,  # then the second 4
    }
    for s, expected in by_s.items():
        mask = block_masks({"w": np.abs(w)}, s, "layer", 4)["w"]
        assert mask.tolist() == expected, s


def test_1x4_differs_from_unstructured() -> None:
    # unstructured at 50% would prune the three zeros and five of the ones; in blocks the
    # zeros sit in a block whose sum (3) is not the smallest of both columns' blocks
    w = np.stack([_col(1, 1, 1, 1, 5, 5, 5, 5), _col(3, 0, 0, 0, 1, 1, 1, 1)], axis=1)
    mask = block_masks({"w": w}, 0.25, "layer", 4)["w"]
    assert not mask[:4, 1].any()  # the zeros' block (sum 3) is the one pruned
    assert mask[4:, 1].all()  # the ones' block (sum 4) stays


def test_1x16_global_and_per_layer() -> None:
    # a: (32, 1): block sums 16 (rows 0-15 at 1.0) and 1.6 (rows 16-31 at 0.1).
    # b: (16, 2): col 0 at 0.05 -> 0.8; col 1 at 0.0625 -> 1.0.
    a = np.concatenate([np.full(16, 1.0), np.full(16, 0.1)]).reshape(32, 1)
    b = np.stack([np.full(16, 0.05), np.full(16, 0.0625)], axis=1)
    scores = {"a": a, "b": b}
    # global, 50% of 4 blocks: the two smallest sums, 0.8 and 1.0, both in b
    g = block_masks(scores, 0.5, "global", 16)
    assert g["a"].all() and not g["b"].any()
    # per layer, 50% of each: a loses its 1.6 block, b its 0.8 block
    lay = block_masks(scores, 0.5, "layer", 16)
    assert lay["a"][:16].all() and not lay["a"][16:].any()
    assert not lay["b"][:, 0].any() and lay["b"][:, 1].all()


def test_blocks_run_along_the_conv_input_axis() -> None:
    # Conv (kh=1, kw=2, in=4, out=1): two 1x4 blocks, one per kernel position
    w = np.array([1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5]).reshape(1, 2, 4, 1)
    mask = block_masks({"c": w}, 0.5, "layer", 4)["c"]
    assert mask[0, 0, :, 0].all() and not mask[0, 1, :, 0].any()


@pytest.mark.parametrize("k", [2, 4, 8, 16])
@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("s", [0.0, 0.1, 0.37, 0.5, 0.9, 0.99])
def test_exact_block_count_whole_blocks(k: int, scope: str, s: float) -> None:
    rng = np.random.default_rng(k)
    shapes = {"dense": (48, 7), "conv": (3, 3, 32, 5)}
    scores = {n: np.abs(rng.normal(size=shape)) for n, shape in shapes.items()}
    masks = block_masks(scores, s, scope, k)
    pruned_blocks = {}
    for name, m in masks.items():
        lead, cin, cout = m.shape[:-2], m.shape[-2], m.shape[-1]
        blocks = m.reshape(*lead, cin // k, k, cout)
        # every block is all kept or all pruned
        assert np.all(blocks.all(axis=-2) == blocks.any(axis=-2)), name
        pruned_blocks[name] = int((~blocks.all(axis=-2)).sum())
        if scope == "layer":
            assert pruned_blocks[name] == count_to_prune(m.size // k, s)
    if scope == "global":  # per layer, each tensor rounds on its own (checked above)
        n_blocks = sum(m.size // k for m in masks.values())
        assert sum(pruned_blocks.values()) == count_to_prune(n_blocks, s)


def test_blocks_refuse_untileable_input() -> None:
    with pytest.raises(ValueError, match="not a multiple of 4"):
        block_masks({"w": np.ones((6, 2))}, 0.5, "layer", 4)


# ----------------------------------------------------------------------- 2:4
def test_2_4_at_half_is_the_nm_pattern() -> None:
    w = np.stack([_col(0.1, 0.4, 0.3, 0.2), _col(0.9, 0.8, 0.05, 0.06)], axis=1)
    mask = nm_masks({"w": w}, 0.5, "layer", 2, 4)["w"]
    assert mask.tolist() == [[F, T], [T, T], [T, F], [F, F]]
    assert np.array_equal(mask, nm_mask(w, 2, 4))  # the nm strategy's maths, reused


def test_2_4_beyond_and_below_the_pattern() -> None:
    w = np.stack([_col(0.1, 0.4, 0.3, 0.2), _col(0.9, 0.8, 0.05, 0.06)], axis=1)
    # 75% of 8 = 6: the 4 pattern candidates, then the lowest kept ones, 0.3 and 0.4
    beyond = nm_masks({"w": w}, 0.75, "layer", 2, 4)["w"]
    assert beyond.tolist() == [[F, T], [F, T], [F, F], [F, F]]
    # 25% of 8 = 2 (a gradual schedule's early step): the lowest candidates, 0.05 and 0.06
    below = nm_masks({"w": w}, 0.25, "layer", 2, 4)["w"]
    assert below.tolist() == [[T, T], [T, T], [T, F], [T, F]]


def test_nm_keep_ranks_scores_not_magnitudes() -> None:
    # saliency marks pruned weights with score -1: they must rank lowest, not as |-1| = 1
    scores = _col(-1.0, 0.5, 0.2, -1.0).reshape(4, 1)
    assert nm_keep(scores, 2, 4)[:, 0].tolist() == [F, T, T, F]


# --------------------------------------------------------------------- plans
LENET = {"fc1/kernel": (784, 300), "fc2/kernel": (300, 100), "fc3/kernel": (100, 10)}


def test_litert_int8_preset_on_lenet_blocks_the_first_layer_and_the_rest_unstructured() -> None:
    plan = plan_blocks(LENET, "litert_int8")
    assert plan.layouts == {
        "fc1/kernel": Blocks(16),
        "fc2/kernel": Unstructured(),
        "fc3/kernel": Unstructured(),
    }
    assert plan.skipped == {}
    dense_kernel = "pruned unstructured: the int8 export reads it with a dense kernel"
    assert plan.unstructured == {
        "fc2/kernel": f"input dimension 300 not a multiple of 16; {dense_kernel}",
        "fc3/kernel": f"input dimension 100 not a multiple of 16; {dense_kernel}",
    }
    assert plan.summary() == (
        "block litert_int8: 1x16 in 1 kernel(s), unstructured in 2 kernel(s); unstructured: "
        f"fc2/kernel (input dimension 300 not a multiple of 16; {dense_kernel}), "
        f"fc3/kernel (input dimension 100 not a multiple of 16; {dense_kernel})"
    )
    rng = np.random.default_rng(0)
    scores = {n: np.abs(rng.normal(size=s)) for n, s in LENET.items()}
    masks = plan.masks(scores, 0.9, "global")
    fc1 = masks["fc1/kernel"].reshape(49, 16, 300)
    assert np.all(fc1.all(axis=1) == fc1.any(axis=1))  # whole blocks
    assert int((~fc1.all(axis=1)).sum()) == 13230  # round(0.9 * 49 * 300) blocks
    # fc2 and fc3 ranked together, unstructured: round(0.9 * (30000 + 1000)) weights
    assert int((~masks["fc2/kernel"]).sum() + (~masks["fc3/kernel"]).sum()) == 27900
    # so the model is 90% sparse: (13230 * 16 + 27900) / (235200 + 31000) = 239580 / 266200
    pruned = sum(int((~m).sum()) for m in masks.values())
    assert pruned == 239580 and pruned / 266200 == pytest.approx(0.9)
    layer = plan.masks(scores, 0.9, "layer")  # per tensor: 27000 of fc2, 900 of fc3
    assert int((~layer["fc2/kernel"]).sum()) == 27000 and int((~layer["fc3/kernel"]).sum()) == 900
    assert plan.details()["block"]["layouts"] == {
        "fc1/kernel": "1x16",
        "fc2/kernel": "unstructured",
        "fc3/kernel": "unstructured",
    }
    assert plan.details()["block"]["unstructured"] == plan.unstructured


def test_preset_ranks_its_blocks_and_its_unstructured_weights_apart() -> None:
    # "a" (32 inputs) tiles by 16: block sums [[16, 32], [48, 64]] (col 0: rows 0-15 score 1,
    # rows 16-31 score 3; col 1: 2 and 4); at 0.5 the two lowest blocks go: rows 0-15 of both
    # columns. "b" (3 inputs) does not: its 6 weights are ranked alone and its 3 lowest
    # (0.1, 0.2, 0.3) go, although every score of "b" but those is above every score of "a".
    a = np.concatenate([np.full((16, 2), [1.0, 2.0]), np.full((16, 2), [3.0, 4.0])])
    b = np.array([[5.0, 0.1], [0.2, 6.0], [7.0, 0.3]])
    plan = plan_blocks({"a": a.shape, "b": b.shape}, "litert_int8")
    masks = plan.masks({"a": a, "b": b}, 0.5, "global")
    assert masks["a"].tolist() == [[F, F]] * 16 + [[T, T]] * 16
    assert masks["b"].tolist() == [[T, F], [F, T], [T, F]]


def test_litert_float32_preset_on_lenet_tiles_every_layer_in_1x4() -> None:
    plan = plan_blocks(LENET, "litert_float32")
    assert plan.layouts == dict.fromkeys(LENET, Blocks(4)) and plan.skipped == {}


def test_float32_preset_leaves_convolutions_dense_int8_prunes_them_unstructured() -> None:
    shapes = {"conv/kernel": (3, 3, 16, 8), "fc/kernel": (64, 10)}
    preset = plan_blocks(shapes, "litert_float32")
    assert preset.skipped == {
        "conv/kernel": "not a fully connected kernel: no faster sparse kernel"
    }
    assert preset.unstructured == {}
    assert plan_blocks(shapes, "1x4").layouts == dict.fromkeys(shapes, Blocks(4))
    int8 = plan_blocks(shapes, "litert_int8")  # fc's 64 inputs tile by 16; the conv cannot
    assert int8.layouts == {"conv/kernel": Unstructured(), "fc/kernel": Blocks(16)}
    assert int8.skipped == {}
    assert int8.unstructured == {
        "conv/kernel": "not a fully connected kernel: no faster sparse kernel; pruned "
        "unstructured: the int8 export reads it with a dense kernel"
    }


def test_unstructured_plan_is_todays_masks() -> None:
    from prunekit.masks import masks_from_scores

    rng = np.random.default_rng(3)
    scores = {"a": rng.random((12, 5)), "b": rng.random((7, 3))}
    plan = plan_blocks({n: s.shape for n, s in scores.items()}, None)
    for scope in ("global", "layer"):
        got, want = plan.masks(scores, 0.6, scope), masks_from_scores(scores, 0.6, scope)
        assert all(np.array_equal(got[n], want[n]) for n in scores)
    assert plan.details() == {}


# -------------------------------------------------------------------- params
@pytest.mark.parametrize("name", BLOCK_STRATEGIES)
def test_block_field_on_each_unstructured_strategy(name: str) -> None:
    assert parse_params({"name": name, "sparsity": 0.5}).block is None  # default: unstructured
    for shape in ("1x2", "1x4", "1x8", "1x16", "2:4", "litert_float32", "litert_int8"):
        assert parse_params({"name": name, "sparsity": 0.5, "block": shape}).block == shape
    with pytest.raises(ValidationError) as err:
        parse_params({"name": name, "sparsity": 0.5, "block": "1x3"})
    assert [e["loc"] for e in err.value.errors()] == [("block",)]
    with pytest.raises(ValidationError) as err:
        parse_params({"name": name, "sparsity": 0.4, "block": "2:4"})
    assert [e["loc"] for e in err.value.errors()] == [("block",)]
    assert "sparsity >= 0.5" in err.value.errors()[0]["msg"]
    schema = get(name).Params.model_json_schema()["properties"]["block"]
    assert "litert_int8" in schema["description"] and schema["default"] is None


def test_structured_and_nm_strategies_have_no_block_field() -> None:
    for name in ("nm", "filter", "slimming", "random", "l0"):
        assert "block" not in get(name).Params.model_fields


def test_api_names_the_block_field() -> None:
    from app.jobs.service import validate_strategy
    from app.problems import Problem

    with pytest.raises(Problem) as err:
        validate_strategy({"name": "magnitude", "sparsity": 0.9, "block": "3x3"})
    assert err.value.status == 422
    assert [e["field"] for e in err.value.extra["errors"]] == ["body.strategy.block"]

"""Each strategy's mechanism is real, checked against hand-computed cases."""

from __future__ import annotations

import itertools
from pathlib import Path

import keras
import numpy as np
import pytest

from prunekit.data import Dataset, Split
from prunekit.formats import ModelFormat
from prunekit.masks import count_to_prune
from prunekit.model import LoadedModel
from prunekit.strategies import build, parse_params
from prunekit.strategies.gradual import polynomial_sparsity
from prunekit.strategies.gradual_trainer import ShadowTrainer
from prunekit.strategies.l0_trainer import HardConcreteTrainer
from prunekit.strategies.nm import nm_mask
from tests.unit import strategy_helpers as h


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return h.save_models(tmp_path_factory.mktemp("mechanisms"))


def _run(path: Path, raw: dict, **spec: object) -> tuple[LoadedModel, object, object]:
    model = h.load(path)
    ctx = h.context(model, raw, h.digits(), **spec)
    return model, build(parse_params(raw)).run(ctx), ctx


# ------------------------------------------------------------------------- l1
def test_l1_drives_weights_to_exactly_zero(models: dict[str, Path]) -> None:
    from prunekit.training import TrainConfig

    zeros = {}
    for lam in (0.0, 0.5):
        model = h.load(models["keras"])
        ctx = h.context(model, {"name": "l1", "sparsity": 0.5}, h.digits())
        trainer = ctx.trainer(config=TrainConfig(3, 32, 0.05, "sgd"), l1=lam)
        trainer.fit(ctx.data.train, 3)
        zeros[lam] = sum(int((w == 0).sum()) for w in trainer.weights().values())
    assert zeros[0.0] == 0
    assert zeros[0.5] > 1000  # of 3,424 prunable weights


# ------------------------------------------------------------------------- l0
def test_l0_expected_l0_falls(models: dict[str, Path]) -> None:
    raw = {
        "name": "l0",
        "sparsity": 0.5,
        "epochs": 3,
        "l0": 5.0,
        "gate_learning_rate": 0.3,
        "fine_tune_epochs": 0,
    }
    _, outcome, _ = _run(models["keras"], raw, seed=1)
    expected = outcome.details["expected_l0"]
    assert len(expected) == 4
    assert all(b < a for a, b in itertools.pairwise(expected))
    assert expected[-1] < 0.9 * expected[0]


def test_l0_unit_gates_share_one_gate_per_output(models: dict[str, Path]) -> None:
    model = h.load(models["keras"])
    ctx = h.context(model, {"name": "l0", "sparsity": 0.5}, h.digits())
    trainer = ctx.trainer(cls=HardConcreteTrainer, lam=1.0, per_unit=True)
    trainer.fit(ctx.data.train, 1)
    for name, g in trainer.gates().items():
        assert np.all(g == g[:1])  # constant along every input row: one gate per unit
        assert g.shape == next(w.shape for w in ctx.prunable if w.name == name)


# ------------------------------------------------------------------- saliency
def test_saliency_prunes_least_contribution_by_hand() -> None:
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(1, use_bias=False, name="lin")(inp))
    w = np.array([[1.0], [0.1], [-2.0], [0.5]], "float32")
    model.get_layer("lin").set_weights([w])
    x = np.array([[1, 8, 0.1, 0], [0, 9, 0.2, 1], [1, 7, 0, 2], [2, 8, 0.1, 1]], "float32")
    y = np.array([[1.0], [0.0], [2.0], [1.0]], "float32")
    # by hand: L = mean((xw - y)^2) -> dL/dw = 2/N x^T (xw - y); score |w * dL/dw|
    grad = 2.0 / len(x) * x.T @ (x @ w - y)
    score = np.abs(w * grad).ravel()
    expected_pruned = set(np.argsort(score)[:2])
    assert expected_pruned != set(np.argsort(np.abs(w).ravel())[:2])  # not plain magnitude
    loaded = LoadedModel(ModelFormat.KERAS, keras_model=model)
    raw = {"name": "saliency", "sparsity": 0.5, "steps": 1, "batches": 1}
    ctx = h.context(
        loaded, raw, Dataset(train=Split(x, y)), fine_tune={"epochs": 0, "batch_size": 4}
    )
    outcome = build(parse_params(raw)).run(ctx)
    pruned = set(np.flatnonzero(~outcome.masks["lin/kernel"].ravel()))
    assert pruned == expected_pruned


def test_saliency_l2_normalises_each_layer_before_the_global_ranking() -> None:
    # Two linear layers, a wide one (32x8) feeding a narrow one (8x1); MSE on 16 samples.
    rng = np.random.default_rng(2)
    w1 = rng.normal(size=(32, 8)).astype("float32")
    w2 = rng.normal(size=(8, 1)).astype("float32")
    x = rng.normal(size=(16, 32)).astype("float32")
    y = rng.normal(size=(16, 1)).astype("float32")
    # by hand: r = x w1 w2 - y; dL/dw2 = 2/N (x w1)^T r; dL/dw1 = 2/N x^T r w2^T
    r = x @ w1 @ w2 - y
    g2 = 2.0 / len(x) * (x @ w1).T @ r
    g1 = 2.0 / len(x) * x.T @ r @ w2.T
    raw_scores = {"wide/kernel": np.abs(w1 * g1), "narrow/kernel": np.abs(w2 * g2)}

    def expected(normalize: bool) -> dict[str, np.ndarray]:
        scores = {n: s / np.linalg.norm(s) if normalize else s for n, s in raw_scores.items()}
        flat = np.concatenate([s.ravel() for s in scores.values()])
        threshold = np.sort(flat)[count_to_prune(flat.size, 0.5) - 1]
        return {n: s > threshold for n, s in scores.items()}

    assert not all(  # the two rankings differ on this case, so the test tells them apart
        np.array_equal(a, b)
        for a, b in zip(expected(True).values(), expected(False).values(), strict=True)
    )
    for normalize in ("l2", "none"):
        keras.utils.set_random_seed(0)
        inp = keras.Input((32,))
        hidden = keras.layers.Dense(8, use_bias=False, name="wide")(inp)
        model = keras.Model(inp, keras.layers.Dense(1, use_bias=False, name="narrow")(hidden))
        model.get_layer("wide").set_weights([w1])
        model.get_layer("narrow").set_weights([w2])
        raw = {"name": "saliency", "sparsity": 0.5, "steps": 1, "batches": 1}
        raw["normalize"] = normalize
        ctx = h.context(
            LoadedModel(ModelFormat.KERAS, keras_model=model),
            raw,
            Dataset(train=Split(x, y)),
            fine_tune={"epochs": 0, "batch_size": 16},
        )
        masks = build(parse_params(raw)).run(ctx).masks
        for name, mask in expected(normalize == "l2").items():
            np.testing.assert_array_equal(masks[name], mask, err_msg=f"{normalize} {name}")


def test_restart_schedule_gives_each_saliency_round_a_whole_cosine(
    models: dict[str, Path],
) -> None:
    model = h.load(models["keras"])
    raw = {"name": "saliency", "sparsity": 0.5, "steps": 2, "batches": 1}
    ft = {"epochs": 1, "batch_size": 32, "learning_rate": 0.05, "schedule": "cosine"}
    ctx = h.context(model, raw, h.digits(), fine_tune=ft)
    trainer = ctx.trainer()
    rates: list[list[float]] = [[], []]
    for k in range(2):
        if k:
            trainer.restart_schedule()
        trainer.fit(
            ctx.data.train,
            1,
            on_step=lambda _: rates[k].append(  # noqa: B023
                trainer.current_learning_rate()
            ),
        )
    # 256 samples / 32: 8 steps a round; each round decays from 0.05 to 0 on its own
    for r in rates:
        assert len(r) == 8 and r[0] > 0.9 * 0.05 and r[-1] < 0.01 * 0.05
        assert r == sorted(r, reverse=True)


def test_saliency_alias_and_snip(models: dict[str, Path]) -> None:
    raw = {"name": "sparsenet", "sparsity": 0.5, "criterion": "snip", "batches": 2}
    _, outcome, _ = _run(models["keras"], raw, fine_tune={"epochs": 0})
    assert len(outcome.details["rounds"]) == 1  # one shot


# -------------------------------------------------------------------- gradual
def test_polynomial_schedule_by_hand() -> None:
    # s_f = 0.8, s_i = 0.2, t0 = 10, dt = 5, n = 4: span 20 steps
    f = lambda t: polynomial_sparsity(t, 0.8, 0.2, 10, 5, 4)  # noqa: E731
    assert f(0) == 0.2 and f(10) == 0.2
    assert f(15) == pytest.approx(0.8 - 0.6 * 0.75**3)  # 0.546875
    assert f(20) == pytest.approx(0.8 - 0.6 * 0.5**3)  # 0.725
    assert f(25) == pytest.approx(0.8 - 0.6 * 0.25**3)  # 0.790625
    assert f(30) == 0.8 and f(100) == 0.8


@pytest.mark.parametrize("regrow", [False, True])
def test_gradual_masks_follow_the_schedule(regrow: bool, models: dict[str, Path]) -> None:
    raw = {
        "name": "gradual",
        "sparsity": 0.8,
        "frequency": 4,
        "end_fraction": 0.75,
        "regrow": regrow,
    }
    _, outcome, _ = _run(models["keras"], raw, fine_tune={"epochs": 2, "batch_size": 32}, seed=2)
    n_weights = sum(m.size for m in outcome.masks.values())
    steps = outcome.details["pruning_steps"]
    assert steps == int(0.75 * 16 // 4)  # 256 samples / 32 = 8 steps per epoch, 2 epochs
    schedule = outcome.details["schedule"]
    assert [r["step"] for r in schedule] == list(range(0, steps * 4 + 1, 4))
    for row in schedule:
        target = polynomial_sparsity(row["step"], 0.8, 0.0, 0, 4, steps)
        assert row["target"] == pytest.approx(target)
        assert row["sparsity"] == count_to_prune(n_weights, target) / n_weights


def test_regrowth_lets_pruned_weights_come_back(models: dict[str, Path]) -> None:
    from prunekit.masks import magnitude_masks

    model = h.load(models["keras"])
    ctx = h.context(model, {"name": "gradual", "sparsity": 0.5}, h.digits())
    trainer = ctx.trainer(cls=ShadowTrainer)
    first = magnitude_masks(trainer.shadow_weights(), 0.5)
    trainer.set_masks(first)
    trainer.fit(ctx.data.train, 2)
    again = magnitude_masks(trainer.shadow_weights(), 0.5)
    revived = sum(int((~first[k] & again[k]).sum()) for k in first)
    assert revived > 0  # pruned shadow weights kept learning and grew back
    for k, m in first.items():
        assert np.all(trainer.weights()[k][~m] == 0)  # while the model held them at zero


def test_regrowth_steps_pruned_shadows_by_the_plain_gradient_under_adam() -> None:
    # one step of Adam (lr 0.1) on a linear model, MSE, half the weights pruned
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(1, use_bias=False, name="lin")(inp))
    w = np.array([[0.5], [-0.2], [1.0], [0.3]], "float32")
    model.get_layer("lin").set_weights([w])
    x = np.array([[1, 2, 0, 1], [0, 1, 1, 3], [2, 0, 1, 1], [1, 1, 1, 0]], "float32")
    y = np.array([[1.0], [-1.0], [0.5], [2.0]], "float32")
    mask = np.array([[True], [False], [True], [False]])
    raw = {"name": "gradual", "sparsity": 0.5, "regrow": True}
    ft = {"epochs": 1, "batch_size": 4, "learning_rate": 0.1, "schedule": "constant"}
    ctx = h.context(
        LoadedModel(ModelFormat.KERAS, keras_model=model),
        raw,
        Dataset(train=Split(x, y)),
        fine_tune={**ft, "optimizer": "adam"},
    )
    trainer = ctx.trainer(cls=ShadowTrainer)
    trainer.set_masks({"lin/kernel": mask})
    trainer.fit(ctx.data.train, 1)  # 4 samples, batch 4: one step
    # by hand: the gradient at the masked weights, g = 2/N x^T (x (w*m) - y)
    g = 2.0 / len(x) * x.T @ (x @ (w * mask) - y)
    # Adam's first step moves a kept weight by lr * g / (|g| + eps'); a pruned shadow
    # takes the plain gradient step lr * g
    adam = w - 0.1 * g / (np.abs(g) + 1e-7 / np.sqrt(1 - 0.999))
    plain = w - 0.1 * g
    expected = np.where(mask, adam, plain)
    np.testing.assert_allclose(trainer.shadow_weights()["lin/kernel"], expected, rtol=1e-5)
    np.testing.assert_allclose(trainer.weights()["lin/kernel"], expected * mask, rtol=1e-5)


# ------------------------------------------------------------------------- nm
def test_nm_every_group_keeps_exactly_n() -> None:
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(8, 3))
    mask = nm_mask(dense, 2, 4)
    assert np.all(mask.reshape(2, 4, 3).sum(axis=1) == 2)
    for g in range(2):
        for c in range(3):
            block = np.abs(dense[4 * g : 4 * g + 4, c])
            assert set(np.flatnonzero(mask[4 * g : 4 * g + 4, c])) == set(np.argsort(block)[-2:])
    conv = rng.normal(size=(3, 3, 8, 5))
    cmask = nm_mask(conv, 1, 4)
    assert np.all(cmask.reshape(3, 3, 2, 4, 5).sum(axis=3) == 1)
    ties = nm_mask(np.ones((4, 1)), 2, 4)
    assert ties.ravel().tolist() == [True, True, False, False]


def test_nm_skips_layers_not_divisible(tmp_path: Path) -> None:
    from tests import tiny_models

    model = tiny_models.mlp(inputs=6, hidden=8, classes=3)  # dense_1 has 6 inputs
    loaded = LoadedModel(ModelFormat.KERAS, keras_model=model)
    ctx = h.context(loaded, {"name": "nm"}, None)
    outcome = build(parse_params({"name": "nm"})).run(ctx)
    assert set(outcome.masks) == {"dense_2/kernel", "logits/kernel"}
    events = [d["message"] for kind, d in ctx.reporter.calls if kind == "event"]  # type: ignore[attr-defined]
    assert any("dense_1/kernel" in e for e in events)
    for w in loaded.prunable_weights():
        if w.name != "dense_1/kernel":
            assert np.all((w.numpy() != 0).reshape(-1, 4, w.shape[-1]).sum(axis=1) == 2)


# --------------------------------------------------------------------- random
def test_random_masks_match_by_seed_and_differ_across_seeds(models: dict[str, Path]) -> None:
    raw = {"name": "random", "sparsity": 0.5}
    masks = {}
    for seed in (1, 1, 2):
        model = h.load(models["keras"])
        out = build(parse_params(raw)).run(h.context(model, raw, None, seed=seed))
        masks.setdefault(seed, []).append(out.masks)
    a, b, c = masks[1][0], masks[1][1], masks[2][0]
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)
    n = sum(m.size for m in a.values())
    assert sum(int((~m).sum()) for m in a.values()) == count_to_prune(n, 0.5)


@pytest.mark.parametrize("max_drop", [0.02, 1.0])
def test_random_iterative_stops_before_the_drop(max_drop: float, models: dict[str, Path]) -> None:
    raw = {
        "name": "random",
        "sparsity": 0.9,
        "iterative": True,
        "steps": 3,
        "max_accuracy_drop": max_drop,
    }
    model, outcome, _ = _run(models["keras"], raw, fine_tune={"epochs": 1, "batch_size": 32})
    steps, base = outcome.details["steps"], outcome.details["baseline_val_accuracy"]
    drops = [base - s["val_accuracy"] for s in steps]
    assert all(d <= max_drop for d in drops[:-1])  # it stops at the first step too far
    if drops[-1] > max_drop:  # that step was rolled back
        kept = steps[-2]["sparsity"] if len(steps) > 1 else 0.0
    else:
        assert len(steps) == 3
        kept = 0.9
    zeros, total = h.zeros(model)
    assert zeros == count_to_prune(total, kept)
    assert outcome.details["reached_sparsity"] == zeros / total
    if max_drop == 1.0:
        assert kept == 0.9

"""Dataset archives and loss inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prunekit.data import DatasetError, describe, input_mismatch, load_npz, npz_header
from prunekit.losses import LossName, infer_loss


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez_compressed(path, **arrays)
    return path


def test_header_and_describe_without_loading(tmp_path: Path) -> None:
    path = _npz(
        tmp_path / "d.npz",
        x_train=np.zeros((10, 28, 28), "uint8"), y_train=np.zeros(10, "int64"),
        x_test=np.zeros((4, 28, 28), "uint8"), y_test=np.zeros(4, "int64"),
    )  # fmt: skip
    info = describe(npz_header(path))
    assert info["train"] == {
        "samples": 10, "x_shape": [28, 28], "x_dtype": "uint8", "y_shape": [], "y_dtype": "int64"
    }  # fmt: skip
    assert info["test"]["samples"] == 4 and "val" not in info


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x_train": np.zeros((3, 2))}, "y_train"),
        ({"x_train": np.zeros((3, 2)), "y_train": np.zeros(2)}, "samples"),
        ({"x_train": np.zeros((3, 2)), "y_train": np.zeros(3), "x_val": np.zeros((1, 2))}, "pairs"),
        ({"x_train": np.zeros((3, 2)), "y_train": np.zeros(3), "z": np.zeros(1)}, "unexpected"),
        ({"x_train": np.array([{"a": 1}] * 3, dtype=object), "y_train": np.zeros(3)}, "pickle"),
    ],
)
def test_bad_archives_rejected(tmp_path: Path, arrays: dict, message: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)  # object arrays are pickled by savez
    with pytest.raises(DatasetError, match=message):
        npz_header(path)


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    path.write_bytes(b"nope")
    with pytest.raises(DatasetError):
        npz_header(path)


def test_load_rescales(tmp_path: Path) -> None:
    path = _npz(tmp_path / "d.npz", x_train=np.full((2, 3), 255, "uint8"), y_train=np.arange(2))
    ds = load_npz(path, rescale=1 / 255)
    assert ds.train.x.dtype == np.float32 and np.allclose(ds.train.x, 1.0)
    assert ds.held_out() is None


def test_input_mismatch() -> None:
    assert input_mismatch([28, 28], [None, 28, 28]) is None
    assert "expects" in (input_mismatch([28, 28], [None, 784]) or "")


def test_infer_loss() -> None:
    labels = np.array([0, 2, 1])
    logits = np.array([[2.0, -1.0, 0.5], [0.1, 3.0, -2.0], [1.0, 1.0, 1.0]])
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    assert infer_loss(labels, logits).name is LossName.SPARSE_CATEGORICAL
    assert infer_loss(labels, logits).from_logits
    assert not infer_loss(labels, probs).from_logits
    assert infer_loss(np.eye(3)[labels], probs).name is LossName.CATEGORICAL
    assert infer_loss(np.array([0, 1, 1]), np.array([[0.2], [0.9], [0.6]])).name is LossName.BINARY
    assert infer_loss(np.array([0.3, 1.7]), np.array([[0.1], [2.0]])).name is LossName.MSE


def test_resolve_loss_precedence() -> None:
    import keras

    from prunekit.losses import LossSpec, keras_loss, resolve_loss

    y, logits = np.array([0, 1]), np.array([[3.0, -1.0], [0.0, 2.0]])
    compiled = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert resolve_loss("auto", compiled, y, logits) == LossSpec(LossName.SPARSE_CATEGORICAL, True)
    assert resolve_loss("auto", None, y, logits).name is LossName.SPARSE_CATEGORICAL
    assert resolve_loss("mean_squared_error", compiled, y, logits).name is LossName.MSE
    loss = keras_loss(LossSpec(LossName.SPARSE_CATEGORICAL, True))
    assert float(loss(y, logits)) == pytest.approx(
        float(np.mean(-np.log(np.exp(logits[[0, 1], [0, 1]]) / np.exp(logits).sum(-1))))
    )


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def test_label_smoothing_by_hand() -> None:
    from prunekit.losses import LossSpec, keras_loss, training_loss

    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], "float32")
    y = np.array([0, 2])
    eps, k = 0.1, 3
    # by hand: targets (1 - eps) * onehot + eps / K, cross-entropy on log_softmax
    targets = (1 - eps) * np.eye(k)[y] + eps / k
    expected = float(np.mean(-(targets * _log_softmax(logits)).sum(axis=-1)))
    sparse = LossSpec(LossName.SPARSE_CATEGORICAL, from_logits=True)
    got = float(np.asarray(training_loss(sparse, eps)(y, logits)))  # type: ignore[operator]
    assert got == pytest.approx(expected, rel=1e-5)
    plain = float(np.asarray(keras_loss(sparse)(y, logits)))  # type: ignore[operator]
    assert plain == pytest.approx(float(np.mean(-_log_softmax(logits)[[0, 1], y])), rel=1e-5)
    assert training_loss(sparse, 0.0).__class__ is keras_loss(sparse).__class__
    # binary: targets move towards 0.5, y * (1 - eps) + eps / 2
    z = np.array([[1.5], [-0.5]], "float32")
    yb = np.array([[1.0], [0.0]], "float32")
    t = yb * (1 - eps) + eps / 2
    p = 1 / (1 + np.exp(-z))
    bce = float(np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p))))
    binary = LossSpec(LossName.BINARY, from_logits=True)
    assert float(np.asarray(training_loss(binary, eps)(yb, z))) == pytest.approx(bce, rel=1e-5)  # type: ignore[operator]


def test_label_smoothing_needs_a_classification_loss() -> None:
    from pydantic import ValidationError

    from prunekit.errors import SpecError
    from prunekit.losses import LossSpec, training_loss
    from prunekit.spec import PruneSpec

    with pytest.raises(SpecError, match="label_smoothing needs a classification loss"):
        training_loss(LossSpec(LossName.MSE), 0.1)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValidationError, match="label_smoothing"):
            PruneSpec(
                strategy={"name": "magnitude", "sparsity": 0.5},
                fine_tune={"epochs": 1, "label_smoothing": bad},
            )


def forged_npz(path: Path, x_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> Path:
    """An .npz whose .npy headers declare any shape (numpy would never write these)."""
    import io
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for name, shape in (("x_train", x_shape), ("y_train", y_shape)):
            buf = io.BytesIO()
            header = {"descr": "<f4", "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_1_0(buf, header)
            zf.writestr(f"{name}.npy", buf.getvalue() + b"\0" * 64)
    return path


@pytest.mark.parametrize(
    ("x_shape", "y_shape", "message"),
    [
        ((2**61, 8), (2**61,), "declares shape"),  # int64 products would wrap
        ((2**64, 8), (2**64,), "declares shape"),
        ((-5, 8), (-5,), "negative dimension"),
        ((0, 8), (0,), "0 samples"),
    ],
)
def test_forged_or_empty_shapes_are_refused(
    tmp_path: Path, x_shape: tuple, y_shape: tuple, message: str
) -> None:
    with pytest.raises(DatasetError, match=message):
        npz_header(forged_npz(tmp_path / "forged.npz", x_shape, y_shape))


def test_member_expansion_is_checked_with_the_archive_ratio(tmp_path: Path) -> None:
    path = _npz(tmp_path / "bomb.npz", x_train=np.zeros((4096, 1024), "uint8"),
                y_train=np.zeros(4096, "uint8"))  # fmt: skip  # 4 MiB of zeros: ~1000x
    with pytest.raises(DatasetError, match="expands") as err:
        npz_header(path, max_ratio=200)
    assert err.value.reason == "compression_ratio"
    assert npz_header(path)["x_train"].shape == (4096, 1024)  # no ratio given: no ratio rule


def test_memory_needed_counts_widened_inputs_in_python_ints() -> None:
    from prunekit.data import ArrayInfo, memory_needed

    arrays = {"x_train": ArrayInfo((1000, 28, 28), "|u1"), "y_train": ArrayInfo((1000,), "<i8")}
    # uint8 pixels: 784 000 bytes as stored, 3 136 000 more once widened to float32; labels 8 000
    assert memory_needed(arrays) == 784_000 + 3_136_000 + 8_000
    huge = {"x_train": ArrayInfo((2**61, 8), "<f4"), "y_train": ArrayInfo((2**61,), "<f4")}
    assert memory_needed(huge) == 2**61 * 8 * 8 + 2**61 * 4 > 2**64  # no wrap


@pytest.mark.parametrize(
    ("arrays", "rescale", "where"),
    [
        ({"x_train": np.array([[0.5, np.nan], [1.0, 2.0]], "float32")}, None, "x_train holds 1"),
        ({"x_train": np.array([[0.5, np.inf], [-np.inf, 2.0]])}, None, "x_train holds 2"),
        ({"y_train": np.array([0.0, np.nan])}, None, "y_train holds 1"),
        ({"x_train": np.array([[1e30, 1.0], [1.0, 1.0]], "float32")}, 1e10, "x_train holds 1"),
    ],
)
def test_non_finite_values_are_refused_with_where_they_are(
    tmp_path: Path, arrays: dict, rescale: float | None, where: str
) -> None:
    """A NaN dataset used to "succeed" with loss null; now it fails naming the array."""
    full = {"x_train": np.ones((2, 2), "float32"), "y_train": np.array([0, 1]), **arrays}
    path = tmp_path / "d.npz"
    np.savez(path, **full)
    with pytest.raises(DatasetError, match=where) as err:
        load_npz(path, rescale)
    assert err.value.reason == "non_finite"
    np.savez(path, x_train=np.ones((2, 2), "float32"), y_train=np.array([0, 1]))
    assert load_npz(path, rescale).train.x.shape == (2, 2)  # finite data still loads

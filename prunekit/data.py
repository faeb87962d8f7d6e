"""Datasets users upload for fine-tuning and evaluation: ``.npz`` archives, no pickles.

Numpy only (the API reads headers with it; it never imports TensorFlow). Keys: ``x_train``,
``y_train`` (required), ``x_val``/``y_val`` and ``x_test``/``y_test`` (optional, in pairs).

What loading costs is known from the headers alone: every dimension is a non-negative
Python int (no int64 wrap), each member's ``.npy`` header must fit in the size the zip
declares for it (``zipfile`` never inflates a member past that size), and that size may be at
most ``max_ratio`` times the member's compressed bytes (the archive rule for zip bombs).
:func:`memory_needed` adds what :func:`load_npz` allocates on top: integer (or float16)
inputs are widened to float32.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prunekit.errors import PrunekitError

SPLITS = ("train", "val", "test")


class DatasetError(PrunekitError):
    reason = "invalid_dataset"


MIN_RATIO_CHECKED_BYTES = 1 << 20  # smaller members cannot be bombs worth refusing


@dataclass(frozen=True)
class ArrayInfo:
    shape: tuple[int, ...]
    dtype: str

    @property
    def elements(self) -> int:
        return math.prod(self.shape)  # Python ints: never wraps

    @property
    def nbytes(self) -> int:
        return self.elements * np.dtype(self.dtype).itemsize


@dataclass
class Split:
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class Dataset:
    train: Split
    val: Split | None = None
    test: Split | None = None

    def held_out(self) -> tuple[str, Split] | None:
        """The split metrics are computed on: test if present, else validation."""
        if self.test is not None:
            return "test", self.test
        if self.val is not None:
            return "val", self.val
        return None


def npz_header(path: Path, max_ratio: int | None = None) -> dict[str, ArrayInfo]:
    """Shapes and dtypes of every array in an ``.npz`` without loading the data.

    Refuses object arrays (pickles), anything that is not a plain ``.npy`` member, negative
    dimensions, arrays larger than their member, and (with ``max_ratio``) members that
    expand more than ``max_ratio`` times their compressed size.
    """
    out: dict[str, ArrayInfo] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    raise DatasetError(f"member {info.filename!r} is not a .npy array")
                name = info.filename[:-4]
                _check_expansion(name, info, max_ratio)
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                    else:
                        raise DatasetError(f"unsupported .npy version {version}")
                    header_bytes = f.tell()
                if dtype.hasobject:
                    raise DatasetError(
                        f"array {name!r} holds Python objects (a pickle); "
                        "only numeric arrays are accepted"
                    )
                array = ArrayInfo(tuple(int(d) for d in shape), dtype.str)
                if any(d < 0 for d in array.shape):
                    raise DatasetError(
                        f"array {name!r} declares a negative dimension {shape}", reason="bad_shape"
                    )
                if array.nbytes > info.file_size - header_bytes:
                    raise DatasetError(
                        f"array {name!r} declares shape {array.shape} ({array.nbytes} bytes) "
                        f"but its member holds {info.file_size - header_bytes}: "
                        "truncated or forged",
                        reason="truncated_array",
                    )
                out[name] = array
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, OverflowError) as exc:
        raise DatasetError(f"not a readable .npz archive ({exc})") from exc
    validate_keys(out)
    return out


def _check_expansion(name: str, info: zipfile.ZipInfo, max_ratio: int | None) -> None:
    if max_ratio is None or info.file_size <= MIN_RATIO_CHECKED_BYTES:
        return
    if info.file_size > max_ratio * max(info.compress_size, 1):
        raise DatasetError(
            f"array {name!r} expands {info.file_size / max(info.compress_size, 1):.0f}x "
            f"({info.compress_size} -> {info.file_size} bytes), more than the limit of "
            f"{max_ratio}x (a zip bomb?)",
            reason="compression_ratio",
        )


def memory_needed(arrays: dict[str, ArrayInfo]) -> int:
    """Bytes :func:`load_npz` holds at its peak: every array, plus the float32 copy of each
    input that is widened (integer or float16 inputs; rescaled ones too)."""
    total = 0
    for key, array in arrays.items():
        total += array.nbytes
        if key.startswith("x_"):
            total += array.elements * 4
    return total


def validate_keys(arrays: dict[str, ArrayInfo]) -> None:
    for key in ("x_train", "y_train"):
        if key not in arrays:
            raise DatasetError(f"the .npz has no {key!r} array (needs x_train and y_train)")
    for split in SPLITS:
        x, y = arrays.get(f"x_{split}"), arrays.get(f"y_{split}")
        if (x is None) != (y is None):
            raise DatasetError(f"x_{split} and y_{split} come in pairs; one is missing")
        if x is not None and y is not None:
            if x.shape and x.shape[0] == 0:
                raise DatasetError(
                    f"x_{split} has 0 samples; every split needs at least one",
                    reason="empty_split",
                )
            if not x.shape or not y.shape or x.shape[0] != y.shape[0]:
                raise DatasetError(
                    f"x_{split} has {x.shape[0] if x.shape else 0} samples but y_{split} "
                    f"has {y.shape[0] if y.shape else 0}"
                )
            if np.dtype(x.dtype).kind not in "biuf" or np.dtype(y.dtype).kind not in "biuf":
                raise DatasetError(f"x_{split}/y_{split} must be numeric arrays")
    extra = set(arrays) - {f"{a}_{s}" for a in "xy" for s in SPLITS}
    if extra:
        raise DatasetError(f"unexpected arrays {sorted(extra)}; use x_/y_ train, val, test")


def describe(arrays: dict[str, ArrayInfo]) -> dict[str, Any]:
    """Per split: sample count, feature shape and dtype of x and y."""
    out: dict[str, Any] = {}
    for split in SPLITS:
        if f"x_{split}" in arrays:
            x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
            out[split] = {
                "samples": x.shape[0],
                "x_shape": list(x.shape[1:]),
                "x_dtype": np.dtype(x.dtype).name,
                "y_shape": list(y.shape[1:]),
                "y_dtype": np.dtype(y.dtype).name,
            }
    return out


def load_npz(path: Path, rescale: float | None = None) -> Dataset:
    """Load the arrays (``allow_pickle=False``); ``rescale`` multiplies x (e.g. 1/255)."""
    npz_header(path)
    with np.load(path, allow_pickle=False) as d:
        splits: dict[str, Split] = {}
        for split in SPLITS:
            if f"x_{split}" in d:
                x = d[f"x_{split}"]
                if rescale is not None or x.dtype.kind in "biu":
                    x = x.astype("float32") * np.float32(rescale if rescale is not None else 1.0)
                y = d[f"y_{split}"]
                _check_finite(f"x_{split}", x)
                _check_finite(f"y_{split}", y)
                splits[split] = Split(x, y)
    return Dataset(train=splits["train"], val=splits.get("val"), test=splits.get("test"))


def _check_finite(name: str, array: np.ndarray) -> None:
    """Refuse NaN and infinite values: a loss over them is NaN, and a job that trained and
    evaluated on them would "succeed" with no figures (inf can also come from ``rescale``)."""
    if array.dtype.kind not in "fc":
        return
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise DatasetError(
            f"{name} holds {bad} NaN or infinite value(s); drop or repair those samples "
            "(or pick a smaller preprocessing.rescale) and upload the dataset again",
            reason="non_finite",
        )


def input_mismatch(x_shape: list[int], model_shape: list[int | None]) -> str | None:
    """Why samples of shape ``x_shape`` do not fit a model input ``(None, *dims)``."""
    dims = model_shape[1:]
    if len(dims) != len(x_shape) or any(
        d is not None and d != s for d, s in zip(dims, x_shape, strict=False)
    ):
        return (
            f"dataset samples have shape {x_shape} but the model expects "
            f"{['batch', *[d if d is not None else '?' for d in dims]]}"
        )
    return None

"""Quality of a model on held-out data, and how far a pruned model drifted from the original.

The maths is numpy only and works on model outputs, so it is checked against hand-computed
cases without TensorFlow. For classifiers (the loss says which, see :mod:`prunekit.losses`):
top-1 accuracy, top-5 when there are at least 10 classes, macro-F1 (over the classes present
in the labels or the predictions, as scikit-learn does), the loss; and against the original
model's outputs: top-1 agreement and the mean KL(original || pruned) of the class
distributions (logits are softmaxed / sigmoided when the loss says ``from_logits``). For
other models: the loss, and the relative L2 distance ||y - y0|| / ||y0|| to the original.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from prunekit.data import DatasetError, Split
from prunekit.losses import LossName, LossSpec, loss_targets

EPS = 1e-7  # probabilities are clipped to [EPS, 1 - EPS], as Keras does in its losses
DEFAULT_MAX_SAMPLES = 10_000


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


def class_probabilities(outputs: np.ndarray, loss: LossSpec) -> np.ndarray:
    """``(n, classes)`` class probabilities from raw outputs (binary: two columns)."""
    out = np.asarray(outputs, dtype=np.float64)
    if loss.name is LossName.BINARY:
        p = out.reshape(len(out), -1)[:, :1] if out.ndim > 1 else out.reshape(-1, 1)
        if loss.from_logits:
            p = sigmoid(p)
        return np.concatenate([1.0 - p, p], axis=1)
    out = out.reshape(-1, out.shape[-1])
    if loss.from_logits:
        return softmax(out)
    return np.asarray(out / np.clip(out.sum(axis=-1, keepdims=True), EPS, None))


def class_labels(y: np.ndarray, loss: LossSpec) -> np.ndarray:
    """Integer labels from sparse, one-hot or 0/1 targets (:func:`loss_targets` first)."""
    y = loss_targets(loss, y)
    if loss.name is LossName.CATEGORICAL:
        return np.asarray(np.argmax(y.reshape(-1, y.shape[-1]), axis=-1))
    return y.reshape(-1).astype(np.int64)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(probs, axis=-1) == labels)) if len(labels) else 0.0


def top_k_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    if not len(labels):
        return 0.0
    top = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=-1)))


def macro_f1(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Unweighted mean of per-class F1 = 2TP / (2TP + FP + FN)."""
    classes = np.union1d(predicted, labels)
    if not len(classes):
        return 0.0
    scores = []
    for c in classes:
        tp = np.sum((predicted == c) & (labels == c))
        fp = np.sum((predicted == c) & (labels != c))
        fn = np.sum((predicted != c) & (labels == c))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def loss_value(outputs: np.ndarray, y: np.ndarray, loss: LossSpec) -> float:
    """Mean loss over the samples, as Keras computes it."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if loss.name is LossName.MSE:
        return float(np.mean((outputs - np.asarray(y, np.float64).reshape(outputs.shape)) ** 2))
    probs = np.clip(class_probabilities(outputs, loss), EPS, 1.0 - EPS)
    if loss.name is LossName.CATEGORICAL:
        target = np.asarray(y, np.float64).reshape(probs.shape)
        return float(np.mean(-np.sum(target * np.log(probs), axis=-1)))
    labels = class_labels(y, loss)
    if loss.name is LossName.BINARY:
        p = probs[:, 1]
        return float(np.mean(-(labels * np.log(p) + (1 - labels) * np.log(1 - p))))
    return float(np.mean(-np.log(probs[np.arange(len(labels)), labels])))


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Mean over rows of KL(p || q) = sum p log(p / q), in nats."""
    p = np.clip(np.asarray(p, np.float64), EPS, 1.0)
    q = np.clip(np.asarray(q, np.float64), EPS, 1.0)
    return float(np.mean(np.sum(p * np.log(p / q), axis=-1)))


def relative_l2(y: np.ndarray, y0: np.ndarray) -> float:
    """||y - y0|| / ||y0|| over the whole split (inf if y0 is all zeros and y is not)."""
    y, y0 = np.asarray(y, np.float64), np.asarray(y0, np.float64)
    ref = float(np.linalg.norm(y0))
    diff = float(np.linalg.norm(y - y0))
    if ref == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / ref


def top1_agreement(probs: np.ndarray, reference: np.ndarray) -> float:
    if not len(probs):
        return 0.0
    return float(np.mean(np.argmax(probs, axis=-1) == np.argmax(reference, axis=-1)))


def check_labels(y: np.ndarray, outputs: np.ndarray, loss: LossSpec) -> None:
    """Refuse class labels the model's outputs cannot score (clear error, not an IndexError)."""
    if loss.name is not LossName.SPARSE_CATEGORICAL or not len(y):
        return
    labels = class_labels(y, loss)
    classes = int(np.asarray(outputs).shape[-1])
    if labels.min() < 0 or labels.max() >= classes:
        raise DatasetError(
            f"labels range over [{labels.min()}, {labels.max()}] but the model outputs "
            f"{classes} classes; labels must be integers in [0, {classes - 1}]"
        )


def quality(outputs: np.ndarray, y: np.ndarray, loss: LossSpec) -> dict[str, Any]:
    """Accuracy (top-1, top-5 for >= 10 classes), macro-F1 and loss; loss only for regression."""
    out: dict[str, Any] = {"loss": loss_value(outputs, y, loss)}
    if not loss.is_classification:
        return out
    probs = class_probabilities(outputs, loss)
    labels = class_labels(y, loss)
    out["accuracy"] = accuracy(probs, labels)
    if probs.shape[-1] >= 10:
        out["top5_accuracy"] = top_k_accuracy(probs, labels, 5)
    out["macro_f1"] = macro_f1(np.argmax(probs, axis=-1), labels)
    return out


class Predictor(Protocol):
    """What :func:`evaluate` needs of a model (:class:`prunekit.model.LoadedModel` is one)."""

    def predict(self, x: np.ndarray, batch_size: int = ...) -> np.ndarray: ...


def model_inputs(x: np.ndarray) -> np.ndarray:
    """Inputs as a model is fed them: floating arrays unchanged, others as float32."""
    return x if x.dtype.kind == "f" else x.astype("float32")


def evaluate(model: Predictor, data: Split, loss: LossSpec) -> dict[str, Any]:
    """The engine's one evaluator: :func:`quality` of ``model``'s outputs on ``data`` (loss;
    accuracy, top-5 and macro-F1 for classification losses; ``accuracy`` None otherwise)."""
    outputs = np.asarray(model.predict(model_inputs(data.x), batch_size=512))
    check_labels(data.y, outputs, loss)
    return {"accuracy": None, **quality(outputs, data.y, loss)}


def agreement(outputs: np.ndarray, reference: np.ndarray, loss: LossSpec) -> dict[str, Any]:
    """How close the pruned model's outputs are to the original model's on the same inputs."""
    out: dict[str, Any] = {"relative_l2": relative_l2(outputs, reference)}
    if loss.is_classification:
        probs = class_probabilities(outputs, loss)
        ref = class_probabilities(reference, loss)
        out["top1"] = top1_agreement(probs, ref)
        out["kl_divergence"] = kl_divergence(ref, probs)
    return out


@dataclass
class EvalSet:
    """The samples metrics are computed on: a capped, fixed subset of one split."""

    split: str
    x: np.ndarray
    y: np.ndarray
    total: int  # samples in the split before capping

    def describe(self) -> dict[str, Any]:
        return {"split": self.split, "samples": len(self.x), "split_samples": self.total}


def eval_set(name: str, split: Split, max_samples: int = DEFAULT_MAX_SAMPLES) -> EvalSet:
    """At most ``max_samples`` of ``split``: a seeded random subset, kept in order."""
    n = len(split)
    if n <= max_samples:
        return EvalSet(name, split.x, split.y, n)
    idx = np.sort(np.random.default_rng(0).choice(n, size=max_samples, replace=False))
    return EvalSet(name, split.x[idx], split.y[idx], n)

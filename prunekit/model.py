"""Loading, inspecting and saving models: one handle over `.keras` files and SavedModels.

``LoadedModel`` hides the format: the engine asks it for the prunable weights, runs it on
arrays and saves it back in the format it came in. Prunable weights are the kernels
(rank >= 2: Dense, Conv, Depthwise...) of the model; never biases or normalisation
parameters, and embeddings only when asked.

SavedModels are handled through their signatures: the variables that
``signatures[...].trainable_variables`` captures are the model's weights, which works for
Keras 3 exports, tf_keras models and plain ``tf.Module`` objects alike.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from prunekit.custom_objects import ENV as CUSTOM_OBJECTS_ENV
from prunekit.custom_objects import allowed_objects, check_allowed
from prunekit.errors import ModelLoadError, SpecError
from prunekit.formats import ModelFormat
from prunekit.patterns import compile_patterns, excludes

EMBEDDING_PATTERN = re.compile(r"embedding", re.IGNORECASE)


def as_tf_variable(variable: Any) -> tf.Variable:
    """The ``tf.Variable`` behind a Keras 3 variable (or the variable itself)."""
    if isinstance(variable, tf.Variable):
        return variable
    return variable.value


@dataclass
class Weight:
    """One variable of the model, addressed by a stable, unique name like ``dense_1/kernel``."""

    name: str
    layer: str
    variable: Any
    trainable: bool

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.variable.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def numpy(self) -> np.ndarray:
        return np.asarray(self.variable.numpy())

    def assign(self, value: np.ndarray) -> None:
        self.variable.assign(np.asarray(value, dtype=self.numpy().dtype))

    @property
    def tf_variable(self) -> tf.Variable:
        """The underlying ``tf.Variable`` (Keras 3 variables wrap one)."""
        return as_tf_variable(self.variable)


@dataclass
class TensorInfo:
    name: str
    shape: list[int | None]
    dtype: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": self.shape, "dtype": self.dtype}


@dataclass
class Signature:
    name: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]

    def as_dict(self) -> dict[str, Any]:
        return {
            "inputs": [t.as_dict() for t in self.inputs],
            "outputs": [t.as_dict() for t in self.outputs],
        }


def _clean_name(name: str) -> str:
    return name[:-2] if name.endswith(":0") else name


def _layer_of(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name else name


def _unique_names(names: Iterable[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            seen[n] += 1
            out.append(f"{n}_{seen[n]}")
        else:
            seen[n] = 0
            out.append(n)
    return out


def _spec_info(name: str, spec: Any) -> TensorInfo:
    shape = [None if d is None else int(d) for d in spec.shape]
    dtype = spec.dtype if isinstance(spec.dtype, str) else spec.dtype.name
    return TensorInfo(name=name, shape=shape, dtype=dtype)


@dataclass
class LoadedModel:
    """A model in memory, with the format it came in."""

    format: ModelFormat
    keras_model: keras.Model | None = None
    saved_object: Any | None = None
    notes: list[str] = field(default_factory=list)
    # SavedModel signature names (and single output key) to re-create when a Keras-backed
    # model is saved as one
    signature_names: list[str] | None = None
    output_name: str | None = None

    @property
    def _keras_backed(self) -> bool:
        """Weights, calls and saving go through the Keras model. A loaded SavedModel whose
        Keras graph was rebuilt (``structured.export``) keeps working through its own
        functions and variables; only structured strategies use its ``keras_model``, to
        build a new model."""
        return self.keras_model is not None and self.saved_object is None

    @property
    def _keras(self) -> Any:
        """The Keras model (a bug, not a user error, when there is none)."""
        if self.keras_model is None:
            raise AssertionError("no Keras model")
        return self.keras_model

    @property
    def _saved(self) -> Any:
        """The loaded SavedModel object (a bug, not a user error, when there is none)."""
        if self.saved_object is None:
            raise AssertionError("no SavedModel object")
        return self.saved_object

    @property
    def _list_input(self) -> bool:
        try:
            return isinstance(self._keras.input, list)
        except (AttributeError, ValueError):  # a subclassed model has no symbolic input
            return False

    @property
    def trains_keras_model(self) -> bool:
        """Whether training runs the Keras model (its variables, its own ``losses``), rather
        than a SavedModel's restored functions."""
        return self._keras_backed

    # ----------------------------------------------------------------- weights
    def weights(self) -> list[Weight]:
        """Every variable of the model, deduplicated, with unique names."""
        if self._keras_backed:
            trainable_ids = {id(v) for v in self._keras.trainable_weights}
            variables = list(self._keras.weights)
            raw_names = [_clean_name(getattr(v, "path", v.name)) for v in variables]
            names = _unique_names(raw_names)
            return [
                Weight(n, _layer_of(n), v, id(v) in trainable_ids)
                for n, v in zip(names, variables, strict=True)
            ]
        variables, trainable_ids = self._signature_variables()
        names = _unique_names(_clean_name(v.name) for v in variables)
        return [
            Weight(n, _layer_of(n), v, id(v) in trainable_ids)
            for n, v in zip(names, variables, strict=True)
        ]

    def _signature_variables(self) -> tuple[list[Any], set[int]]:
        obj = self._saved
        seen: dict[int, Any] = {}
        trainable: set[int] = set()
        for fn in obj.signatures.values():
            for v in fn.trainable_variables:
                seen.setdefault(id(v), v)
                trainable.add(id(v))
            for v in fn.variables:
                seen.setdefault(id(v), v)
        return list(seen.values()), trainable

    def prunable_weights(
        self, exclude: Sequence[str] = (), include_embeddings: bool = False
    ) -> list[Weight]:
        """Kernels (rank >= 2, trainable) whose names match none of the ``exclude`` regexes."""
        patterns = compile_patterns(exclude)
        out = []
        for w in self.weights():
            if not w.trainable or len(w.shape) < 2:
                continue
            if not include_embeddings and EMBEDDING_PATTERN.search(w.name):
                continue
            if excludes(patterns, w.name, w.layer):
                continue
            out.append(w)
        return out

    def embedding_notes(self, exclude: Sequence[str] = ()) -> list[str]:
        """Name the embedding tables :meth:`prunable_weights` leaves out (not excluded by
        the spec already): every strategy keeps them dense."""
        patterns = compile_patterns(exclude)
        kept = [
            w
            for w in self.weights()
            if w.trainable
            and len(w.shape) >= 2
            and EMBEDDING_PATTERN.search(w.name)
            and not excludes(patterns, w.name, w.layer)
        ]
        if not kept:
            return []
        names = ", ".join(f"{w.name} ({w.size} weights)" for w in kept[:5])
        more = f" and {len(kept) - 5} more" if len(kept) > 5 else ""
        return [
            f"embedding tables are not pruned: {names}{more}. A token's row is read whole, "
            "so zeros there save nothing at run time and cost accuracy; every other kernel "
            "(Dense, Conv1D/2D/3D, LSTM/GRU kernel and recurrent_kernel) is pruned"
        ]

    def prunable_or_raise(
        self, exclude: Sequence[str] = (), include_embeddings: bool = False
    ) -> list[Weight]:
        found = self.prunable_weights(exclude, include_embeddings)
        if not found:
            hint = " (every kernel matched an `exclude` pattern)" if exclude else ""
            raise SpecError(
                "the model has no prunable weights: no trainable kernel of rank >= 2"
                f"{hint}. Dense and convolution kernels are what pruning removes."
            )
        return found

    # -------------------------------------------------------------- signatures
    def signatures(self) -> dict[str, Signature]:
        if self._keras_backed:
            m = self._keras
            if getattr(m, "_functional", m) is m and not hasattr(m, "_nodes_by_depth"):
                return {"keras": _subclassed_signature(m)}
            inputs = [_spec_info(_keras_tensor_name(t), t) for t in _as_list(m.inputs)]
            outputs = [_spec_info(_keras_tensor_name(t), t) for t in _as_list(m.outputs)]
            return {"keras": Signature("keras", inputs, outputs)}
        out = {}
        for key, fn in self._saved.signatures.items():
            _, kwargs = fn.structured_input_signature
            inputs = [_spec_info(k, s) for k, s in sorted(kwargs.items())]
            outputs = [_spec_info(k, s) for k, s in sorted(fn.structured_outputs.items())]
            out[key] = Signature(key, inputs, outputs)
        return out

    def primary_signature(self) -> Signature:
        sigs = self.signatures()
        if "serving_default" in sigs:
            return sigs["serving_default"]
        if not sigs:
            raise ModelLoadError(
                "the SavedModel has no signatures; export it with a serving signature "
                "(keras: model.export(path); TF: tf.saved_model.save(obj, path, signatures=...))",
                reason="no_signature",
            )
        return next(iter(sigs.values()))

    # ------------------------------------------------------------------ running
    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Run the model on one input array and return its first output as numpy."""
        outs = []
        for start in range(0, len(x), batch_size):
            outs.append(np.asarray(self.call(x[start : start + batch_size], training=False)))
        return np.concatenate(outs, axis=0) if outs else np.zeros((0,))

    def call(self, x: Any, training: bool = False) -> Any:
        """Differentiable forward pass (a tensor in, the first output tensor out)."""
        if self._keras_backed:
            # models rebuilt from Keras 2 configs keep their single input in a list
            out = self._keras([x] if self._list_input else x, training=training)
            return out[0] if isinstance(out, list | tuple) else out
        sig = self.primary_signature()
        fn = self._saved.signatures[sig.name]
        if len(sig.inputs) != 1:
            raise SpecError(
                f"signature {sig.name!r} takes {len(sig.inputs)} inputs; metrics and "
                "fine-tuning support single-input models"
            )
        spec = sig.inputs[0]
        result = fn(**{spec.name: tf.cast(x, spec.dtype)})
        return result[sig.outputs[0].name]

    # ------------------------------------------------------------------- saving
    def save(self, path: Path) -> Path:
        """Save in the input's format: a ``.keras`` file or a SavedModel directory."""
        path = Path(path)
        if self.format is ModelFormat.KERAS:
            assert self.keras_model is not None
            self.keras_model.save(path)
            return path
        if self._keras_backed:  # a structured strategy's new model, saved as a SavedModel
            from prunekit.structured.export import export_saved_model

            names = self.signature_names
            return export_saved_model(
                self.keras_model, path, names or ("serving_default", "serve"), self.output_name
            )
        obj = self._saved
        self._drop_unused_variable_copies()
        tf.saved_model.save(obj, str(path), signatures=dict(obj.signatures))
        return path

    def _drop_unused_variable_copies(self) -> None:
        """Keras 3 ``model.export`` also tracks a second copy of every variable in
        ``_all_variables``, used by no function. Saved as is, a pruned model would carry the
        dense copy; drop the list when none of its variables is captured by a signature."""
        obj = self._saved
        extra = getattr(obj, "_all_variables", None)
        if not extra:
            return
        used, _ = self._signature_variables()
        used_ids = {id(v) for v in used}
        if not any(id(v) in used_ids for v in extra):
            obj._all_variables = []
            self.notes.append(
                "dropped the unused duplicate variable copy (`_all_variables`) that Keras 3 "
                "exports keep; the saved model holds each weight once"
            )


def _subclassed_signature(m: keras.Model) -> Signature:
    """Inputs and outputs of a subclassed model, which keeps no symbolic tensors: its
    input from the shape it was built with, its outputs traced symbolically from there."""
    shape = (m.get_build_config() or {}).get("input_shape")
    if not isinstance(shape, list | tuple) or not all(
        d is None or isinstance(d, int) for d in shape
    ):
        raise ModelLoadError(
            f"subclassed model {type(m).__name__!r} was saved without a single input shape "
            f"(build config {shape!r}); call it once on a batch before saving it",
            reason="model_not_built",
        )
    x = keras.KerasTensor(tuple(shape), dtype="float32", name="input")
    out = m.compute_output_spec(x)
    outputs = [_spec_info(f"output_{i}", t) for i, t in enumerate(_as_list(out))]
    return Signature("keras", [_spec_info("input", x)], outputs)


def _as_list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, list | tuple) else [x]


def _keras_tensor_name(t: Any) -> str:
    name = getattr(t, "name", "") or ""
    return _clean_name(name)


def load_model(path: Path, fmt: ModelFormat | str) -> LoadedModel:
    """Load a `.keras` file (``safe_mode=True``: no arbitrary code) or a SavedModel directory."""
    fmt = ModelFormat(fmt)
    path = Path(path)
    if fmt is ModelFormat.KERAS:
        # custom classes: only those the operator's allow-listed modules register
        allowed = allowed_objects()
        check_allowed(path, allowed)
        custom = allowed or None
        try:
            model = keras.saving.load_model(
                path, compile=True, safe_mode=True, custom_objects=custom
            )
        except Exception as first:
            try:
                model = keras.saving.load_model(
                    path, compile=False, safe_mode=True, custom_objects=custom
                )
            except Exception as exc:
                raise ModelLoadError(_keras_load_message(exc)) from exc
            loaded = LoadedModel(ModelFormat.KERAS, keras_model=model)
            loaded.notes.append(f"loaded without its compile config ({first}); loss inferred")
            return loaded
        return LoadedModel(ModelFormat.KERAS, keras_model=model)
    try:
        obj = tf.saved_model.load(str(path))
    except Exception as exc:
        raise ModelLoadError(_saved_model_load_message(exc)) from exc
    loaded = LoadedModel(ModelFormat.SAVED_MODEL, saved_object=obj)
    loaded.primary_signature()  # raises a clear error when there is none
    _attach_keras_graph(loaded, path)
    return loaded


def _attach_keras_graph(loaded: LoadedModel, path: Path) -> None:
    """Rebuild the Keras model of a SavedModel prunekit or tf_keras wrote (see
    ``structured.export``); other SavedModels stay function-only."""
    from prunekit.structured.export import ArchitectureError, load_keras_graph

    try:
        model = load_keras_graph(path, loaded.saved_object)
    except ArchitectureError as exc:
        loaded.notes.append(f"embedded Keras architecture ignored: {exc}")
        return
    if model is not None:
        loaded.keras_model = model
        loaded.signature_names = list(loaded._saved.signatures)
        outputs = loaded.primary_signature().outputs
        loaded.output_name = outputs[0].name if len(outputs) == 1 else None


def _keras_load_message(exc: Exception) -> str:
    text = str(exc)
    if "safe_mode" in text or "Lambda" in text:
        # name the layer Keras refused: a Lambda, or another that deserialises code or
        # unsafe state (a StringLookup's vocabulary file, say) - not always a Lambda
        culprit = (
            "a Lambda layer" if "lambda" in text.lower() else "a layer Keras will not load safely"
        )
        return (
            f"the .keras file contains {culprit} ({text.splitlines()[0][:300]}); prunekit "
            "loads models with safe_mode=True and refuses to execute embedded code. Replace "
            "that layer with built-in layers that need no code on load and upload again."
        )
    if "Could not locate" in text or "Unknown" in text or "custom" in text.lower():
        return (
            "the .keras file uses a custom class that is not built into Keras "
            f"({text.splitlines()[0][:300]}). Custom classes load only from modules the "
            f"operator lists in {CUSTOM_OBJECTS_ENV}; otherwise use built-in Keras layers, "
            "or export a SavedModel (pruned unstructured only)."
        )
    return f"the .keras file could not be loaded: {text.splitlines()[0][:500] if text else exc!r}"


def _saved_model_load_message(exc: Exception) -> str:
    text = str(exc)
    if "Op type not registered" in text or "not registered" in text:
        return (
            "the SavedModel needs custom TensorFlow ops that this worker does not have "
            f"({text.splitlines()[0][:300]}). Export it with built-in ops only."
        )
    first = text.splitlines()[0][:500] if text else repr(exc)
    return f"the SavedModel could not be loaded: {first}"

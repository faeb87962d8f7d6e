"""SavedModels that keep their Keras graph, so structured pruning can rebuild them.

A SavedModel stores traced TensorFlow functions and variables, not layers: Keras 3 cannot
rebuild a model from one (``keras.models.load_model`` refuses SavedModel directories;
``keras.layers.TFSMLayer`` wraps one as an opaque, inference-only layer). Removing channels
needs the layer graph, so structured strategies accept:

* ``.keras`` files (the architecture is in their ``config.json``);
* SavedModels that prunekit itself wrote (the structured strategies' output, or any model
  saved through :func:`export_saved_model`): besides the usual signatures they carry the
  Keras architecture as ``assets/prunekit_keras_model.json`` (configuration only, no
  weights; built-in layers only, deserialised with ``safe_mode=True``). On load, the
  architecture is rebuilt and every weight is taken from the SavedModel's own variables,
  matched by their unique Keras path (``conv/kernel``) and shape, so the weights are
  stored once and can never disagree with the serving functions.

Generic SavedModels (``model.export``, ``tf.saved_model.save``, tf_keras exports) have no
such architecture and are refused by structured strategies with a clear message.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

KERAS_CONFIG_ASSET = "prunekit_keras_model.json"
FORMAT_VERSION = 1
DEFAULT_SIGNATURES = ("serving_default", "serve")


def _input_specs(model: keras.Model) -> list[tf.TensorSpec]:
    specs = []
    for i, t in enumerate(model.inputs):
        name = getattr(getattr(t, "_keras_history", None), "operation", None)
        name = getattr(name, "name", None) or getattr(t, "name", None) or f"input_{i}"
        specs.append(tf.TensorSpec(tuple(t.shape), t.dtype, name=name))
    return specs


def export_saved_model(
    model: keras.Model, path: Path, signature_names: Sequence[str] = DEFAULT_SIGNATURES
) -> Path:
    """Write ``model`` as a SavedModel with one signature per name, plus its architecture.

    Every signature takes the model's inputs under their Keras input names (as
    ``model.export`` does) and returns ``output_0``...; the architecture goes to
    ``assets/`` so prunekit can rebuild the Keras model from this SavedModel later.
    """
    path = Path(path)
    specs = _input_specs(model)
    single = len(specs) == 1

    def serve(*args: Any) -> Any:
        return model(args[0] if single else list(args), training=False)

    archive = keras.export.ExportArchive()
    # no archive.track(model): it would store a second copy of every variable
    for name in dict.fromkeys(signature_names or DEFAULT_SIGNATURES):
        archive.add_endpoint(name, serve, input_signature=specs)
    archive.write_out(str(path), verbose=False)
    assets = path / "assets"
    assets.mkdir(exist_ok=True)
    payload = {
        "format": "prunekit.keras_architecture",
        "version": FORMAT_VERSION,
        "keras_version": keras.__version__,
        "model": keras.saving.serialize_keras_object(model),
        "weights": [_weight_key(w) for w in model.weights],
    }
    (assets / KERAS_CONFIG_ASSET).write_text(json.dumps(payload))
    return path


def _weight_key(variable: Any) -> str:
    return str(getattr(variable, "path", None) or variable.name).removesuffix(":0")


class ArchitectureError(ValueError):
    """The SavedModel's embedded architecture cannot be matched to its variables."""


def load_keras_graph(path: Path, saved_object: Any) -> keras.Model | None:
    """The Keras model behind a prunekit SavedModel, or ``None`` when it carries none.

    Raises :class:`ArchitectureError` when the architecture is present but does not match
    the SavedModel's variables (edited or corrupted files).
    """
    asset = Path(path) / "assets" / KERAS_CONFIG_ASSET
    if not asset.is_file():
        return None
    try:
        payload = json.loads(asset.read_text())
        model = keras.saving.deserialize_keras_object(payload["model"], safe_mode=True)
    except Exception as exc:
        raise ArchitectureError(f"the embedded Keras architecture cannot be read: {exc}") from exc
    if not isinstance(model, keras.Model):
        raise ArchitectureError("the embedded Keras architecture is not a model")
    variables: dict[str, Any] = {}
    for fn in saved_object.signatures.values():
        for v in fn.variables:
            key = _weight_key(v)
            if key in variables and variables[key] is not v:
                raise ArchitectureError(f"two SavedModel variables are named {key!r}")
            variables[key] = v
    keys = [_weight_key(w) for w in model.weights]
    if len(set(keys)) != len(keys):
        raise ArchitectureError("the architecture's weight paths are not unique")
    missing = [k for k in keys if k not in variables]
    if missing or len(keys) != len(variables):
        raise ArchitectureError(
            "the architecture does not match the SavedModel's variables "
            f"(missing: {missing[:5]}, {len(keys)} weights vs {len(variables)} variables)"
        )
    for w, key in zip(model.weights, keys, strict=True):
        value = np.asarray(variables[key].numpy())
        if tuple(value.shape) != tuple(w.shape):
            raise ArchitectureError(
                f"weight {key!r}: architecture shape {tuple(w.shape)} != saved {value.shape}"
            )
        w.assign(value)
    return model


def save_other_formats(model: Any | None, out_dir: Path) -> dict[Any, Path]:
    """For a model a structured strategy built (a Keras-backed ``LoadedModel``), also write
    the format it was not saved in: ``{ModelFormat: download path}``. ``{}`` otherwise."""
    from prunekit.formats import ModelFormat
    from prunekit.metrics.size import zip_directory

    if model is None or model.keras_model is None:
        return {}
    out_dir = Path(out_dir)
    if model.format is ModelFormat.KERAS:
        names = model.signature_names or list(DEFAULT_SIGNATURES)
        directory = export_saved_model(
            model.keras_model, out_dir / "alternate" / "saved_model", names
        )
        return {
            ModelFormat.SAVED_MODEL: zip_directory(directory, out_dir / "model.saved_model.zip")
        }
    path = out_dir / "model.keras"
    model.keras_model.save(path)
    return {ModelFormat.KERAS: path}

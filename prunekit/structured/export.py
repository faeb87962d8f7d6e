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

* SavedModels written by tf_keras (Keras 2, ``model.save(dir)``): their
  ``keras_metadata.pb`` holds the Keras 2 model config, which Keras 3's legacy
  deserialiser can read once the Keras 2 tuple encoding is undone; Lambda layers and
  TensorFlow-op layers are refused (they would run stored code, or Keras 3 has no such
  class), and the weights again come from the SavedModel's variables by name and shape.

Generic SavedModels (Keras 3 ``model.export``, ``tf.saved_model.save`` of a ``tf.Module``)
have no architecture and are refused by structured strategies with a clear message.
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
TF_KERAS_METADATA = "keras_metadata.pb"
UNSAFE_LEGACY_CLASSES = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda"})
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
    model: keras.Model,
    path: Path,
    signature_names: Sequence[str] = DEFAULT_SIGNATURES,
    output_name: str | None = None,
) -> Path:
    """Write ``model`` as a SavedModel with one signature per name, plus its architecture.

    Every signature takes the model's inputs under their Keras input names (as
    ``model.export`` does) and returns ``output_0``... (or ``output_name`` for a
    single-output model, to keep an uploaded SavedModel's output key); the architecture
    goes to ``assets/`` so prunekit can rebuild the Keras model from this SavedModel later.
    """
    path = Path(path)
    specs = _input_specs(model)
    single = len(specs) == 1
    named = output_name if output_name and len(model.outputs) == 1 else None

    as_list = not single or isinstance(model.input, list)  # Keras 2 configs keep [input]

    def serve(*args: Any) -> Any:
        out = model(list(args) if as_list else args[0], training=False)
        return {named: out} if named else out

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
    legacy = Path(path) / TF_KERAS_METADATA
    if asset.is_file():
        try:
            payload = json.loads(asset.read_text())
            model = keras.saving.deserialize_keras_object(payload["model"], safe_mode=True)
        except Exception as exc:
            raise ArchitectureError(
                f"the embedded Keras architecture cannot be read: {exc}"
            ) from exc
    elif legacy.is_file():
        model = _from_tf_keras_metadata(legacy)
    else:
        return None
    if not isinstance(model, keras.Model):
        raise ArchitectureError("the embedded Keras architecture is not a model")
    _assign_from_variables(model, saved_object)
    return model


def _untuple(obj: Any) -> Any:
    """Keras 2 metadata encodes tuples as ``{"class_name": "__tuple__", "items": [...]}``."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__tuple__":
            return [_untuple(i) for i in obj.get("items", [])]
        return {k: _untuple(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_untuple(i) for i in obj]
    return obj


def _class_names(obj: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(obj, dict):
        if isinstance(obj.get("class_name"), str):
            found.add(obj["class_name"])
        for v in obj.values():
            found |= _class_names(v)
    elif isinstance(obj, list):
        for v in obj:
            found |= _class_names(v)
    return found


def _from_tf_keras_metadata(path: Path) -> keras.Model:
    """Rebuild (without weights) the Keras 2 model a tf_keras SavedModel describes."""
    from keras.src.legacy.saving import saving_utils
    from keras.src.saving.serialization_lib import SafeModeScope
    from tensorflow.python.keras.protobuf import saved_metadata_pb2

    try:
        meta = saved_metadata_pb2.SavedMetadata()
        meta.ParseFromString(path.read_bytes())
        root = next(n for n in meta.nodes if n.node_path == "root")
        info = json.loads(root.metadata)
        config = {"class_name": info["class_name"], "config": _untuple(info["config"])}
    except Exception as exc:
        raise ArchitectureError(f"keras_metadata.pb cannot be read: {exc}") from exc
    if config["class_name"] not in ("Functional", "Sequential", "Model"):
        raise ArchitectureError(
            f"the tf_keras model is a {config['class_name']} (subclassed): its layer graph "
            "is not stored"
        )
    unsafe = _class_names(config) & UNSAFE_LEGACY_CLASSES
    if unsafe:
        raise ArchitectureError(
            f"the tf_keras model contains {', '.join(sorted(unsafe))} layers (stored Python "
            "code or raw TensorFlow ops), which cannot be rebuilt safely"
        )
    try:
        with SafeModeScope(True):
            return saving_utils.model_from_config(config)
    except Exception as exc:
        raise ArchitectureError(f"Keras 3 cannot rebuild the tf_keras model: {exc}") from exc


def _assign_from_variables(model: keras.Model, saved_object: Any) -> None:
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
            model.keras_model, out_dir / "alternate" / "saved_model", names, model.output_name
        )
        return {
            ModelFormat.SAVED_MODEL: zip_directory(directory, out_dir / "model.saved_model.zip")
        }
    path = out_dir / "model.keras"
    model.keras_model.save(path)
    return {ModelFormat.KERAS: path}

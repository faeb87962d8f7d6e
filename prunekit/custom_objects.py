"""Custom Keras classes in uploaded `.keras` files: allowed only from operator-listed modules.

A `.keras` file names its classes; Keras builds built-in ones itself and looks custom ones
(``@keras.saving.register_keras_serializable``) up in its registry of classes that imported
code registered. An upload must never decide which code runs, so prunekit:

* imports the modules the operator lists in ``PRUNEKIT_CUSTOM_OBJECT_MODULES``
  (comma-separated module names installed in the worker's environment), which registers
  their classes;
* reads the file's ``config.json`` before loading and refuses, naming the class and the
  setting, any class that is neither built into Keras (``keras.*``, or the Keras libraries
  Keras itself imports: ``keras_hub``, ``keras_cv``, ``keras_nlp``) nor registered by one of
  those modules;
* loads with ``safe_mode=True`` and exactly those classes as ``custom_objects``.

A subclassed ``keras.Model`` with ``get_config`` and its registered custom layers loads
this way, and unstructured strategies prune it (its weights are ordinary variables).
"""

from __future__ import annotations

import importlib
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras

from prunekit.errors import ModelLoadError

ENV = "PRUNEKIT_CUSTOM_OBJECT_MODULES"
KERAS_PACKAGES = frozenset({"keras", "keras_hub", "keras_cv", "keras_nlp"})


def allowed_modules(value: str | None = None) -> tuple[str, ...]:
    """Module names from ``value`` (default: the ``PRUNEKIT_CUSTOM_OBJECT_MODULES`` setting)."""
    raw = os.environ.get(ENV, "") if value is None else value
    return tuple(dict.fromkeys(m.strip() for m in raw.split(",") if m.strip()))


def _in_modules(obj: Any, modules: tuple[str, ...]) -> bool:
    mod = str(getattr(obj, "__module__", "") or "")
    return any(mod == m or mod.startswith(m + ".") for m in modules)


def allowed_objects(modules: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Registered name -> class of every class the allow-listed modules registered."""
    modules = allowed_modules() if modules is None else modules
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ModelLoadError(
                f"{ENV} lists module {name!r}, which cannot be imported in the worker ({exc}); "
                "install it there or remove it from the setting",
                reason="custom_objects_misconfigured",
            ) from exc
    registry = keras.saving.get_custom_objects()
    return {k: v for k, v in registry.items() if _in_modules(v, modules)}


def _class_entries(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("class_name"), str) and "config" in node:
            yield node
        for value in node.values():
            yield from _class_entries(value)
    elif isinstance(node, list):
        for value in node:
            yield from _class_entries(value)


def custom_classes(path: Path) -> list[tuple[str, str]]:
    """(registered name, module) of every class in a `.keras` file's config that Keras does
    not build itself; empty for a file without a readable ``config.json`` (Keras reports)."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []
    found: dict[str, str] = {}
    for entry in _class_entries(config):
        module = str(entry.get("module") or "")
        if module.split(".", 1)[0] in KERAS_PACKAGES or module == "builtins":
            continue
        if str(entry["class_name"]).startswith("__"):  # Keras' own markers (__keras_tensor__)
            continue
        name = str(entry.get("registered_name") or entry["class_name"])
        found.setdefault(name, module)
    return sorted(found.items())


def check_allowed(path: Path, allowed: dict[str, Any]) -> None:
    """Refuse a `.keras` file that names a custom class the operator did not allow."""
    refused = [(name, module) for name, module in custom_classes(path) if name not in allowed]
    if not refused:
        return
    name, module = refused[0]
    listed = ", ".join(allowed_modules()) or "none"
    raise ModelLoadError(
        f"the .keras file uses custom class {name!r} (module {module!r}), which is not built "
        f"into Keras. Custom classes load only from modules the operator allows in {ENV} "
        f"(now: {listed}), and only when registered there with "
        "@keras.saving.register_keras_serializable; an upload cannot add code. Ask the "
        f"operator to install module {module!r} in the worker and list it in {ENV}, or "
        "rebuild the model from built-in Keras layers.",
        reason="custom_class_not_allowed",
    )

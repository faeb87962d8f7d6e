"""Whether structured pruning can read a model's layer graph, and what to do when not.

Structured strategies rebuild a smaller model from the layer graph Keras records for a
Functional or Sequential model. A subclassed ``keras.Model`` has no such graph: its
``call`` is Python code, so which layer feeds which is unknown and no channel can be
removed safely. Such a model is refused up front (the API's 422, or the job's error) with
the class named and the ways to make it work; unstructured strategies prune it as it is.
"""

from __future__ import annotations

import keras

from prunekit.layers import functional_of


def untraceable_reason(model: keras.Model) -> str | None:
    """Why structured pruning cannot read ``model``'s graph; None when it can."""
    if functional_of(model) is not None:
        return None
    cls = type(model)
    where = f"{cls.__module__}.{cls.__qualname__}"
    return (
        f"structured pruning rebuilds the model from its layer graph, but model "
        f"'{model.name}' is a subclassed keras.Model ({where}) whose call() is Python code "
        "prunekit cannot trace. To remove channels or heads, build the same network with the "
        "Functional API (keras.Model(inputs, outputs)) or keras.Sequential (custom layers "
        "inside it are fine: only their channels are kept) and upload that .keras file; "
        "unstructured strategies (magnitude, nm, ...) prune this model as it is."
    )

"""Custom Keras classes for the allow-list tests: a registered layer and a subclassed model.

Listed by tests in ``PRUNEKIT_CUSTOM_OBJECT_MODULES`` as ``tests.custom_keras``."""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="prunekit_tests")
class Projection(keras.layers.Layer):
    """A Dense without bias, written by hand: a custom layer with a kernel."""

    def __init__(self, units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.kernel = self.add_weight(shape=(int(input_shape[-1] or 0), self.units), name="kernel")

    def call(self, x: Any) -> Any:
        return keras.ops.matmul(x, self.kernel)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="prunekit_tests")
class TinyNet(keras.Model):
    """A subclassed model: its graph is Python code in call()."""

    def __init__(self, hidden: int = 32, classes: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hidden, self.classes = hidden, classes
        self.proj = Projection(hidden, name="proj")
        self.act = keras.layers.ReLU()
        self.head = keras.layers.Dense(classes, name="head")

    def call(self, x: Any) -> Any:
        return self.head(self.act(self.proj(x)))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "hidden": self.hidden, "classes": self.classes}

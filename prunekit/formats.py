"""The model formats the engine reads and writes."""

from enum import StrEnum


class ModelFormat(StrEnum):
    """How a model is stored. The pruned model is written in the format it came in."""

    SAVED_MODEL = "saved_model"
    KERAS = "keras"

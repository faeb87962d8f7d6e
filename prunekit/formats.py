"""The model formats the engine reads and writes."""

from enum import StrEnum


class ModelFormat(StrEnum):
    """How a model is stored. The pruned model is written in the format it came in."""

    SAVED_MODEL = "saved_model"
    KERAS = "keras"


class ArtifactFormat(StrEnum):
    """Every format a job's result can be downloaded in (``?format=`` on the download).

    The input's format always; the other Keras format for structured strategies; LiteRT
    flatbuffers when the job spec's ``exports`` asks for them; the sensitivity plot of a
    job that ran a sensitivity analysis (strategies ``sensitivity`` and ``auto``, or
    ``allocation: "sensitivity"``).
    """

    SAVED_MODEL = "saved_model"
    KERAS = "keras"
    TFLITE = "tflite"  # LiteRT float32, sparse tensors stored sparse where that helps
    TFLITE_INT8 = "tflite_int8"  # LiteRT full-integer (or dynamic-range) quantised
    SENSITIVITY_PNG = "sensitivity_png"  # the sensitivity curves drawn (sensitivity, auto)

    @property
    def suffix(self) -> str:
        """File-name ending of a download in this format."""
        return _SUFFIXES[self]

    @property
    def media_type(self) -> str:
        if self is ArtifactFormat.SENSITIVITY_PNG:
            return "image/png"
        return "application/zip" if self is ArtifactFormat.SAVED_MODEL else OCTET_STREAM


OCTET_STREAM = "application/octet-stream"
_SUFFIXES = {
    ArtifactFormat.SAVED_MODEL: ".zip",
    ArtifactFormat.KERAS: ".keras",
    ArtifactFormat.TFLITE: ".tflite",
    ArtifactFormat.TFLITE_INT8: "-int8.tflite",
    ArtifactFormat.SENSITIVITY_PNG: "-sensitivity.png",
}

"""Errors the engine raises for problems the user can act on."""


class PrunekitError(Exception):
    """Base class. ``reason`` is a short machine-readable code, the message says what to do."""

    reason = "engine_error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class ModelLoadError(PrunekitError):
    """The model could not be loaded (corrupt, unsafe, needs custom code or ops)."""

    reason = "model_load_failed"


class SpecError(PrunekitError):
    """The job spec does not fit the model (no prunable weights, exclusions remove all...)."""

    reason = "invalid_spec"


class CancelledError(PrunekitError):
    """The job was cancelled; raised cooperatively between batches and phases."""

    reason = "cancelled"

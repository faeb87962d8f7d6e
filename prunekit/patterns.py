"""User-supplied name patterns (``exclude``), compiled for a linear-time engine.

Layer and weight names come from the uploaded model, patterns from the job spec: both are
the tenant's choice. Python's ``re`` backtracks, so ``(a+)+$`` against a name of 40 ``a``
characters runs for hours while holding the GIL. RE2 (``google-re2``) matches in time linear
in the name's length whatever the pattern, and its compiled program is bounded in memory
(``max_mem``), so a pattern costs microseconds. RE2 has no backreferences and no
lookaround; such patterns are refused when the spec is validated, with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import re2

MAX_PROGRAM_BYTES = 1 << 20  # RE2's compiled-program budget per pattern (default 8 MiB)

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # refusals are reported to the caller, not to stderr
_OPTIONS.max_mem = MAX_PROGRAM_BYTES


class NamePattern(Protocol):
    pattern: str

    def search(self, text: str) -> object | None: ...


class PatternError(ValueError):
    """A pattern the linear-time engine cannot run (syntax, backreference, lookaround)."""


def compile_pattern(pattern: str) -> NamePattern:
    """Compile ``pattern`` for RE2, or raise :class:`PatternError` saying why not."""
    try:
        compiled: NamePattern = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise PatternError(
            f"{reason}. Patterns run on RE2, a linear-time engine: Python regex syntax without "
            "backreferences (\\1) or lookaround ((?=...), (?!...), (?<=...), (?<!...))"
        ) from None
    return compiled


def compile_patterns(patterns: Sequence[str] | None) -> list[NamePattern]:
    return [compile_pattern(p) for p in patterns or ()]


def excludes(patterns: Sequence[NamePattern], name: str, layer: str) -> bool:
    """Whether a weight called ``name`` in ``layer`` matches one of the ``exclude`` patterns
    (the rule :meth:`prunekit.model.LoadedModel.prunable_weights` applies)."""
    return any(p.search(name) or p.search(layer) for p in patterns)

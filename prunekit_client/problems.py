"""The API's errors (RFC 9457 ``application/problem+json``) as a Python exception."""

from __future__ import annotations

import json
from typing import Any

import httpx


class ProblemError(Exception):
    """An error answer from the API: its status, title, detail and, for validation errors,
    the offending fields (``errors``: ``{"field", "message", "type"}``). ``body`` keeps every
    member the server sent (``job_status``, ``type``...)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.body = body if body is not None else self.as_dict()
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.status} {self.title}: {self.detail}"
        fields = [f"{e.get('field')}: {e.get('message')}" for e in self.errors]
        return "; ".join([text, *fields])

    @property
    def fields(self) -> list[str]:
        """The names of the fields the server refused (``body.strategy.sparsity``)."""
        return [str(e.get("field")) for e in self.errors if e.get("field")]

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "title": self.title,
            "detail": self.detail,
            "errors": self.errors,
        }

    @classmethod
    def from_response(cls, response: httpx.Response) -> ProblemError:
        """Any error answer: a problem document when the server sent one, else the status
        line and the start of the body (a proxy's HTML page, say)."""
        try:
            body = json.loads(response.content) if response.content else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            text = response.text.strip()[:300]
            return cls(response.status_code, response.reason_phrase or "HTTP error", text)
        errors = body.get("errors")
        return cls(
            int(body.get("status") or response.status_code),
            str(body.get("title") or response.reason_phrase or "HTTP error"),
            str(body.get("detail") or ""),
            errors if isinstance(errors, list) else None,
            body,
        )

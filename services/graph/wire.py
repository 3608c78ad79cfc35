"""One Graph request and its answer, the same whether sent alone or inside a JSON batch."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


@dataclass(frozen=True)
class GraphCall:
    """A request: `path` is relative to the Graph version root and may carry a query."""

    method: str
    path: str
    body: Any = None
    client_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def is_write(self) -> bool:
        """Whether Graph counts this request against the write budget."""
        return self.method.upper() in WRITE_METHODS


@dataclass(frozen=True)
class GraphAnswer:
    """What came back: status, headers (lower-case names) and the JSON body, if any."""

    status: int
    headers: dict[str, str]
    body: Any
    client_request_id: str = ""

    @property
    def request_id(self) -> str:
        """Graph's id for the request (header, or the error body's innerError)."""
        found = self.headers.get("request-id", "")
        if not found and isinstance(self.body, dict):
            inner = (self.body.get("error") or {}).get("innerError") or {}
            if isinstance(inner, dict):
                found = str(inner.get("request-id", ""))
        return found

    @property
    def retry_after(self) -> float | None:
        """Seconds Graph asked us to wait, if it said."""
        raw = self.headers.get("retry-after", "").strip()
        try:
            return max(0.0, float(raw)) if raw else None
        except ValueError:
            return None

    @property
    def error_code(self) -> str:
        """The OData error code, or an empty string."""
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return str(error.get("code", "")) if isinstance(error, dict) else ""

    @property
    def error_message(self) -> str:
        """The OData error message, or an empty string."""
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return str(error.get("message", "")) if isinstance(error, dict) else ""

    @property
    def error_details(self) -> list[dict[str, Any]]:
        """The OData error details (e.g. an ObjectConflict on a property)."""
        error = self.body.get("error") if isinstance(self.body, dict) else None
        details = error.get("details") if isinstance(error, dict) else None
        return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def unwrap_entity(body: Any) -> Any:
    """A single entity as Graph sends it bare, or wrapped in `{"value": {...}}`.

    The reference pages for teamsUserConfiguration and telephoneNumberLongRunningOperation
    show the wrapped form; the metadata describes the bare entity. Both are accepted.
    """
    if isinstance(body, dict):
        inner = body.get("value")
        if isinstance(inner, dict):
            return inner
    return body


class TransportError(Exception):
    """No HTTP answer: the connection failed, dropped, or timed out."""

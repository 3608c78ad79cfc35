"""Transport-free Graph requests and responses, the route table, and OData query helpers.

Handlers see a `GraphRequest` and return a `GraphResponse`, so a request arriving
over HTTP and one unpacked from a JSON batch go through exactly the same code.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from yarl import URL

WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})

T = TypeVar("T")


class GraphError(Exception):
    """A failure that Graph reports as an OData error body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        details: Sequence[Mapping[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.details = list(details or [])


def bad_request(message: str, code: str = "Request_BadRequest") -> GraphError:
    """A 400 with Graph's directory error code."""
    return GraphError(400, code, message)


def not_found(key: str) -> GraphError:
    """Graph's 404 for a directory object that does not exist."""
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{key}' does not exist or one of its queried reference-property objects "
        "are not present.",
    )


@dataclass
class GraphRequest:
    """One Graph call: `path` is relative to the version root (e.g. `/users/{id}`)."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: Any
    tenant_id: str
    app_id: str
    base_url: str
    params: dict[str, str] = field(default_factory=dict)
    # The application permissions (`roles`) of the caller's token.
    roles: frozenset[str] = frozenset()

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object, or Graph's 400 when there is none."""
        if not isinstance(self.body, dict):
            raise GraphError(400, "BadRequest", "Empty Payload. JSON content expected.")
        return self.body


@dataclass
class GraphResponse:
    """What a handler answers: status, JSON body (or None) and extra headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[GraphRequest], GraphResponse]


@dataclass(frozen=True)
class Route:
    """A method and path template bound to a handler; the template names the route in stats."""

    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler


_PARAM = re.compile(r"\{(\w+)\}")


def _compile(template: str) -> re.Pattern[str]:
    pieces: list[str] = []
    position = 0
    for match in _PARAM.finditer(template):
        pieces.append(re.escape(template[position : match.start()]))
        pieces.append(f"(?P<{match.group(1)}>[^/]+?)")
        position = match.end()
    pieces.append(re.escape(template[position:]))
    # Graph treats path segments case-insensitively.
    return re.compile("^" + "".join(pieces) + "/?$", re.IGNORECASE)


class Router:
    """Finds the handler for a method and path."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler, *, name: str = "") -> None:
        """Register `handler`; `name` overrides the template shown in stats."""
        self._routes.append(Route(method.upper(), name or template, _compile(template), handler))

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """Return the route and path parameters, or raise Graph's 400/405."""
        allowed = False
        for route in self._routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            if route.method == method.upper():
                return route, match.groupdict()
            allowed = True
        if allowed:
            raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed.")
        segment = next((s for s in reversed(path.split("/")) if s), path)
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")


# OData query options

_CLAUSE = re.compile(
    r"\s*(?P<field>[A-Za-z]+)\s+eq\s+(?:'(?P<text>(?:[^']|'')*)'|(?P<word>true|false|null))\s*",
    re.IGNORECASE,
)


def parse_filter(expression: str | None, fields: Sequence[str]) -> list[tuple[str, Any]]:
    """Parse `a eq 'x' and b eq true`; any other form is Graph's unsupported-query 400."""
    if not expression:
        return []
    known = {name.lower(): name for name in fields}
    clauses: list[tuple[str, Any]] = []
    for part in re.split(r"\s+and\s+", expression.strip(), flags=re.IGNORECASE):
        match = _CLAUSE.fullmatch(part)
        if match is None or match.group("field").lower() not in known:
            raise GraphError(400, "Request_UnsupportedQuery", "Unsupported Query.")
        value: Any
        if match.group("text") is not None:
            value = match.group("text").replace("''", "'")
        else:
            value = {"true": True, "false": False, "null": None}[match.group("word").lower()]
        clauses.append((known[match.group("field").lower()], value))
    return clauses


def matches(record: Mapping[str, Any], clauses: Sequence[tuple[str, Any]]) -> bool:
    """Whether a JSON record satisfies every `eq` clause (strings compare case-insensitively)."""
    for name, wanted in clauses:
        actual = record.get(name)
        if isinstance(wanted, str) and isinstance(actual, str):
            if actual.lower() != wanted.lower():
                return False
        elif actual != wanted:
            return False
    return True


def parse_select(expression: str | None, known: Sequence[str], type_name: str) -> list[str] | None:
    """The `$select` property list, or None when absent; unknown names are Graph's 400."""
    if not expression:
        return None
    by_lower = {name.lower(): name for name in known}
    chosen: list[str] = []
    for raw in expression.split(","):
        name = raw.strip()
        if name.lower() not in by_lower:
            raise GraphError(
                400,
                "BadRequest",
                f"Parsing OData Select and Expand failed: Could not find a property named "
                f"'{name}' on type '{type_name}'.",
            )
        chosen.append(by_lower[name.lower()])
    return chosen


def page_size(request: GraphRequest, default: int, maximum: int) -> int:
    """The `$top` value within Graph's bounds for this collection."""
    raw = request.query.get("$top")
    if raw is None:
        return default
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if not 1 <= size <= maximum:
        raise GraphError(
            400,
            "Request_BadRequest",
            f"Invalid page size specified: '{raw}'. Must be between 1 and {maximum} inclusive.",
        )
    return size


def _decode_skiptoken(token: str) -> int:
    try:
        offset = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["offset"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise GraphError(400, "Request_BadRequest", "Invalid skip token.") from exc
    if not isinstance(offset, int) or offset < 0:
        raise GraphError(400, "Request_BadRequest", "Invalid skip token.")
    return offset


def _encode_skiptoken(offset: int) -> str:
    raw = json.dumps({"offset": offset}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def paginate(
    request: GraphRequest, items: Sequence[T], default: int, maximum: int
) -> tuple[Sequence[T], str | None]:
    """One page of `items` and the absolute `@odata.nextLink` to the next, if any."""
    size = page_size(request, default, maximum)
    offset = 0
    if "$skiptoken" in request.query:
        offset = _decode_skiptoken(request.query["$skiptoken"])
    elif "$skip" in request.query:
        try:
            offset = max(0, int(request.query["$skip"]))
        except ValueError as exc:
            raise GraphError(400, "BadRequest", "Invalid value for $skip.") from exc
    chunk = items[offset : offset + size]
    if offset + size >= len(items):
        return chunk, None
    query = {k: v for k, v in request.query.items() if k not in ("$skiptoken", "$skip")}
    query["$skiptoken"] = _encode_skiptoken(offset + size)
    return chunk, str(URL(request.base_url + request.path).with_query(query))


def collection(
    request: GraphRequest, context: str, values: Sequence[Any], next_link: str | None
) -> GraphResponse:
    """A 200 collection response with `@odata.context`, `value` and maybe `@odata.nextLink`."""
    body: dict[str, Any] = {"@odata.context": f"{request.base_url}/$metadata#{context}"}
    if next_link:
        body["@odata.nextLink"] = next_link
    body["value"] = list(values)
    return GraphResponse(200, body)

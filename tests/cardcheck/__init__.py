"""Validate the Adaptive Cards the bot produces, offline, two independent ways.

1. `schema_errors`: the official Adaptive Card 1.5 JSON schema, plus the Teams extensions it
   lacks (`msteams`, `choices.data` Data.Query, the `filtered` choice style).
2. `js_library_events`: the official Adaptive Cards JavaScript library (npm `adaptivecards`)
   parses and validates each card for schema version 1.5, all cards in one Node process.

`assert_valid_cards` runs both and fails with every problem of every card, named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from tests.cardcheck.errors import CardCheckSetupError
from tests.cardcheck.jslib import js_library_events
from tests.cardcheck.schema import schema_errors, schema_path

__all__ = [
    "CardCheckSetupError",
    "CardLike",
    "assert_valid_cards",
    "card_payload",
    "card_problems",
    "js_library_events",
    "schema_errors",
    "schema_path",
]


@runtime_checkable
class _CardModel(Protocol):
    def model_dump(self, *, by_alias: bool, exclude_none: bool) -> dict[str, Any]: ...


CardLike = Mapping[str, Any] | _CardModel


def card_payload(card: CardLike) -> dict[str, Any]:
    """The JSON payload of a card given as a dict or as a `microsoft_teams.cards` model."""
    if isinstance(card, _CardModel):
        return card.model_dump(by_alias=True, exclude_none=True)
    return dict(card)


def card_problems(cards: Mapping[str, CardLike] | Sequence[CardLike]) -> dict[str, list[str]]:
    """Each card's problems by name (`card[i]` in an unnamed list); clean cards are left out."""
    named = _named(cards)
    payloads = [card_payload(card) for card in named.values()]
    library_events = js_library_events(payloads)
    problems: dict[str, list[str]] = {}
    for name, payload, events in zip(named, payloads, library_events, strict=True):
        found = [f"schema: {message}" for message in schema_errors(payload)]
        found += [f"adaptivecards.js: {message}" for message in events]
        if found:
            problems[name] = found
    return problems


def assert_valid_cards(cards: Mapping[str, CardLike] | Sequence[CardLike]) -> None:
    """Raise AssertionError naming each card that either check rejects, with each problem."""
    problems = card_problems(cards)
    if problems:
        report = "\n".join(
            f"{name}:\n" + "\n".join(f"  - {problem}" for problem in found)
            for name, found in problems.items()
        )
        raise AssertionError(f"{len(problems)} invalid Adaptive Card(s):\n{report}")


def _named(cards: Mapping[str, CardLike] | Sequence[CardLike]) -> dict[str, CardLike]:
    if isinstance(cards, Mapping):
        if "type" in cards:
            raise TypeError("pass a list of cards or a mapping of name to card, not one card")
        return dict(cards)
    return {f"card[{index}]": card for index, card in enumerate(cards)}

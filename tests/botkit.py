"""Helpers for the bot's end-to-end tests: a real app over the test services, an admin in
Teams, and the card an action answers with."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from bot.app import build_app
from cards.actions import Verb
from services.container import Services
from services.domain import AdminRole, LicenceProduct
from services.users import NewUser
from services.views import UserView
from tests.cardcheck import assert_valid_cards
from tests.conftest import PROVIDER, seed_enterprise
from tests.support.activities import DEFAULT_TENANT_ID, DEFAULT_USER, TeamsActivities, TeamsUser
from tests.support.botclient import RunningBot
from tests.support.connector import FakeConnector


@dataclass
class BotHarness:
    """A running Switchboard and the Teams admin talking to it."""

    client: RunningBot
    services: Services
    teams: TeamsActivities
    connector: FakeConnector
    ent: int
    cards_seen: list[dict[str, Any]]

    async def act(
        self,
        verb: Verb | str,
        data: dict[str, Any] | None = None,
        *,
        teams: TeamsActivities | None = None,
    ) -> dict[str, Any]:
        """Press an Action.Execute button; return the card the bot answered with (validated)."""
        verb_text = verb.value if isinstance(verb, Verb) else verb
        payload = {"verb": verb_text, **(data or {})}
        response = await self.client.post((teams or self.teams).card_action(verb_text, payload))
        assert response.status == 200, response.text
        body = response.json()
        assert (
            body["statusCode"] == 200 and body["type"] == "application/vnd.microsoft.card.adaptive"
        )
        self.cards_seen.append(body["value"])
        return body["value"]

    async def say(self, text: str, *, teams: TeamsActivities | None = None) -> dict[str, Any]:
        """Type a message; return the card the bot replied with."""
        response = await self.client.post((teams or self.teams).message(text))
        assert response.status == 200, response.text
        reply = await self.connector.next_message()
        [card] = reply.adaptive_cards
        self.cards_seen.append(card)
        return card

    async def search(self, query: str, dataset: str) -> list[dict[str, str]]:
        """A type-ahead request; return its results."""
        response = await self.client.post(self.teams.search(query, dataset))
        assert response.status == 200
        body = response.json()
        assert body["type"] == "application/vnd.microsoft.search.searchResponse"
        return body["value"]["results"]


async def user_of_another_enterprise(
    harness: BotHarness, name: str = "Vic Other"
) -> tuple[int, UserView]:
    """A second enterprise (another tenant) and an Essentials user of it: what a crafted
    payload from the harness's admin must never reach."""
    other = await seed_enterprise(
        harness.services, tenant_id="t-other", numbers=("+442079470000", "+442079470009")
    )
    vic = await harness.services.users.create(
        PROVIDER, other, NewUser(name, "vic@other.com", LicenceProduct.ESSENTIALS)
    )
    return other, vic


# CommonMark's backslash escapes: what the client shows of `\*` is `*`.
_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")


def card_text(card: dict[str, Any]) -> str:
    """Every text, label, title and value on a card, as an admin reads it (markdown escapes
    shown as the characters they stand for), for assertions on what an admin reads."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            shown_as_markdown = node.get("type") in ("TextBlock", "TextRun") or "type" not in node
            for key in ("text", "label", "title", "value", "placeholder"):
                if isinstance(node.get(key), str):
                    value = node[key]
                    found.append(_ESCAPED.sub(r"\1", value) if shown_as_markdown else value)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(card)
    return "\n".join(found)


def find_input(card: dict[str, Any], input_id: str) -> dict[str, Any]:
    """The input with this id anywhere on the card."""
    stack: list[Any] = [card]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("id") == input_id and str(node.get("type", "")).startswith("Input."):
                return node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    raise AssertionError(f"no input {input_id!r} on the card")


def buttons(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The Action.Execute buttons of a card by title, with their data."""
    found: dict[str, dict[str, Any]] = {}
    stack: list[Any] = [card]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "Action.Execute":
                found[node["title"]] = node.get("data", {})
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


@pytest.fixture
async def harness(services: Services, serve_bot, teams, fake_connector, bot_settings):
    """Switchboard over the test services, with DEFAULT_USER as the enterprise's admin."""
    ent = await seed_enterprise(services, tenant_id=DEFAULT_TENANT_ID)
    await services.enterprises.grant(
        PROVIDER,
        aad_object_id=DEFAULT_USER.aad_object_id,
        role=AdminRole.ENTERPRISE_ADMIN,
        enterprise_id=ent,
        display_name=DEFAULT_USER.name,
    )
    client = await serve_bot(build_app(services, bot_settings))
    seen: list[dict[str, Any]] = []
    yield BotHarness(client, services, teams, fake_connector, ent, seen)
    if seen:
        assert_valid_cards({f"card {i}": card for i, card in enumerate(seen)})


async def global_admin(harness: BotHarness, name: str = "Gina Global") -> TeamsActivities:
    """A new Global Admin of the harness's enterprise, talking to the bot."""
    person = TeamsUser.random(name)
    await harness.services.enterprises.grant(
        PROVIDER,
        aad_object_id=person.aad_object_id,
        role=AdminRole.GLOBAL_ADMIN,
        enterprise_id=harness.ent,
        display_name=name,
    )
    return harness.teams.with_user(person)


def fact_sets(card: dict[str, Any]) -> list[dict[str, str]]:
    """Each FactSet of the card as title -> value, top to bottom."""
    found: list[dict[str, str]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "FactSet":
                found.append({f["title"]: f["value"] for f in node["facts"]})
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(card)
    return found

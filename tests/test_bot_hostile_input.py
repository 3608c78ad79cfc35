"""Hostile and malformed input over real HTTP: a 4xx or a card that says what is wrong, never a
5xx, an ERROR log line or the apology card."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from bot.features import build_router
from cards.actions import Dataset, Verb
from services.domain import AdminRole
from tests.botkit import BotHarness, card_text, user_of_another_enterprise
from tests.conftest import PROVIDER
from tests.support.activities import TeamsUser

APOLOGY = "Sorry, that did not work"


@pytest.fixture(autouse=True)
def _no_error_logs(caplog: pytest.LogCaptureFixture):
    """Every test here also fails on an ERROR log line: hostile input is not our bug."""
    caplog.set_level(logging.WARNING)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"a": [value]}
    return value


async def test_a_body_is_not_read_before_the_token_is_checked(harness: BotHarness) -> None:
    for body in (b"[" * 50_000 + b"]" * 50_000, b"x" * (2 * 1024 * 1024)):
        response = await harness.client.post_raw(body, authorization="Bearer not-a-token")
        assert response.status == 401, response.text


async def test_deep_nesting_is_a_400(harness: BotHarness) -> None:
    # with a valid token too: the depth limit holds for everyone
    deep = harness.teams.card_action(Verb.HOME.value, {"nest": "NEST"})
    body = json.dumps(deep).replace('"NEST"', '{"a": [' * 2_000 + "1" + "]}" * 2_000)
    response = await harness.client.post_raw(
        body.encode(), authorization=harness.client._mint_authorization(deep["serviceUrl"])
    )
    assert response.status == 400, response.text


async def test_nesting_beyond_the_limit_is_a_400(harness: BotHarness) -> None:
    activity = harness.teams.card_action(Verb.HOME.value, {"nest": _nested(200)})
    response = await harness.client.post(activity)
    assert response.status == 400, response.text


async def test_oversized_body_is_refused(harness: BotHarness) -> None:
    activity = harness.teams.message("x" * (2 * 1024 * 1024))
    response = await harness.client.post(activity)
    assert response.status == 413


@pytest.mark.parametrize(
    "conversation",
    [None, "missing", {}, {"id": None}, {"id": ""}, {"id": 42}, "a string"],
    ids=["null", "missing", "empty", "null-id", "blank-id", "number-id", "string"],
)
async def test_missing_or_null_conversation_is_a_400(harness: BotHarness, conversation) -> None:
    for activity in (
        harness.teams.message("help"),
        harness.teams.card_action(Verb.HOME.value),
        harness.teams.members_added(),
    ):
        if conversation == "missing":
            del activity["conversation"]
        else:
            activity["conversation"] = conversation
        response = await harness.client.post(activity)
        assert response.status == 400, (activity["type"], response.text)


async def test_null_recipient_and_nulls_in_lists_are_a_400(harness: BotHarness) -> None:
    teams = harness.teams
    cases: list[dict[str, Any]] = []
    for activity in (teams.message("help"), teams.card_action(Verb.HOME.value)):
        activity["recipient"] = None
        cases.append(activity)
    added = teams.members_added()
    added["membersAdded"] = [None]
    cases.append(added)
    entities = teams.message("help")
    entities["entities"] = [None]
    cases.append(entities)
    mention = teams.message("help", conversation="channel")
    for entity in mention["entities"]:
        if entity["type"] == "mention":
            entity["mentioned"] = None
    cases.append(mention)
    for activity in cases:
        response = await harness.client.post(activity)
        assert response.status == 400, (activity, response.text)
    # the well-formed versions still work
    assert (await harness.client.post(teams.message("help", conversation="channel"))).status == 200
    assert APOLOGY not in card_text((await harness.connector.next_message()).adaptive_cards[0])


@pytest.mark.parametrize("field", ["aadObjectId", "tenant"])
async def test_overlong_identifiers_are_refused_before_any_query(
    harness: BotHarness, field: str
) -> None:
    for activity in (harness.teams.message("help"), harness.teams.card_action("home")):
        if field == "tenant":
            activity["channelData"]["tenant"]["id"] = "t" * 10_000
        else:
            activity["from"]["aadObjectId"] = "a" * 10_000
        response = await harness.client.post(activity)
        assert response.status == 400, response.text


async def test_nul_in_the_envelope_is_a_400(harness: BotHarness) -> None:
    for path in (("from", "aadObjectId"), ("conversation", "id"), ("id",), ("from", "name")):
        activity = harness.teams.message("help")
        target = activity
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = "abc\u0000def"
        response = await harness.client.post(activity)
        assert response.status == 400, (path, response.text)


HUGE_IDS = [2**31, 2**70, int("4" * 400), "4" * 400, -(2**63) - 1]


@pytest.mark.parametrize(
    "verb",
    [
        Verb.USER_OPEN,
        Verb.USER_EDIT_SUBMIT,
        Verb.NUMBER_AUTO,
        Verb.NUMBER_ASSIGN,
        Verb.NUMBER_RELEASE,
        Verb.CALLER_ID_OPEN,
        Verb.CALLER_ID_SUBMIT,
        Verb.NUMBERS_OPEN,
        Verb.TELEPHONY_OPEN,
        Verb.DESK_PHONE_ISSUE,
    ],
)
async def test_ids_beyond_the_database_range_get_a_clear_message(
    harness: BotHarness, verb: Verb
) -> None:
    model = build_router().routes[verb.value].model
    for huge in HUGE_IDS:
        for field in ("user_id", "version", "page"):
            if field not in model.model_fields:
                continue
            data = {"user_id": 1, "version": 1, field: huge}
            text = card_text(await harness.act(verb, data))
            assert APOLOGY not in text, (field, huge)
            if field != "page":  # a page beyond the last is shown as the last one
                assert "could not read" in text, (field, huge, text)


async def test_a_provider_naming_a_huge_enterprise_is_told_to_pick_one(
    harness: BotHarness,
) -> None:
    provider = TeamsUser.random("Pat Provider")
    await harness.services.enterprises.grant(
        PROVIDER,
        aad_object_id=provider.aad_object_id,
        role=AdminRole.SERVICE_PROVIDER,
        enterprise_id=None,
    )
    teams = harness.teams.with_user(provider)
    for huge in [*HUGE_IDS, "9" * 5000]:
        for verb in (Verb.DIRECTORY_OPEN, Verb.HOME):
            text = card_text(await harness.act(verb, {"ent": huge}, teams=teams))
            assert APOLOGY not in text, (verb, huge)
        results = await harness.client.post(
            {
                **teams.search("1", Dataset.FREE_NUMBERS.value),
                "value": {"queryText": "1", "dataset": "numbers.free", "data": {"ent": huge}},
            }
        )
        assert results.status == 200 and results.json()["statusCode"] == 200


async def test_nul_in_typeahead_text_finds_nothing(harness: BotHarness) -> None:
    for dataset in Dataset:
        response = await harness.client.post(harness.teams.search("12\u000034", dataset.value))
        assert response.status == 200
        body = response.json()
        assert body["statusCode"] == 200, body
        assert body["value"]["results"] == []


async def test_nul_in_card_data_gets_a_clear_message(harness: BotHarness) -> None:
    data = {
        "display_name": "Ada\u0000Lovelace",
        "email": "ada@contoso.example",
        "licence": "essentials",
    }
    text = card_text(await harness.act(Verb.USER_CREATE_SUBMIT, data))
    assert APOLOGY not in text
    assert "could not read" in text
    text = card_text(await harness.act(Verb.USER_FIND, {"query": "a\u0000"}))
    assert APOLOGY not in text
    card = await harness.say("find ada\u0000")
    assert APOLOGY not in card_text(card)


async def test_editing_a_user_of_another_enterprise_says_it_does_not_exist(
    harness: BotHarness,
) -> None:
    _, vic = await user_of_another_enterprise(harness)
    card = await harness.act(
        Verb.USER_EDIT_SUBMIT,
        {
            "user_id": vic.id,
            "version": vic.version,
            "display_name": "Hijacked",
            "email": "vic@other.com",
            "licence": "essentials",
        },
    )
    text = card_text(card)
    assert APOLOGY not in text
    assert "That user does not exist in this enterprise" in text
    assert (await harness.services.users.get(vic.enterprise_id, vic.id)).display_name == "Vic Other"


async def test_a_conversation_id_outside_printable_ascii_is_a_400(harness: BotHarness) -> None:
    for conversation_id in ("a:1Ā", "a:1 x", "a:1\u202e"):
        activity = harness.teams.message("help")
        activity["conversation"]["id"] = conversation_id
        response = await harness.client.post(activity)
        assert response.status == 400, (conversation_id, response.text)


async def test_channel_mentions_are_removed_as_text_not_as_patterns(harness: BotHarness) -> None:
    for name in ("Switch(board", "Switch[board", "Switch*board", "\\"):
        activity = harness.teams.message("directory", conversation="channel")
        marker = f"<at>{name}</at>"
        activity["text"] = f"{marker} directory"
        for entity in activity["entities"]:
            if entity["type"] == "mention":
                entity["text"] = marker
                entity["mentioned"]["name"] = name
        response = await harness.client.post(activity)
        assert response.status == 200, response.text
        card = (await harness.connector.next_message()).adaptive_cards[0]
        assert card["body"][0]["text"] == "Directory", (name, card_text(card))
    # a channel message without text (a mention alone, an attachment) gets the home card
    bare = harness.teams.message("help", conversation="channel")
    del bare["text"]
    assert (await harness.client.post(bare)).status == 200
    card = (await harness.connector.next_message()).adaptive_cards[0]
    assert APOLOGY not in card_text(card)

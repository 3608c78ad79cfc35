"""The free-number flow over real HTTP: browse by last digits, assign, next free, release into
quarantine, refusals (bad digits, other enterprises, Basic users, stale cards), malformed data."""

from __future__ import annotations

import asyncio

import pytest

from cards.actions import Dataset, Verb
from services.domain import LicenceProduct, NumberStatus
from services.users import NewUser, UserChanges
from services.views import UserView
from tests.botkit import BotHarness, buttons, card_text, find_input, user_of_another_enterprise
from tests.conftest import PROVIDER, number_statuses, seed_enterprise

ON_SQLITE = pytest.mark.parametrize("database", ["sqlite"], indirect=True)
ON_POSTGRES = pytest.mark.parametrize(
    "database", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


async def _act(harness: BotHarness, verb: Verb, data: dict) -> dict:
    """Press a button that changes a user's number, and confirm when a confirmation comes:
    taking a number away from a user is always asked first."""
    card = await harness.act(verb, data)
    offered = buttons(card)
    for title in ("Replace the number", "Release the number"):
        if title in offered:
            assert "goes into quarantine" in card_text(card) or "free numbers" in card_text(card)
            return await harness.act(verb, offered[title])
    return card


async def _ada(harness: BotHarness) -> UserView:
    """An Essentials user: she gets the first free number, +44 20 7946 0000."""
    return await harness.services.users.create(
        PROVIDER, harness.ent, NewUser("Ada Lovelace", "ada@contoso.com", LicenceProduct.ESSENTIALS)
    )


async def _unlicensed_with_number(harness: BotHarness, number: str) -> UserView:
    """A user without a calling licence who holds a number: the one kind that can release it."""
    return await harness.services.users.create(
        PROVIDER, harness.ent, NewUser("Cy Twombly", "cy@contoso.com", number=number)
    )


async def _number_of(harness: BotHarness, user_id: int) -> str | None:
    return (await harness.services.users.get(harness.ent, user_id)).number


async def _quarantined(harness: BotHarness) -> list[str]:
    numbers = await number_statuses(harness.services.db, harness.ent)
    return sorted(e164 for e164, status in numbers.items() if status is NumberStatus.QUARANTINED)


async def _open_for(harness: BotHarness, user: UserView) -> dict:
    return await harness.act(Verb.NUMBERS_OPEN, {"user_id": user.id})


@ON_SQLITE
async def test_typed_command_lists_free_numbers_by_last_digits(harness: BotHarness) -> None:
    card = await harness.say("numbers 0042")
    text = card_text(card)
    assert "Free numbers" in text and "+44 20 7946 0042" in text
    assert "+44 20 7946 0041" not in text
    assert "1–1 of 1" in text
    assert find_input(card, "digits")["value"] == "0042"
    picker = find_input(card, "user_id")
    assert picker["choices.data"]["dataset"] == Dataset.USERS.value
    nothing = await harness.say("free numbers 7777")
    assert "No free number ends in 7777" in card_text(nothing)


@ON_SQLITE
async def test_free_list_pages_and_keeps_the_filter(harness: BotHarness) -> None:
    home = await harness.say("help")
    first = await harness.act(Verb.NUMBERS_OPEN, buttons(home)["Free numbers"])
    assert "1–10 of 100" in card_text(first)
    assert "+44 20 7946 0009" in card_text(first) and "+44 20 7946 0010" not in card_text(first)
    assert "◀ Previous" not in buttons(first)
    second = await harness.act(Verb.NUMBERS_OPEN, buttons(first)["Next ▶"])
    assert "11–20 of 100" in card_text(second) and "+44 20 7946 0010" in card_text(second)
    back = await harness.act(Verb.NUMBERS_OPEN, buttons(second)["◀ Previous"])
    assert "1–10 of 100" in card_text(back)
    # "ends in 5" spans two pages; the pager carries the digits along
    fives = await harness.act(Verb.NUMBERS_OPEN, {"digits": "5"})
    assert "1–10 of 10" in card_text(fives)
    beyond = await harness.act(Verb.NUMBERS_OPEN, {"digits": "5", "page": 9})
    assert "1–10 of 10" in card_text(beyond)  # an old "Next" lands on the last page there is


@ON_SQLITE
async def test_bad_digits_keep_the_input_and_still_list_numbers(harness: BotHarness) -> None:
    card = await harness.act(Verb.NUMBERS_OPEN, {"digits": "abc"})
    text = card_text(card)
    assert "Type one or more digits" in text
    assert find_input(card, "digits")["value"] == "abc"
    assert "1–10 of 100" in text  # the unfiltered list, so the card is still useful


@ON_SQLITE
async def test_open_for_a_user_shows_the_number_and_the_quarantine_note(
    harness: BotHarness,
) -> None:
    ada = await _ada(harness)
    card = await _open_for(harness, ada)
    text = card_text(card)
    assert "Number for Ada Lovelace" in text
    assert "+44 20 7946 0000" in text
    assert "quarantine for 30 days" in text
    assert {"Assign this number", "Next free number", "Caller ID", "Open user"} <= set(
        buttons(card)
    )
    # Essentials always has a number: replacing it is offered, releasing it is not
    assert "Release number" not in buttons(card)
    assert "always has a direct number" in text
    picker = find_input(card, "number")
    assert picker["choices.data"]["dataset"] == Dataset.FREE_NUMBERS.value
    assert picker["choices"][0]["value"] == "+442079460001"


@ON_SQLITE
async def test_choose_a_user_from_the_free_list(harness: BotHarness) -> None:
    ada = await _ada(harness)
    card = await harness.say("numbers 0042")
    choose = buttons(card)["Choose this user"]
    assert choose["digits"] == "0042"
    picked = await harness.act(Verb.NUMBERS_OPEN, {**choose, "user_id": str(ada.id)})
    assert "Number for Ada Lovelace" in card_text(picked)
    assert find_input(picked, "digits")["value"] == "0042"
    nobody = await harness.act(Verb.NUMBERS_OPEN, {**choose, "user_id": ""})
    assert "Free numbers" in card_text(nobody)
    assert "Pick the user to give a number to first" in card_text(nobody)
    # searching the list without a user is no refusal
    search = buttons(nobody)["Search"]
    assert "Pick the user" not in card_text(await harness.act(Verb.NUMBERS_OPEN, search))


@ON_SQLITE
async def test_next_free_number_replaces_and_quarantines_the_old_one(harness: BotHarness) -> None:
    ada = await _ada(harness)
    card = await _open_for(harness, ada)
    done = await _act(harness, Verb.NUMBER_AUTO, buttons(card)["Next free number"])
    text = card_text(done)
    assert "+44 20 7946 0001 is now Ada Lovelace's number" in text
    assert "+44 20 7946 0000, is in quarantine for 30 days" in text
    assert await _number_of(harness, ada.id) == "+442079460001"
    assert await _quarantined(harness) == ["+442079460000"]
    # the next press gives the next free number, never the quarantined one
    again = await _act(harness, Verb.NUMBER_AUTO, buttons(done)["Next free number"])
    assert "+44 20 7946 0002 is now" in card_text(again)
    assert await _quarantined(harness) == ["+442079460000", "+442079460001"]
    assert "0000" not in str(await harness.search("0000", Dataset.FREE_NUMBERS.value))


@ON_SQLITE
async def test_assign_the_picked_number_or_the_one_ending_in_the_digits(
    harness: BotHarness,
) -> None:
    ada = await _ada(harness)
    card = await _open_for(harness, ada)
    picked = await _act(
        harness,
        Verb.NUMBER_ASSIGN,
        {**buttons(card)["Assign this number"], "number": "+442079460042"},
    )
    assert "+44 20 7946 0042 is now Ada Lovelace's number" in card_text(picked)
    by_digits = await _act(
        harness, Verb.NUMBER_ASSIGN, {**buttons(picked)["Assign this number"], "digits": "0077"}
    )
    assert "+44 20 7946 0077 is now Ada Lovelace's number" in card_text(by_digits)
    assert "+44 20 7946 0042, is in quarantine" in card_text(by_digits)
    same = await _act(
        harness,
        Verb.NUMBER_ASSIGN,
        {**buttons(by_digits)["Assign this number"], "number": "+442079460077"},
    )
    assert "already is Ada Lovelace's number" in card_text(same)
    assert await _number_of(harness, ada.id) == "+442079460077"
    assert await _quarantined(harness) == ["+442079460000", "+442079460042"]


@ON_SQLITE
@pytest.mark.parametrize(
    ("typed", "field", "message"),
    [
        ({"digits": "7777"}, "digits", "No free number ends in 7777"),
        ({"digits": "4"}, "digits", "Several free numbers end in 4"),
        ({"digits": "abc"}, "digits", "Type one or more digits"),
        ({}, "number", "Nothing was assigned: pick a free number in “Number to assign”"),
        ({"number": "+442079460001"}, "number", "already assigned"),
        ({"number": "+442079470003"}, "number", "not in this enterprise's inventory"),
        ({"number": "12"}, "number", "not a valid number"),
        ({"digits": "470003"}, "digits", "No free number ends in 470003"),
    ],
)
async def test_refused_assignment_keeps_the_input(
    harness: BotHarness, typed: dict, field: str, message: str
) -> None:
    await seed_enterprise(
        harness.services, tenant_id="t-other", numbers=("+442079470000", "+442079470009")
    )
    ada = await _ada(harness)
    await harness.services.users.create(  # holds +44 20 7946 0001
        PROVIDER, harness.ent, NewUser("Bob", "bob@contoso.com", LicenceProduct.ESSENTIALS)
    )
    card = await _open_for(harness, ada)
    refused = await harness.act(
        Verb.NUMBER_ASSIGN, {**buttons(card)["Assign this number"], **typed}
    )
    text = card_text(refused)
    assert message in text and "Nothing was changed" in text
    if field in typed:
        assert find_input(refused, field)["value"] == typed[field]
    assert await _number_of(harness, ada.id) == "+442079460000"
    assert await _quarantined(harness) == []


@ON_SQLITE
async def test_release_puts_the_number_into_quarantine(harness: BotHarness) -> None:
    cy = await _unlicensed_with_number(harness, "+442079460005")
    card = await _open_for(harness, cy)
    assert "Release number" in buttons(card)
    assert "quarantine for 30 days" in card_text(card)
    released = await _act(harness, Verb.NUMBER_RELEASE, buttons(card)["Release number"])
    text = card_text(released)
    assert "+44 20 7946 0005 was released and is in quarantine for 30 days" in text
    assert "Release number" not in buttons(released)
    assert await _number_of(harness, cy.id) is None
    assert await _quarantined(harness) == ["+442079460005"]
    # not offered as free anywhere: the list, the type-ahead, the next free number
    listed = await harness.say("numbers 0005")
    assert "No free number ends in 0005" in card_text(listed)
    assert await harness.search("0005", Dataset.FREE_NUMBERS.value) == []
    refused = await _act(
        harness,
        Verb.NUMBER_ASSIGN,
        {**buttons(released)["Assign this number"], "number": "+442079460005"},
    )
    assert "quarantined and cannot be assigned now" in card_text(refused)
    now = await harness.services.users.get(harness.ent, cy.id)
    again = await _act(harness, Verb.NUMBER_RELEASE, {"user_id": cy.id, "version": now.version})
    assert "had no direct number; nothing was released" in card_text(again)


@ON_SQLITE
async def test_an_essentials_number_cannot_be_released_alone(harness: BotHarness) -> None:
    ada = await _ada(harness)
    refused = await _act(harness, Verb.NUMBER_RELEASE, {"user_id": ada.id, "version": ada.version})
    assert "An Essentials user needs a direct number" in card_text(refused)
    assert await _number_of(harness, ada.id) == "+442079460000"
    assert await _quarantined(harness) == []


@ON_SQLITE
async def test_basic_user_is_refused_a_number(harness: BotHarness) -> None:
    bo = await harness.services.users.create(
        PROVIDER, harness.ent, NewUser("Bo Basic", "bo@contoso.com", LicenceProduct.BASIC)
    )
    card = await _open_for(harness, bo)
    assert "Basic" in card_text(card) and "no direct number" in card_text(card)
    assert "Next free number" not in buttons(card) and "Assign this number" not in buttons(card)
    ids = {"user_id": bo.id, "version": bo.version}
    auto = await _act(harness, Verb.NUMBER_AUTO, ids)
    assert "Basic licences have no direct number" in card_text(auto)
    picked = await _act(harness, Verb.NUMBER_ASSIGN, {**ids, "number": "+442079460042"})
    assert "Basic licences have no direct number" in card_text(picked)
    assert await _number_of(harness, bo.id) is None


@ON_SQLITE
async def test_stale_card_gets_the_conflict_and_the_reloaded_user(harness: BotHarness) -> None:
    ada = await _ada(harness)
    card = await _open_for(harness, ada)
    # another admin edits Ada after this card was shown
    newer = await harness.services.users.update(
        PROVIDER, harness.ent, ada.id, ada.version, UserChanges(display_name="Ada King")
    )
    stale = await _act(
        harness,
        Verb.NUMBER_ASSIGN,
        {**buttons(card)["Assign this number"], "number": "+442079460042", "digits": "42"},
    )
    text = card_text(stale)
    assert "Someone else saved changes to this user" in text
    assert "Number for Ada King" in text  # reloaded
    assert find_input(stale, "number")["value"] == "+442079460042"  # the pick is kept
    assert find_input(stale, "digits")["value"] == "42"
    assert buttons(stale)["Assign this number"]["version"] == newer.version
    assert await _number_of(harness, ada.id) == "+442079460000"
    auto_stale = await _act(harness, Verb.NUMBER_AUTO, buttons(card)["Next free number"])
    assert "Someone else saved changes" in card_text(auto_stale)
    retried = await _act(
        harness,
        Verb.NUMBER_ASSIGN,
        buttons(stale)["Assign this number"] | {"number": "+442079460042"},
    )
    assert "+44 20 7946 0042 is now Ada King's number" in card_text(retried)


@ON_SQLITE
async def test_another_enterprises_user_and_numbers_are_out_of_reach(harness: BotHarness) -> None:
    other, vic = await user_of_another_enterprise(harness)
    opened = await harness.act(Verb.NUMBERS_OPEN, {"ent": other, "user_id": vic.id})
    assert "Vic" not in card_text(opened)
    assert "does not exist in this enterprise" in card_text(opened)
    assert "+44 20 7947" not in card_text(opened)  # the list is this enterprise's
    auto = await harness.act(
        Verb.NUMBER_AUTO, {"ent": other, "user_id": vic.id, "version": vic.version}
    )
    assert "does not exist in this enterprise" in card_text(auto)
    assert (await harness.services.users.get(other, vic.id)).number == "+442079470000"


@ON_SQLITE
async def test_duplicate_delivery_assigns_one_number(harness: BotHarness) -> None:
    ada = await _ada(harness)
    activity = harness.teams.card_action(
        Verb.NUMBER_AUTO.value,
        {
            "verb": Verb.NUMBER_AUTO.value,
            "user_id": ada.id,
            "version": ada.version,
            "confirmed": True,
        },
    )
    first, second = await asyncio.gather(
        harness.client.post(activity), harness.client.post(activity)
    )
    assert first.json()["value"] == second.json()["value"]
    assert await _number_of(harness, ada.id) == "+442079460001"
    assert await _quarantined(harness) == ["+442079460000"]


@ON_SQLITE
@pytest.mark.parametrize(
    ("verb", "data"),
    [
        (Verb.NUMBER_AUTO, {}),
        (Verb.NUMBER_AUTO, {"user_id": 1}),
        (Verb.NUMBER_ASSIGN, {"user_id": "x", "version": 1}),
        (Verb.NUMBER_RELEASE, {"user_id": 1, "version": -1}),
        (Verb.NUMBER_RELEASE, {"user_id": [1], "version": 1}),
        (Verb.NUMBERS_OPEN, {"user_id": "abc"}),
        (Verb.NUMBERS_OPEN, {"user_id": 0}),
        (Verb.NUMBERS_OPEN, {"page": "two"}),
    ],
)
async def test_malformed_payloads_get_a_clear_card(
    harness: BotHarness, verb: Verb, data: dict
) -> None:
    card = await harness.act(verb, data)
    assert "incomplete" in card_text(card)


@ON_POSTGRES
async def test_numbers_flow_on_postgres(harness: BotHarness) -> None:
    ada = await _ada(harness)
    cy = await _unlicensed_with_number(harness, "+442079460050")
    listed = await harness.say("numbers 0042")
    assert "+44 20 7946 0042" in card_text(listed)
    card = await harness.act(
        Verb.NUMBERS_OPEN, {**buttons(listed)["Choose this user"], "user_id": str(ada.id)}
    )
    auto = await _act(harness, Verb.NUMBER_AUTO, buttons(card)["Next free number"])
    assert "+44 20 7946 0001 is now Ada Lovelace's number" in card_text(auto)
    several = await _act(
        harness, Verb.NUMBER_ASSIGN, {**buttons(auto)["Assign this number"], "digits": "4"}
    )
    assert "Several free numbers end in 4" in card_text(several)
    assigned = await _act(
        harness, Verb.NUMBER_ASSIGN, {**buttons(several)["Assign this number"], "digits": "0042"}
    )
    assert "+44 20 7946 0042 is now Ada Lovelace's number" in card_text(assigned)
    released = await _act(
        harness, Verb.NUMBER_RELEASE, buttons(await _open_for(harness, cy))["Release number"]
    )
    assert "was released and is in quarantine for 30 days" in card_text(released)
    assert await _quarantined(harness) == ["+442079460000", "+442079460001", "+442079460050"]
    assert await harness.search("0050", Dataset.FREE_NUMBERS.value) == []
    stale = await _act(harness, Verb.NUMBER_AUTO, buttons(auto)["Next free number"])
    assert "Someone else saved changes" in card_text(stale)

"""The caller ID flow over real HTTP: the current setting first, the company-main warning, each
mode, caller name and PAI, refusals next to their field, stale cards, other enterprises."""

from __future__ import annotations

import pytest

from cards.actions import Verb
from services.callerid import CallerIdChange
from services.domain import CallerIdMode, LicenceProduct
from services.users import NewUser, UserChanges
from services.views import UserView
from tests.botkit import BotHarness, buttons, card_text, find_input, user_of_another_enterprise
from tests.conftest import PROVIDER, seed_enterprise

ON_SQLITE = pytest.mark.parametrize("database", ["sqlite"], indirect=True)
ON_POSTGRES = pytest.mark.parametrize(
    "database", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
MAIN_WARNING = "still presents the company's main number"


async def _ada(harness: BotHarness) -> UserView:
    """An Essentials user with +44 20 7946 0000, presenting it."""
    return await harness.services.users.create(
        PROVIDER, harness.ent, NewUser("Ada Lovelace", "ada@contoso.com", LicenceProduct.ESSENTIALS)
    )


async def _on_company_main(harness: BotHarness) -> UserView:
    """Ada, still presenting the company's main number: the case the card must flag."""
    ada = await _ada(harness)
    return await harness.services.users.set_caller_id(
        PROVIDER, harness.ent, ada.id, ada.version, CallerIdChange(CallerIdMode.COMPANY_MAIN)
    )


async def _caller_id(harness: BotHarness, user_id: int) -> UserView:
    return await harness.services.users.get(harness.ent, user_id)


def _save(card: dict, **inputs: object) -> dict:
    """What pressing Save sends: the button's data with the card's inputs merged over it."""
    return {**buttons(card)["Save caller ID"], **inputs}


@ON_SQLITE
async def test_reach_caller_id_from_find_user(harness: BotHarness) -> None:
    ada = await _ada(harness)
    # the one match opens her caller ID at once, not her user card
    card = await harness.say("caller id ada")
    assert buttons(card)["Save caller ID"]["user_id"] == ada.id
    text = card_text(card)
    assert "Caller ID: Ada Lovelace" in text
    # the current setting comes first, before the form
    assert text.index("+44 20 7946 0000 (own direct number)") < text.index("Number to present")
    assert "Ada Lovelace (display name)" in text and "not sent" in text
    assert MAIN_WARNING not in text
    assert find_input(card, "mode")["value"] == "own_ddi"
    assert find_input(card, "send_pai")["value"] == "false"
    assert {"Save caller ID", "Numbers", "Open user"} <= set(buttons(card))
    help_text = text[text.index("**Caller ID** is what") :]
    assert "P-Asserted-Identity" in help_text and "main number" in help_text


@ON_SQLITE
async def test_company_main_warning_until_the_own_number_is_presented(
    harness: BotHarness,
) -> None:
    ada = await _on_company_main(harness)
    card = await harness.act(Verb.CALLER_ID_OPEN, {"user_id": ada.id})
    text = card_text(card)
    assert MAIN_WARNING in text and "+44 20 7946 1000" in text
    assert "Own direct number (+44 20 7946 0000)" in text
    saved = await harness.act(Verb.CALLER_ID_SUBMIT, _save(card, mode="own_ddi"))
    assert "Caller ID saved" in card_text(saved)
    assert MAIN_WARNING not in card_text(saved)
    assert "+44 20 7946 0000 (own direct number)" in card_text(saved)
    assert (await _caller_id(harness, ada.id)).caller_id.mode is CallerIdMode.OWN_DDI


@ON_SQLITE
async def test_user_without_a_number_is_warned_to_get_one_first(harness: BotHarness) -> None:
    bo = await harness.services.users.create(
        PROVIDER, harness.ent, NewUser("Bo Basic", "bo@contoso.com", LicenceProduct.BASIC)
    )
    card = await harness.act(Verb.CALLER_ID_OPEN, {"user_id": bo.id})
    assert MAIN_WARNING in card_text(card) and "give them a direct number first" in card_text(card)
    assert "Own direct number (none assigned yet)" in card_text(card)
    refused = await harness.act(
        Verb.CALLER_ID_SUBMIT, _save(card, mode="own_ddi", caller_name="Bo at Contoso")
    )
    text = card_text(refused)
    assert "has no direct number of their own yet" in text and "Nothing was saved" in text
    assert find_input(refused, "mode")["value"] == "own_ddi"
    assert find_input(refused, "caller_name")["value"] == "Bo at Contoso"
    assert (await _caller_id(harness, bo.id)).caller_id.mode is CallerIdMode.COMPANY_MAIN


@ON_SQLITE
async def test_another_number_by_last_digits_with_name_and_pai(harness: BotHarness) -> None:
    ada = await _ada(harness)
    card = await harness.act(Verb.CALLER_ID_OPEN, {"user_id": ada.id})
    saved = await harness.act(
        Verb.CALLER_ID_SUBMIT,
        _save(
            card,
            mode="other",
            number_digits="0042",
            caller_name="Contoso Sales",
            send_pai="true",
            pai_digits="",
        ),
    )
    text = card_text(saved)
    assert "Caller ID saved" in text
    assert "+44 20 7946 0042 (another company number)" in text
    assert "Contoso Sales" in text and "sent: +44 20 7946 0042" in text
    view = (await _caller_id(harness, ada.id)).caller_id
    assert view.presented_number == "+442079460042" and view.send_pai
    assert view.caller_name == "Contoso Sales"
    # reopened, the form shows the setting as it is
    again = await harness.act(Verb.CALLER_ID_OPEN, {"user_id": ada.id})
    assert find_input(again, "mode")["value"] == "other"
    assert find_input(again, "number_digits")["value"] == "+44 20 7946 0042"
    assert find_input(again, "send_pai")["value"] == "true"
    assert "value" not in find_input(again, "pai_digits")  # PAI follows the presented number


@ON_SQLITE
async def test_anonymous_with_pai_asserting_the_own_number(harness: BotHarness) -> None:
    ada = await _ada(harness)
    card = await harness.act(Verb.CALLER_ID_OPEN, {"user_id": ada.id})
    saved = await harness.act(
        Verb.CALLER_ID_SUBMIT,
        _save(card, mode="anonymous", send_pai="true", pai_digits="0007"),
    )
    text = card_text(saved)
    assert "withheld (anonymous)" in text and "sent: +44 20 7946 0007" in text
    assert find_input(saved, "pai_digits")["value"] == "+44 20 7946 0007"
    view = (await _caller_id(harness, ada.id)).caller_id
    assert view.mode is CallerIdMode.ANONYMOUS and view.presented_number is None
    assert view.pai_number == "+442079460007"
    # presenting the main number by its digits is allowed, and flagged
    main = await harness.act(
        Verb.CALLER_ID_SUBMIT, _save(saved, mode="other", number_digits="1000", send_pai="false")
    )
    assert MAIN_WARNING in card_text(main) and "not sent" in card_text(main)


@ON_SQLITE
@pytest.mark.parametrize(
    ("typed", "field", "message"),
    [
        ({"mode": "other", "number_digits": "7777"}, "number_digits", "No number of this"),
        ({"mode": "other", "number_digits": "4"}, "number_digits", "Several numbers end in 4"),
        ({"mode": "other", "number_digits": ""}, "number_digits", "Type one or more digits"),
        ({"mode": "other", "number_digits": "470003"}, "number_digits", "No number of this"),
        (
            {"mode": "own_ddi", "send_pai": "true", "pai_digits": "7777"},
            "pai_digits",
            "No number of this enterprise ends in 7777",
        ),
        ({"mode": "own_ddi", "caller_name": 'Evil" <sip:x>'}, "caller_name", "cannot contain"),
        ({"mode": "own_ddi", "caller_name": "x" * 60}, "caller_name", "at most 50"),
        ({"mode": "bogus"}, "mode", "Choose which number to present"),
        ({"mode": ""}, "mode", "Choose which number to present"),
    ],
)
async def test_refusals_come_back_next_to_the_field(
    harness: BotHarness, typed: dict, field: str, message: str
) -> None:
    await seed_enterprise(
        harness.services, tenant_id="t-other", numbers=("+442079470000", "+442079470009")
    )
    ada = await _ada(harness)
    card = await harness.act(Verb.CALLER_ID_OPEN, {"user_id": ada.id})
    refused = await harness.act(
        Verb.CALLER_ID_SUBMIT, _save(card, **{"caller_name": "Ada at Contoso", **typed})
    )
    text = card_text(refused)
    assert message in text and "Nothing was saved" in text
    if typed.get(field) and field != "mode":
        assert find_input(refused, field)["value"] == typed[field]
    # the message sits right under its input
    body = str(refused)
    assert body.index(f"'id': '{field}'") < body.index(message)
    assert "Caller ID saved" not in text
    after = await _caller_id(harness, ada.id)
    assert after.version == ada.version and after.caller_id.caller_name is None


@ON_SQLITE
async def test_stale_card_is_refused_and_reloaded_keeping_the_input(harness: BotHarness) -> None:
    ada = await _ada(harness)
    card = await harness.act(Verb.CALLER_ID_OPEN, {"user_id": ada.id})
    newer = await harness.services.users.set_caller_id(
        PROVIDER,
        harness.ent,
        ada.id,
        ada.version,
        CallerIdChange(CallerIdMode.COMPANY_MAIN, caller_name="Reception"),
    )
    stale = await harness.act(
        Verb.CALLER_ID_SUBMIT, _save(card, mode="anonymous", caller_name="Mine")
    )
    text = card_text(stale)
    assert "Someone else saved changes to this user" in text
    assert "Reception" in text and MAIN_WARNING in text  # their setting, reloaded
    assert find_input(stale, "mode")["value"] == "anonymous"  # this admin's choice, kept
    assert find_input(stale, "caller_name")["value"] == "Mine"
    assert buttons(stale)["Save caller ID"]["version"] == newer.version
    assert (await _caller_id(harness, ada.id)).caller_id.caller_name == "Reception"
    retried = await harness.act(
        Verb.CALLER_ID_SUBMIT, _save(stale, mode="anonymous", caller_name="Mine")
    )
    assert "Caller ID saved" in card_text(retried)
    # a number change also moves the version: a card from before it is stale too
    await harness.services.users.update(
        PROVIDER, harness.ent, ada.id, newer.version + 1, UserChanges(number="+442079460042")
    )
    late = await harness.act(Verb.CALLER_ID_SUBMIT, _save(retried, mode="own_ddi"))
    assert "Someone else saved changes" in card_text(late)


@ON_SQLITE
async def test_another_enterprises_user_is_out_of_reach(harness: BotHarness) -> None:
    other, vic = await user_of_another_enterprise(harness)
    opened = await harness.act(Verb.CALLER_ID_OPEN, {"ent": other, "user_id": vic.id})
    assert "does not exist in this enterprise" in card_text(opened)
    assert "Vic" not in card_text(opened)
    submitted = await harness.act(
        Verb.CALLER_ID_SUBMIT,
        {"ent": other, "user_id": vic.id, "version": vic.version, "mode": "anonymous"},
    )
    assert "does not exist in this enterprise" in card_text(submitted)
    still = await harness.services.users.get(other, vic.id)
    assert still.caller_id.mode is CallerIdMode.OWN_DDI


@ON_SQLITE
@pytest.mark.parametrize(
    ("verb", "data"),
    [
        (Verb.CALLER_ID_OPEN, {}),
        (Verb.CALLER_ID_OPEN, {"user_id": "ada"}),
        (Verb.CALLER_ID_SUBMIT, {"user_id": 1}),
        (Verb.CALLER_ID_SUBMIT, {"user_id": 1, "version": 0, "mode": "own_ddi"}),
        (Verb.CALLER_ID_SUBMIT, {"user_id": 1, "version": 1, "send_pai": "maybe"}),
        (Verb.CALLER_ID_SUBMIT, {"user_id": 1, "version": 1, "caller_name": ["x"]}),
    ],
)
async def test_malformed_payloads_get_a_clear_card(
    harness: BotHarness, verb: Verb, data: dict
) -> None:
    card = await harness.act(verb, data)
    assert "incomplete" in card_text(card)


@ON_POSTGRES
async def test_caller_id_flow_on_postgres(harness: BotHarness) -> None:
    ada = await _on_company_main(harness)
    card = await harness.act(Verb.CALLER_ID_OPEN, {"user_id": ada.id})
    assert MAIN_WARNING in card_text(card)
    several = await harness.act(Verb.CALLER_ID_SUBMIT, _save(card, mode="other", number_digits="4"))
    assert "Several numbers end in 4" in card_text(several)
    assert find_input(several, "number_digits")["value"] == "4"
    saved = await harness.act(
        Verb.CALLER_ID_SUBMIT,
        _save(several, mode="other", number_digits="0042", send_pai="true", pai_digits="0000"),
    )
    text = card_text(saved)
    assert "Caller ID saved" in text and MAIN_WARNING not in text
    assert "+44 20 7946 0042 (another company number)" in text
    assert "sent: +44 20 7946 0000" in text
    stale = await harness.act(Verb.CALLER_ID_SUBMIT, _save(card, mode="anonymous"))
    assert "Someone else saved changes" in card_text(stale)
    own = await harness.act(Verb.CALLER_ID_SUBMIT, _save(stale, mode="own_ddi"))
    assert "+44 20 7946 0000 (own direct number)" in card_text(own)

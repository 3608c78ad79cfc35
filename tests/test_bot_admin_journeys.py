"""A new admin's journeys over real HTTP: what they try first works the first time, and every
answer says what happened or what to do next."""

from __future__ import annotations

import json

import pytest

from cards.actions import Verb
from services.domain import LicenceProduct
from services.users import NewUser, UserChanges
from services.views import UserView
from tests.botkit import BotHarness, buttons, card_text, find_input, global_admin
from tests.conftest import PROVIDER

pytestmark = pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


async def _user(
    harness: BotHarness,
    name: str,
    email: str,
    licence: LicenceProduct | None = LicenceProduct.ESSENTIALS,
    number: str | None = None,
) -> UserView:
    return await harness.services.users.create(
        PROVIDER,
        harness.ent,
        NewUser(display_name=name, email=email, licence=licence, number=number),
    )


async def test_find_with_one_match_opens_the_user(harness: BotHarness) -> None:
    priya = await _user(harness, "Priya Patel", "priya@contoso.com")
    await _user(harness, "Pat Jones", "pat@contoso.com")
    card = await harness.say("find priya")
    assert card["body"][0]["text"] == "Priya Patel"
    assert "Save" in buttons(card)
    assert buttons(card)["Save"]["user_id"] == priya.id


async def test_find_results_are_buttons_that_open_the_user(harness: BotHarness) -> None:
    await _user(harness, "Pat Jones", "pat@contoso.com")
    patricia = await _user(harness, "Patricia Moss", "patricia@contoso.com")
    card = await harness.say("find pat")
    found = buttons(card)
    assert "Open user" not in found  # no second picker to fill in
    opened = await harness.act(Verb.USER_OPEN, found["Open Patricia Moss"])
    assert opened["body"][0]["text"] == "Patricia Moss"
    assert buttons(opened)["Save"]["user_id"] == patricia.id
    nobody = await harness.say("find zebra")
    assert "No user matches “zebra”" in card_text(nobody)


def _caller_id_save(card: dict, **inputs: object) -> dict:
    return {**buttons(card)["Save caller ID"], **inputs}


async def test_caller_id_digits_without_ticking_another_number_present_that_number(
    harness: BotHarness,
) -> None:
    ada = await _user(harness, "Ada Lovelace", "ada@contoso.com", number="+442079460000")
    card = await harness.act(Verb.CALLER_ID_OPEN, {"user_id": ada.id})
    # the choice left as it was (own number), the digits typed: the typed number is meant
    saved = await harness.act(
        Verb.CALLER_ID_SUBMIT, _caller_id_save(card, mode="own_ddi", number_digits="0042")
    )
    text = card_text(saved)
    assert "Caller ID saved: calls now present +44 20 7946 0042 (another company number)" in text
    user = await harness.services.users.get(harness.ent, ada.id)
    assert user.caller_id.presented_number == "+442079460042"


async def test_caller_id_digits_next_to_another_deliberate_choice_say_what_to_do(
    harness: BotHarness,
) -> None:
    ada = await _user(harness, "Ada Lovelace", "ada@contoso.com", number="+442079460000")
    card = await harness.act(Verb.CALLER_ID_OPEN, {"user_id": ada.id})
    refused = await harness.act(
        Verb.CALLER_ID_SUBMIT, _caller_id_save(card, mode="anonymous", number_digits="0042")
    )
    text = card_text(refused)
    assert "Caller ID saved" not in text
    assert "You typed last digits but chose “Anonymous”" in text
    assert "tick “Another company number”" in text
    user = await harness.services.users.get(harness.ent, ada.id)
    assert user.caller_id.presented_number == "+442079460000"


async def test_basic_with_next_free_number_says_why_there_is_no_number(
    harness: BotHarness,
) -> None:
    form = await harness.say("create user")
    created = await harness.act(
        Verb.USER_CREATE_SUBMIT,
        {
            **buttons(form)["Create user"],
            "display_name": "Bob Basic",
            "email": "bob@contoso.com",
            "licence": "basic",
            "number_mode": "auto",
            "extension_mode": "auto",
        },
    )
    text = card_text(created)
    assert "Bob Basic was created" in text
    assert "Basic gives an extension only, so no direct number was assigned" in text


async def test_help_lists_the_commands_on_the_card_itself(harness: BotHarness) -> None:
    card = await harness.say("help")
    visible = [block for block in card["body"] if block.get("id") != "help"]
    text = card_text({"body": visible})
    for command in ("create user", "find priya", "directory", "numbers 1111", "unlicensed", "sync"):
        assert f"**{command}**" in text


async def test_statuses_read_true_and_say_what_they_are(harness: BotHarness) -> None:
    nolicence = await _user(harness, "Nora None", "nora@contoso.com", licence=None)
    async with harness.services.db.unit_of_work() as uow:
        from sqlalchemy import update

        from services.domain import ProvisioningStatus
        from services.models import User

        await uow.session.execute(
            update(User)
            .where(User.id == nolicence.id)
            .values(provisioning_status=ProvisioningStatus.PROVISIONED)
        )
        await uow.commit()
    card = await harness.act(Verb.USER_OPEN, {"user_id": nolicence.id})
    text = card_text(card)
    assert "Provisioned" not in text and "No calling licence" in text
    assert "Teams sync" in text and "PBX line" in text
    assert "**Teams sync** says whether Microsoft has" in text  # explained in the help
    saved = await harness.act(
        Verb.USER_EDIT_SUBMIT,
        {
            **buttons(card)["Save"],
            "display_name": "Nora Later",
            "email": "nora@contoso.com",
            "licence": "none",
        },
    )
    assert "Microsoft gets it with the next Sync Teams Users" in card_text(saved)


async def test_replacing_a_number_is_confirmed_first_saying_until_when(
    harness: BotHarness,
) -> None:
    priya = await _user(harness, "Priya Patel", "priya@contoso.com", number="+442079460000")
    card = await harness.say("numbers 0042")
    picked = await harness.act(
        Verb.NUMBERS_OPEN, {**buttons(card)["Choose this user"], "user_id": str(priya.id)}
    )
    # the digits typed to search, nothing picked: not a silent replacement but a question
    asked = await harness.act(
        Verb.NUMBER_ASSIGN,
        {**buttons(picked)["Assign this number"], "digits": "0042", "number": ""},
    )
    text = card_text(asked)
    assert "Replace Priya Patel's number?" in text
    assert "Give Priya Patel +44 20 7946 0042 instead of +44 20 7946 0000." in text
    assert "+44 20 7946 0000 goes into quarantine until" in text
    user = await harness.services.users.get(harness.ent, priya.id)
    assert user.number == "+442079460000"  # nothing changed yet
    kept = await harness.act(Verb.NUMBERS_OPEN, buttons(asked)["Keep the number"])
    assert "Number for Priya Patel" in card_text(kept)
    done = await harness.act(Verb.NUMBER_ASSIGN, buttons(asked)["Replace the number"])
    assert "+44 20 7946 0042 is now Priya Patel's number" in card_text(done)
    user = await harness.services.users.get(harness.ent, priya.id)
    assert user.number == "+442079460042"


async def test_an_edit_that_takes_the_number_away_is_confirmed_first(harness: BotHarness) -> None:
    cy = await _user(harness, "Cy Young", "cy@contoso.com", number="+442079460000")
    card = await harness.act(Verb.USER_OPEN, {"user_id": cy.id})
    edit = {
        **buttons(card)["Save"],
        "display_name": "Cy Young",
        "email": "cy@contoso.com",
        "licence": "none",
        "number_mode": "none",
        "extension_mode": "keep",
    }
    asked = await harness.act(Verb.USER_EDIT_SUBMIT, edit)
    text = card_text(asked)
    assert "Save the changes to Cy Young?" in text
    assert "Change Cy Young's licence from Essentials to no licence" in text
    assert "the Essentials licence goes back to the pool" in text
    assert "Take +44 20 7946 0000 away from Cy Young." in text
    assert "+44 20 7946 0000 goes into quarantine until" in text
    assert (await harness.services.users.get(harness.ent, cy.id)).licence is not None
    saved = await harness.act(Verb.USER_EDIT_SUBMIT, buttons(asked)["Save the changes"])
    assert "Saved." in card_text(saved)
    after = await harness.services.users.get(harness.ent, cy.id)
    assert after.licence is None and after.number is None
    # a rename takes nothing away: saved at once
    renamed = await harness.act(
        Verb.USER_EDIT_SUBMIT,
        {**buttons(saved)["Save"], **edit, "display_name": "Cy Old", "version": after.version},
    )
    assert "Saved." in card_text(renamed)


async def test_enabling_several_users_is_confirmed_with_what_it_takes(harness: BotHarness) -> None:
    ada = await _user(harness, "Ada King", "ada@contoso.com", licence=None)
    bob = await _user(harness, "Bob Stone", "bob@contoso.com", licence=None)
    card = await harness.say("unlicensed")
    asked = await harness.act(
        Verb.UNLICENSED_ENABLE,
        {**buttons(card)["Enable selected"], "users": f"{ada.id},{bob.id}", "licence": "basic"},
    )
    text = card_text(asked)
    assert "Enable 2 users with Basic?" in text
    assert "Enable 2 users: Ada King, Bob Stone." in text
    assert "Take 2 Basic licences from the pool: 50 of 50 are free now, 48 will be after." in text
    assert (await harness.services.users.get(harness.ent, ada.id)).licence is None
    back = await harness.act(Verb.UNLICENSED_OPEN, buttons(asked)["Back to the list"])
    assert "Users without a calling licence" in card_text(back)
    done = await harness.act(Verb.UNLICENSED_ENABLE, buttons(asked)["Enable 2 users"])
    assert "2 users enabled with Basic" in card_text(done)


async def test_no_free_number_says_when_the_number_exists_but_is_taken(
    harness: BotHarness,
) -> None:
    await _user(harness, "Priya Patel", "priya@contoso.com", number="+442079460042")
    card = await harness.say("create user")
    refused = await harness.act(
        Verb.USER_CREATE_SUBMIT,
        {
            **buttons(card)["Create user"],
            "display_name": "Ada Lovelace",
            "email": "ada@contoso.com",
            "licence": "essentials",
            "number_mode": "pick",
            "number_digits": "0042",
            "extension_mode": "auto",
        },
    )
    assert "No free number ends in 0042: +44 20 7946 0042 is Priya Patel's number." in card_text(
        refused
    )
    taken = await harness.act(
        Verb.USER_CREATE_SUBMIT,
        {
            **buttons(card)["Create user"],
            "display_name": "Ada Lovelace",
            "email": "ada@contoso.com",
            "licence": "essentials",
            "number_mode": "pick",
            "number": "+442079460042",
            "extension_mode": "auto",
        },
    )
    # numbers in refusals read as on the cards
    assert "+44 20 7946 0042 is already assigned" in card_text(taken)


async def _rows(harness: BotHarness, model: type) -> list:
    from sqlalchemy import select

    async with harness.services.db.unit_of_work(readonly=True) as uow:
        rows = list((await uow.session.execute(select(model))).scalars())
        uow.session.expunge_all()
        return rows


async def test_remove_a_user_from_the_user_card_after_confirming(harness: BotHarness) -> None:
    from services.domain import NumberStatus
    from services.models import AuditEntry, OutboxItem, PhoneNumber

    priya = await _user(harness, "Priya Patel", "priya@contoso.com", number="+442079460011")
    card = await harness.say("find priya")
    asked = await harness.act(Verb.USER_REMOVE, buttons(card)["Remove user"])
    text = card_text(asked)
    assert "Remove Priya Patel?" in text
    assert "Remove Priya Patel (priya@contoso.com) from Switchboard and from the PBX" in text
    assert "Return their Essentials licence to the pool (49 of 50 free now)." in text
    assert "+44 20 7946 0011 goes into quarantine until" in text
    assert f"Free extension {priya.extension} for someone else at once." in text
    assert "Tell Microsoft with the next Sync Teams Users" in text
    assert '"title": "Remove the user", "style": "destructive"' in json.dumps(asked)
    # nothing happened yet, and "Keep the user" goes back to them
    assert (await harness.services.users.get(harness.ent, priya.id)).number
    kept = await harness.act(Verb.USER_OPEN, buttons(asked)["Keep the user"])
    assert kept["body"][0]["text"] == "Priya Patel"

    removed = await harness.act(Verb.USER_REMOVE, buttons(asked)["Remove the user"])
    text = card_text(removed)
    assert "Priya Patel was removed" in text
    assert "Their Essentials licence is back in the pool." in text
    assert "Microsoft is told with the next Sync Teams Users" in text
    assert "Priya" not in card_text(await harness.say("directory"))
    pools = {p.product: p for p in await harness.services.licences.pools(harness.ent)}
    assert pools[LicenceProduct.ESSENTIALS].free == 50
    [number] = [n for n in await _rows(harness, PhoneNumber) if n.e164 == "+442079460011"]
    assert number.status is NumberStatus.QUARANTINED and number.user_id is None
    removals = [row for row in await _rows(harness, OutboxItem) if row.kind == "user.remove"]
    # one removal for the PBX, one for Microsoft (through the sync)
    assert sorted(row.channel == "pbx" for row in removals) == [False, True]
    [audit] = [a for a in await _rows(harness, AuditEntry) if a.action == "user.remove"]
    assert audit.target == "priya@contoso.com"
    # the old confirmation pressed again: the user is gone, and the card says so
    again = await harness.act(Verb.USER_REMOVE, buttons(asked)["Remove the user"])
    assert "Sorry" not in card_text(again)


async def test_remove_on_a_stale_card_is_refused_with_the_new_state(harness: BotHarness) -> None:
    cy = await _user(harness, "Cy Young", "cy@contoso.com")
    card = await harness.act(Verb.USER_OPEN, {"user_id": cy.id})
    asked = await harness.act(Verb.USER_REMOVE, buttons(card)["Remove user"])
    await harness.services.users.update(
        PROVIDER, harness.ent, cy.id, cy.version, UserChanges(display_name="Cy Changed")
    )
    refused = await harness.act(Verb.USER_REMOVE, buttons(asked)["Remove the user"])
    assert "Someone else saved" in card_text(refused)
    assert (await harness.services.users.get(harness.ent, cy.id)).display_name == "Cy Changed"


async def test_global_admin_allows_and_withdraws_management_by_the_provider(
    harness: BotHarness,
) -> None:
    from services.models import AuditEntry

    gina = await global_admin(harness)
    card = await harness.say("sync", teams=gina)
    text = card_text(card)
    assert "Management by the service provider: not allowed." in text
    assert "changes sync to Microsoft automatically once the first sync is done" in text
    assert "Ask your Global Admin" not in text
    allowed = await harness.act(
        Verb.SYNC_CONSENT, buttons(card)["Allow management by service provider"], teams=gina
    )
    text = card_text(allowed)
    assert "Management by the service provider allowed: once the first sync is done" in text
    assert "Management by the service provider: allowed." in text
    assert (await harness.services.enterprises.get(harness.ent)).sp_management_consent
    withdrawn = await harness.act(
        Verb.SYNC_CONSENT, buttons(allowed)["Withdraw consent"], teams=gina
    )
    assert "Consent withdrawn" in card_text(withdrawn)
    assert not (await harness.services.enterprises.get(harness.ent)).sp_management_consent
    audits = [a for a in await _rows(harness, AuditEntry) if a.action == "enterprise.consent"]
    assert [a.after for a in audits] == [
        {"sp_management_consent": True},
        {"sp_management_consent": False},
    ]


async def test_only_the_global_admin_may_give_consent(harness: BotHarness) -> None:
    card = await harness.say("sync")
    assert "Allow management by service provider" not in buttons(card)
    refused = await harness.act(Verb.SYNC_CONSENT, {"consent": True})
    assert "Only the enterprise's Global Admin can allow" in card_text(refused)
    assert not (await harness.services.enterprises.get(harness.ent)).sp_management_consent


async def test_every_wrong_field_is_marked_at_once(harness: BotHarness) -> None:
    form = await harness.say("create user")
    refused = await harness.act(
        Verb.USER_CREATE_SUBMIT,
        {
            **buttons(form)["Create user"],
            "display_name": "",
            "email": "not-an-address",
            "licence": "essentials",
            "number_mode": "pick",
            "number_digits": "abc",
            "extension_mode": "pick",
            "extension": "99999",
        },
    )
    text = card_text(refused)
    assert "Nothing was saved: fix the 4 fields marked ⚠." in text
    for message in (
        "Enter the user's display name.",
        "is not an e-mail address",
        "Type one or more digits",
        "99999",
    ):
        assert message in text
    # each message sits right under its own input
    body = refused["body"]
    ids = [block.get("id") for block in body]
    assert body[ids.index("display_name") + 1]["text"].startswith("⚠ Enter the user")
    assert body[ids.index("email") + 1]["text"].startswith("⚠ “not-an-address”")


async def test_an_empty_pool_leads_with_the_refusal_and_its_remedy(harness: BotHarness) -> None:
    await harness.services.licences.set_pool(PROVIDER, harness.ent, LicenceProduct.ESSENTIALS, 0)
    await harness.services.licences.set_pool(PROVIDER, harness.ent, LicenceProduct.BASIC, 0)
    form = await harness.say("create user")
    refused = await harness.act(
        Verb.USER_CREATE_SUBMIT,
        {
            **buttons(form)["Create user"],
            "display_name": "Ada Lovelace",
            "email": "ada@contoso.com",
            "licence": "essentials",
            "number_mode": "auto",
            "extension_mode": "auto",
        },
    )
    text = card_text(refused)
    banner = refused["body"][1]["items"][0]["text"]
    assert banner.startswith("Nothing was saved. Not enough subscriptions in the Essentials pool")
    assert "Ask your service provider for more Essentials licences" in banner
    assert "fix the fields marked" not in text


async def test_the_form_defaults_to_a_licence_the_pools_still_have(harness: BotHarness) -> None:
    await harness.services.licences.set_pool(PROVIDER, harness.ent, LicenceProduct.ESSENTIALS, 0)
    form = await harness.say("create user")
    assert find_input(form, "licence")["value"] == "basic"
    assert find_input(form, "number_mode")["value"] == "none"
    assert find_input(form, "email")["placeholder"] == "ada.lovelace@contoso.example"


async def test_several_matches_list_numbers_as_cards_show_them(harness: BotHarness) -> None:
    ada = await _user(harness, "Ada Lovelace", "ada@contoso.com", number="+442079460000")
    card = await harness.act(Verb.NUMBERS_OPEN, {"user_id": ada.id})
    several = await harness.act(
        Verb.NUMBER_ASSIGN, {**buttons(card)["Assign this number"], "digits": "4", "number": ""}
    )
    [message] = [line for line in card_text(several).split("\n") if "Several" in line]
    assert "Several free numbers end in 4 (+44 20 7946 0004, +44 20 7946 0014" in message
    assert "+442079460004" not in message


async def test_select_all_in_bulk_enable_and_a_licence_the_pools_have(harness: BotHarness) -> None:
    await harness.services.licences.set_pool(PROVIDER, harness.ent, LicenceProduct.ESSENTIALS, 0)
    people = [
        await _user(harness, name, f"{name.split()[0].lower()}@contoso.com", licence=None)
        for name in ("Ada King", "Bob Stone", "Cy Young")
    ]
    card = await harness.say("unlicensed")
    assert find_input(card, "licence")["value"] == "basic"
    assert "value" not in find_input(card, "users")
    everyone = await harness.act(Verb.UNLICENSED_OPEN, buttons(card)["Select all 3"])
    assert find_input(everyone, "users")["value"] == ",".join(str(p.id) for p in people)
    assert find_input(everyone, "licence")["value"] == "basic"
    cleared = await harness.act(Verb.UNLICENSED_OPEN, buttons(everyone)["Clear the selection"])
    assert "value" not in find_input(cleared, "users")


async def test_free_extensions_are_listed_as_runs(harness: BotHarness) -> None:
    home = await harness.say("help")
    await _user(harness, "Ada King", "ada@contoso.com")  # takes 1000
    await _user(harness, "Bob Stone", "bob@contoso.com")  # takes 1001
    cy = await _user(harness, "Cy Young", "cy@contoso.com")  # takes 1002
    await harness.services.users.remove(PROVIDER, harness.ent, cy.id, cy.version)
    card = await harness.act(Verb.EXTENSIONS_OPEN, buttons(home)["Free extensions"])
    text = card_text(card)
    assert "Free extensions" in text
    assert "1000–1099" in text  # the range
    assert "- 1002–1099 (98)" in text
    assert "Taken\n2" in text


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("directroy", "directory"),
        ("creat user", "create user"),
        ("unlicenced", "unlicensed"),
        ("numbrs 1111", "numbers 1111"),
    ],
)
async def test_a_typo_is_answered_with_the_closest_commands(
    harness: BotHarness, typed: str, meant: str
) -> None:
    card = await harness.act(Verb.COMMAND_UNKNOWN, {"text": typed})
    text = card_text(card)
    assert f"I didn't understand “{typed}”." in text
    assert f"Did you mean **{meant}**" in text
    assert "**find priya**" in text  # and every command


async def test_something_unlike_any_command_gets_the_command_list(harness: BotHarness) -> None:
    card = await harness.act(Verb.COMMAND_UNKNOWN, {"text": "what is the weather"})
    text = card_text(card)
    assert "I didn't understand “what is the weather”." in text
    assert "Did you mean" not in text
    assert "**directory**" in text


async def test_a_typed_typo_is_not_answered_with_the_home_card(harness: BotHarness) -> None:
    card = await harness.say("directroy")
    assert "I didn't understand “directroy”." in card_text(card)

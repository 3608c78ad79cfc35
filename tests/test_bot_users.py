"""The bot over real HTTP: identity, home, create / find / edit user, type-ahead, duplicates,
malformed payloads and other tenants."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from botbuilder.schema import Activity

from bot.app import build_app
from bot.auth import BotSettings
from bot.switchboard import delivery_key
from cards.actions import Dataset, Verb
from services.conversations import ActivityLedger, Claim
from services.domain import AdminRole, LicenceProduct
from services.inventory import AUTO
from services.models import User
from services.users import NewUser
from tests.botkit import BotHarness, buttons, card_text, fact_sets, find_input
from tests.conftest import PROVIDER, seed_enterprise
from tests.support.activities import TeamsUser
from tests.support.fixtures import ServeBot

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

ADA = {
    "display_name": "Ada Lovelace",
    "email": "ada@contoso.com",
    "licence": "essentials",
    "number_mode": "auto",
    "extension_mode": "auto",
    "send_password_email": "false",
    "notify_user": "false",
}


async def _users(harness: BotHarness) -> list[User]:
    from sqlalchemy import select

    async with harness.services.db.unit_of_work(readonly=True) as uow:
        rows = list((await uow.session.execute(select(User))).scalars())
        uow.session.expunge_all()
        return rows


async def test_help_shows_the_home_card_for_the_admins_role(harness: BotHarness) -> None:
    card = await harness.say("help")
    text = card_text(card)
    assert "Enterprise admin" in text and "Create user" in text
    assert "Essentials licences" in text
    # Text that is no command says so, and still lists what can be typed (issue: typos
    # silently showed the home card).
    unknown = card_text(await harness.say("what is the weather"))
    assert "I didn't understand “what is the weather”." in unknown
    assert "**create user**" in unknown


async def test_unknown_person_and_unknown_tenant_get_a_polite_card(harness: BotHarness) -> None:
    stranger = harness.teams.with_user(TeamsUser.random("Stranger"))
    card = await harness.say("help", teams=stranger)
    assert "not set up as a Switchboard admin" in card_text(card)
    assert not buttons(card)  # nothing but who to ask
    elsewhere = harness.teams.with_tenant("99999999-0000-0000-0000-000000000000")
    card = await harness.say("create user", teams=elsewhere)
    assert "organisation is not set up" in card_text(card)
    acted = await harness.act(Verb.USER_CREATE_SUBMIT, ADA, teams=elsewhere)
    assert "not set up" in card_text(acted)
    assert await _users(harness) == []


async def test_create_user_end_to_end(harness: BotHarness) -> None:
    form = await harness.act(Verb.USER_CREATE_OPEN)
    assert find_input(form, "display_name")["isRequired"] is True
    assert find_input(form, "number")["choices.data"]["dataset"] == Dataset.FREE_NUMBERS.value
    assert find_input(form, "send_password_email")["value"] == "false"
    result = await harness.act(Verb.USER_CREATE_SUBMIT, ADA)
    text = card_text(result)
    assert "Ada Lovelace was created" in text
    assert "+44 20 7946 0000" in text and "1000" in text
    assert "Not synced" in text and "Sync Teams Users" in text
    assert {"Caller ID", "Edit user", "Sync status"} <= set(buttons(result))
    [user] = await _users(harness)
    assert user.email == "ada@contoso.com" and user.licence is LicenceProduct.ESSENTIALS


async def test_rejected_form_keeps_input_and_names_the_field(harness: BotHarness) -> None:
    bad = {**ADA, "email": "not-an-address", "display_name": "Ada Lovelace"}
    card = await harness.act(Verb.USER_CREATE_SUBMIT, bad)
    assert find_input(card, "display_name")["value"] == "Ada Lovelace"
    assert find_input(card, "email")["value"] == "not-an-address"
    assert "is not an e-mail address" in card_text(card)
    assert "Nothing was saved" in card_text(card)
    picked = await harness.act(
        Verb.USER_CREATE_SUBMIT,
        {**ADA, "number_mode": "pick", "number": "", "number_digits": "7777"},
    )
    assert "No free number ends in 7777" in card_text(picked)
    assert find_input(picked, "number_digits")["value"] == "7777"
    assert await _users(harness) == []


async def test_pick_number_by_last_digits_and_extension(harness: BotHarness) -> None:
    card = await harness.act(
        Verb.USER_CREATE_SUBMIT,
        {
            **ADA,
            "number_mode": "pick",
            "number_digits": "0042",
            "extension_mode": "pick",
            "extension": "1077",
        },
    )
    assert "+44 20 7946 0042" in card_text(card) and "1077" in card_text(card)


async def test_duplicate_delivery_creates_one_user(harness: BotHarness) -> None:
    activity = harness.teams.card_action(
        Verb.USER_CREATE_SUBMIT.value, {"verb": "user.create.submit", **ADA}
    )
    first, second = await asyncio.gather(
        harness.client.post(activity), harness.client.post(activity)
    )
    assert first.status == second.status == 200
    assert first.json()["value"] == second.json()["value"]
    third = await harness.client.post(activity)
    assert third.json()["value"] == first.json()["value"]
    assert len(await _users(harness)) == 1


class _UnhurriedLedger(ActivityLedger):
    """Writes its answers only after a pause, as a busy database would."""

    async def _write_answers(self) -> None:
        await asyncio.sleep(0.3)
        await super()._write_answers()


async def test_a_bot_stopping_keeps_its_last_answers_for_the_other_instances(
    harness: BotHarness, serve_bot: ServeBot, bot_settings: BotSettings
) -> None:
    services = harness.services
    activity = harness.teams.card_action(
        Verb.USER_CREATE_SUBMIT.value, {"verb": "user.create.submit", **ADA}
    )
    stopping = await serve_bot(
        build_app(replace(services, ledger=_UnhurriedLedger(services.db)), bot_settings)
    )
    first = (await stopping.post(activity)).json()["value"]
    await stopping.close()
    key = delivery_key(Activity().deserialize(activity))
    assert key is not None
    assert await ActivityLedger(services.db).peek(key) == Claim(first=False, response=first)
    # Another instance over the same database, knowing only what was written to it.
    other = await serve_bot(
        build_app(replace(services, ledger=ActivityLedger(services.db)), bot_settings)
    )

    redelivered = (await other.post(activity)).json()["value"]

    assert redelivered == first and "Ada Lovelace" in card_text(first)
    assert len(await _users(harness)) == 1


async def test_many_concurrent_deliveries_of_one_create_make_one_user(
    harness: BotHarness,
) -> None:
    activity = harness.teams.card_action(
        Verb.USER_CREATE_SUBMIT.value, {"verb": "user.create.submit", **ADA}
    )
    responses = await asyncio.gather(*(harness.client.post(activity) for _ in range(6)))
    answers = [response.json()["value"] for response in responses]
    assert all(answer == answers[0] for answer in answers)
    assert "Ada Lovelace" in card_text(answers[0]) and "Sorry" not in card_text(answers[0])
    assert len(await _users(harness)) == 1


async def test_a_refused_action_leaves_no_claim_so_its_redelivery_runs_again(
    harness: BotHarness,
) -> None:
    services, ent = harness.services, harness.ent
    await services.licences.set_pool(PROVIDER, ent, LicenceProduct.ESSENTIALS, 0)
    activity = harness.teams.card_action(
        Verb.USER_CREATE_SUBMIT.value, {"verb": "user.create.submit", **ADA}
    )
    refused = (await harness.client.post(activity)).json()["value"]
    assert "Not enough subscriptions" in card_text(refused)
    assert await _users(harness) == []
    # nothing changed, so nothing was claimed: once licences arrive, the retry creates the user
    await services.licences.set_pool(PROVIDER, ent, LicenceProduct.ESSENTIALS, 5)
    created = (await harness.client.post(activity)).json()["value"]
    assert "Not enough subscriptions" not in card_text(created)
    assert [user.email for user in await _users(harness)] == ["ada@contoso.com"]
    # and from now on that answer is the one every redelivery gets
    assert (await harness.client.post(activity)).json()["value"] == created


async def test_find_and_edit_user_with_conflict(harness: BotHarness) -> None:
    await harness.act(Verb.USER_CREATE_SUBMIT, ADA)
    found = await harness.act(Verb.USER_FIND, {"query": "lovelace"})
    assert "Ada Lovelace" in card_text(found)
    [user] = await _users(harness)
    opened = await harness.act(Verb.USER_OPEN, {"user_id": user.id})
    save = buttons(opened)["Save"]
    edit = {
        **save,
        "display_name": "Ada King",
        "email": "ada@contoso.com",
        "licence": "essentials",
        "number_mode": "keep",
        "extension_mode": "pick",
        "extension": "1055",
    }
    saved = await harness.act(Verb.USER_EDIT_SUBMIT, edit)
    assert "Saved." in card_text(saved) and "1055" in card_text(saved)
    # a second admin still holding the old card is refused, and keeps what they typed
    stale = await harness.act(Verb.USER_EDIT_SUBMIT, {**edit, "display_name": "Old Name"})
    assert "Someone else saved" in card_text(stale)
    assert find_input(stale, "display_name")["value"] == "Old Name"
    assert (await harness.services.users.get(harness.ent, user.id)).display_name == "Ada King"


async def test_typeahead_searches(harness: BotHarness) -> None:
    results = await harness.search("0042", Dataset.FREE_NUMBERS.value)
    assert results[0] == {"title": "+44 20 7946 0042", "value": "+442079460042"}
    many = await harness.search("", Dataset.FREE_NUMBERS.value)
    assert len(many) == 15
    await harness.act(Verb.USER_CREATE_SUBMIT, ADA)
    users = await harness.search("ada", Dataset.USERS.value)
    assert users and users[0]["title"].startswith("Ada Lovelace")
    assert await harness.search("x", "no-such-dataset") == []


async def test_enterprise_admin_cannot_reach_another_enterprise(harness: BotHarness) -> None:
    other = await seed_enterprise(
        harness.services, tenant_id="t-other", numbers=("+442079470000", "+442079470009")
    )
    victim = await harness.services.users.create(PROVIDER, other, NewUser("Vic", "vic@other.com"))
    # a crafted payload naming the other enterprise and its user
    card = await harness.act(Verb.USER_OPEN, {"ent": other, "user_id": victim.id})
    assert "Vic" not in card_text(card)
    assert "does not exist in this enterprise" in card_text(card)
    created = await harness.act(Verb.USER_CREATE_SUBMIT, {**ADA, "ent": other})
    assert "was created" in card_text(created)
    assert (await harness.services.directory.page(other)).total == 1  # still only Vic


async def test_service_provider_picks_the_enterprise(harness: BotHarness) -> None:
    provider = TeamsUser.random("Pat Provider")
    await harness.services.enterprises.grant(
        PROVIDER,
        aad_object_id=provider.aad_object_id,
        role=AdminRole.SERVICE_PROVIDER,
        enterprise_id=None,
        display_name="Pat Provider",
    )
    as_provider = harness.teams.with_user(provider)
    home = await harness.say("help", teams=as_provider)
    assert find_input(home, "ent")["choices"]
    blocked = await harness.act(Verb.USER_CREATE_OPEN, teams=as_provider)
    assert "Pick the enterprise" in card_text(blocked)
    picked = await harness.act(Verb.ENTERPRISE_PICK, {"ent": str(harness.ent)}, teams=as_provider)
    assert "Create user" in buttons(picked)
    assert buttons(picked)["Create user"]["ent"] == harness.ent
    created = await harness.act(
        Verb.USER_CREATE_SUBMIT, {**ADA, "ent": harness.ent}, teams=as_provider
    )
    assert "was created" in card_text(created)


@pytest.mark.parametrize(
    "data",
    [
        {"user_id": "not-a-number"},
        {"user_id": -4},
        {},
        {"user_id": 1, "version": "x"},
    ],
)
async def test_malformed_payloads_get_a_clear_card(harness: BotHarness, data: dict) -> None:
    card = await harness.act(Verb.USER_EDIT_SUBMIT, data)
    assert "incomplete" in card_text(card)


async def test_unknown_verb_and_garbage_invoke(harness: BotHarness) -> None:
    card = await harness.act("launch.rockets", {})
    assert "did not understand" in card_text(card)
    activity = harness.teams.card_action("x")
    activity["value"] = "garbage"
    response = await harness.client.post(activity)
    assert response.status == 200
    assert "did not understand" in card_text(response.json()["value"])


async def test_action_submit_messages_are_handled(harness: BotHarness) -> None:
    activity = harness.teams.message("")
    activity["value"] = {"verb": "user.create.submit", **ADA}
    activity.pop("text")
    response = await harness.client.post(activity)
    assert response.status == 200
    reply = await harness.connector.next_message()
    assert "Ada Lovelace was created" in card_text(reply.adaptive_cards[0])
    again = await harness.client.post(activity)
    assert again.status == 200
    assert len(await _users(harness)) == 1


async def test_install_welcomes_once_and_stores_the_conversation(harness: BotHarness) -> None:
    await harness.client.post(harness.teams.installation_added())
    await harness.client.post(harness.teams.members_added())
    welcome = await harness.connector.next_message()
    assert "Welcome to Switchboard" in card_text(welcome.adaptive_cards[0])
    await harness.connector.assert_no_activity(within=0.3)
    stored = await harness.services.conversations.personal(
        harness.teams.tenant_id, harness.teams.user.aad_object_id
    )
    assert stored is not None and stored.reference["serviceUrl"] == harness.connector.url


async def test_a_changed_conversation_reference_is_saved_again(harness: BotHarness) -> None:
    await harness.say("help")
    # the admin switched Teams to French: proactive cards must follow
    activity = harness.teams.message("help")
    activity["locale"] = "fr-FR"
    assert (await harness.client.post(activity)).status == 200
    stored = await harness.services.conversations.personal(
        harness.teams.tenant_id, harness.teams.user.aad_object_id
    )
    assert stored is not None and stored.reference["locale"] == "fr-FR"


async def test_typed_caller_id_opens_the_caller_id_card_of_the_one_match(
    harness: BotHarness,
) -> None:
    for name in ("Priya Patel", "Paul Pike", "Pia Pond"):
        await harness.services.users.create(
            PROVIDER,
            harness.ent,
            NewUser(
                name,
                name.lower().replace(" ", ".") + "@contoso.com",
                licence=LicenceProduct.ESSENTIALS,
                number=AUTO,
                extension=AUTO,
            ),
        )
    card = await harness.say("caller id priya")
    text = card_text(card)
    assert "Caller ID" in text and "Priya Patel" in text
    assert find_input(card, "caller_name") is not None  # the caller ID form, ready to change
    assert "Primary e-mail (Entra)" not in text  # not the user card's edit form
    # Several matches: each opens that user's caller ID, and searching again keeps to caller ID.
    several = await harness.say("caller id p")
    assert "Caller ID: find the user" in card_text(several)
    picks = buttons(several)
    assert picks["Caller ID of Paul Pike"]["verb"] == Verb.CALLER_ID_OPEN.value
    assert picks["Search"]["then"] == "callerid"
    # `find` still opens the user card.
    assert "Primary e-mail (Entra)" in card_text(await harness.say("find priya"))


@pytest.mark.without_mail
async def test_without_a_sender_mailbox_the_result_card_promises_no_email(
    harness: BotHarness,
) -> None:
    result = await harness.act(
        Verb.USER_CREATE_SUBMIT, {**ADA, "password_email_to": "grace.hopper@contoso.com"}
    )
    text = card_text(result)
    assert "Switchboard has no mailbox to send from" in text
    facts = {k: v for facts in fact_sets(result) for k, v in facts.items()}
    assert "Confirmation" not in facts and "Password" not in facts
    [user] = await _users(harness)
    assert user.password_email_to == "grace.hopper@contoso.com"  # kept for when mail is set up


async def test_the_password_email_goes_where_the_admin_says(harness: BotHarness) -> None:
    form = await harness.act(Verb.USER_CREATE_OPEN)
    assert find_input(form, "password_email_to")["label"] == "Send the password to"
    # A wrong address is refused next to its field, everything typed kept, nothing saved.
    refused = await harness.act(
        Verb.USER_CREATE_SUBMIT, {**ADA, "password_email_to": "grace at contoso"}
    )
    assert find_input(refused, "password_email_to")["value"] == "grace at contoso"
    assert find_input(refused, "display_name")["value"] == "Ada Lovelace"
    assert "“grace at contoso” is not an e-mail address" in card_text(refused)
    assert await _users(harness) == []
    # An address asks for the password e-mail; the result card lists every e-mail and whom to.
    result = await harness.act(
        Verb.USER_CREATE_SUBMIT, {**ADA, "password_email_to": " Grace.Hopper@Contoso.com "}
    )
    facts = {
        fact["title"]: fact["value"]
        for element in result["body"]
        if element.get("type") == "FactSet"
        for fact in element["facts"]
    }
    assert facts["Password"].startswith("to grace.hopper@contoso.com")
    assert facts["Confirmation"] == "to you, once the user is added and synced to Microsoft"
    [user] = await _users(harness)
    assert user.send_password_email and user.password_email_to == "grace.hopper@contoso.com"
    assert user.password_ciphertext and "grace" not in user.password_ciphertext
    # Left empty, the password goes to the new user's own address.
    own = await harness.act(
        Verb.USER_CREATE_SUBMIT,
        {
            **ADA,
            "display_name": "Alan Turing",
            "email": "alan@contoso.com",
            "send_password_email": "true",
        },
    )
    assert "to alan@contoso.com, when the account is made in Microsoft" in card_text(own)

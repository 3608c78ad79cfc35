"""Hunt groups and desk phones over real HTTP: the PBX line on the user card, ticking groups,
creating one, refusals next to their field, other enterprises' ids, and the desk phone login
shown once and never again: not on any later card, not in the ledger, not in the database."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update

from cards.actions import Verb
from services import journal
from services.domain import LicenceProduct, OutboxStatus
from services.models import Base, OutboxItem, ProcessedActivity, SipCredential
from services.pbx.credentials import md5_cred
from services.users import NewUser
from services.views import UserView
from tests.botkit import BotHarness, buttons, card_text, find_input, user_of_another_enterprise
from tests.conftest import PROVIDER

ON_SQLITE = pytest.mark.parametrize("database", ["sqlite"], indirect=True)
ON_POSTGRES = pytest.mark.parametrize(
    "database", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
COPY_BANNER = "it is not stored and will not be shown again"
ALREADY_ISSUED = "This login was already issued: issue a new one if it was lost."
TELEPHONY = "Hunt groups & desk phone"


async def _ada(harness: BotHarness, licence: LicenceProduct | None = LicenceProduct.ESSENTIALS):
    return await harness.services.users.create(
        PROVIDER, harness.ent, NewUser("Ada Lovelace", "ada@contoso.com", licence)
    )


async def _groups(harness: BotHarness, *names: str) -> dict[str, int]:
    made = [await harness.services.hunt_groups.create(PROVIDER, harness.ent, n) for n in names]
    return {group.name: group.id for group in made}


async def _member_of(harness: BotHarness, user_id: int) -> list[str]:
    return [g.name for g in await harness.services.hunt_groups.of_user(harness.ent, user_id)]


async def _open(harness: BotHarness, user: UserView) -> dict[str, Any]:
    """Open the user card, then its hunt groups & desk phone card through the button."""
    user_card = await harness.act(Verb.USER_OPEN, {"user_id": user.id})
    return await harness.act(Verb.TELEPHONY_OPEN, buttons(user_card)[TELEPHONY])


def _press(card: dict[str, Any], title: str, **inputs: object) -> dict[str, Any]:
    """What pressing a button sends: its data with the card's inputs merged over it."""
    return {**buttons(card)[title], **inputs}


def _shown(card: dict[str, Any], label: str) -> str:
    """The value shown next to a label in the issued-login card's rows."""
    stack: list[Any] = [card]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "ColumnSet" and len(node.get("columns", [])) == 2:
                left, right = (column["items"][0].get("text") for column in node["columns"])
                if left == label:
                    return str(right)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    raise AssertionError(f"no {label!r} row on the card")


async def _credential(harness: BotHarness, user_id: int) -> SipCredential | None:
    async with harness.services.db.unit_of_work(readonly=True) as uow:
        row = await uow.session.get(SipCredential, user_id)
        uow.session.expunge_all()
        return row


async def _everything_stored(harness: BotHarness) -> str:
    """Every row of every table, as text: a secret must not appear anywhere in it."""
    dump: list[str] = []
    async with harness.services.db.unit_of_work(readonly=True) as uow:
        for table in Base.metadata.sorted_tables:
            dump += [repr(tuple(row)) for row in await uow.session.execute(select(table))]
    return "\n".join(dump)


async def _ledger(harness: BotHarness) -> list[dict[str, Any] | None]:
    async with harness.services.db.unit_of_work(readonly=True) as uow:
        rows = await uow.session.execute(select(ProcessedActivity.response))
        return list(rows.scalars())


async def _settle_pbx(harness: BotHarness, *, error: str | None = None) -> None:
    """Play the PBX pusher: every waiting push lands, or fails with `error` and waits."""
    async with harness.services.db.unit_of_work() as uow:
        values: dict[str, Any] = (
            {
                "last_error": error,
                "attempts": 3,
                "next_attempt_at": datetime(2030, 1, 1, 9, 30, tzinfo=UTC),
            }
            if error
            else {"status": OutboxStatus.DONE}
        )
        await uow.session.execute(
            update(OutboxItem).where(OutboxItem.channel == journal.PBX).values(**values)
        )
        await uow.commit()


@ON_SQLITE
async def test_user_card_shows_the_pbx_line_and_leads_to_the_groups(harness: BotHarness) -> None:
    ada = await _ada(harness)
    ids = await _groups(harness, "Sales", "Support")
    await harness.services.hunt_groups.add_member(PROVIDER, harness.ent, ids["Sales"], ada.id)
    opened = await harness.act(Verb.USER_OPEN, {"user_id": ada.id})
    text = card_text(opened)
    assert "🔵 On its way to the PBX. Hunt groups: Sales." in text
    assert TELEPHONY in buttons(opened) and "**Hunt groups & desk phone**: the hunt groups" in text
    await _settle_pbx(harness)
    assert "🟢 On the PBX: up to date. Hunt groups: Sales." in card_text(
        await harness.act(Verb.USER_OPEN, {"user_id": ada.id})
    )
    card = await _open(harness, ada)
    text = card_text(card)
    assert "Hunt groups & desk phone: Ada Lovelace" in text
    assert find_input(card, "groups")["isMultiSelect"] is True
    assert find_input(card, "groups")["value"] == str(ids["Sales"])
    assert [c["title"] for c in find_input(card, "groups")["choices"]] == [
        "Sales (1 member)",
        "Support (0 members)",
    ]
    assert "No desk phone login." in text and "Issue desk phone login" in buttons(card)
    help_text = text[text.index("**Hunt groups** ring") :]
    assert "ring several users from one number" in help_text
    assert "SIP credentials" in help_text and "digest Asterisk needs" in help_text
    # an edit shows the same line, and a push the PBX refused says why and that it retries
    save = buttons(opened)["Save"]
    edit = {**save, "display_name": "Ada King", "email": "ada@contoso.com", "licence": "essentials"}
    saved = await harness.act(Verb.USER_EDIT_SUBMIT, edit)
    assert "Saved." in card_text(saved) and "🔵 On its way to the PBX." in card_text(saved)
    await _settle_pbx(harness, error="OperationalError: connection refused")
    stale = await harness.act(Verb.USER_EDIT_SUBMIT, {**edit, "display_name": "Old Name"})
    assert "Someone else saved" in card_text(stale)
    assert (
        "🟠 The PBX has not taken the latest change yet (OperationalError: connection refused); "
        "retrying at 09:30:00 UTC. Nothing is lost. Hunt groups: Sales."
    ) in card_text(stale)


@ON_SQLITE
async def test_saving_sets_exactly_the_ticked_groups(harness: BotHarness) -> None:
    ada = await _ada(harness)
    ids = await _groups(harness, "Sales", "Support", "Night line")
    card = await _open(harness, ada)
    ticked = f"{ids['Support']},{ids['Night line']}"
    saved = await harness.act(
        Verb.HUNT_GROUPS_SAVE, _press(card, "Save groups", groups=ticked, new_group="Draft")
    )
    assert "Hunt groups saved: Night line, Support." in card_text(saved)
    assert await _member_of(harness, ada.id) == ["Night line", "Support"]
    assert find_input(saved, "new_group")["value"] == "Draft"  # typed, not created: kept
    # the whole list is replaced: untick everything but Sales (an empty multi-select is omitted)
    only_sales = await harness.act(
        Verb.HUNT_GROUPS_SAVE, _press(saved, "Save groups", groups=str(ids["Sales"]))
    )
    assert await _member_of(harness, ada.id) == ["Sales"]
    assert find_input(only_sales, "groups")["value"] == str(ids["Sales"])
    none = await harness.act(Verb.HUNT_GROUPS_SAVE, _press(only_sales, "Save groups"))
    assert "Hunt groups saved: none." in card_text(none)
    assert await _member_of(harness, ada.id) == []
    # a redelivered save answers the same card and changes nothing twice
    activity = harness.teams.card_action(
        Verb.HUNT_GROUPS_SAVE.value,
        {"verb": Verb.HUNT_GROUPS_SAVE.value, **_press(none, "Save groups", groups=ticked)},
    )
    first, second = await asyncio.gather(
        harness.client.post(activity), harness.client.post(activity)
    )
    assert first.json()["value"] == second.json()["value"]
    assert await _member_of(harness, ada.id) == ["Night line", "Support"]


@ON_SQLITE
async def test_new_group_refusals_keep_the_input_and_name_the_field(harness: BotHarness) -> None:
    ada = await _ada(harness)
    ids = await _groups(harness, "Sales")
    card = await _open(harness, ada)
    ticked = str(ids["Sales"])
    empty = await harness.act(
        Verb.HUNT_GROUP_CREATE, _press(card, "Create group", groups=ticked, new_group="   ")
    )
    assert "Give the hunt group a name" in card_text(empty)
    assert "Nothing was changed" in card_text(empty)
    assert find_input(empty, "groups")["value"] == ticked
    taken = await harness.act(
        Verb.HUNT_GROUP_CREATE, _press(empty, "Create group", groups=ticked, new_group="sales")
    )
    assert "A hunt group called sales already exists." in card_text(taken)
    assert find_input(taken, "new_group")["value"] == "sales"
    assert find_input(taken, "groups")["value"] == ticked
    # the message sits right under the name box
    text = card_text(taken)
    assert text.index("New hunt group") < text.index("already exists") < text.index("Create group")
    long = await harness.act(
        Verb.HUNT_GROUP_CREATE, _press(taken, "Create group", new_group="x" * 65)
    )
    assert "use at most 64" in card_text(long)
    created = await harness.act(
        Verb.HUNT_GROUP_CREATE,
        _press(long, "Create group", groups=ticked, new_group="  Front   desk "),
    )
    assert "Hunt group Front desk was created and is ticked below" in card_text(created)
    assert find_input(created, "new_group").get("value") is None
    groups = {g.name: g.id for g in await harness.services.hunt_groups.all(harness.ent)}
    assert find_input(created, "groups")["value"] == f"{ticked},{groups['Front desk']}"
    assert await _member_of(harness, ada.id) == []  # ticked, not saved yet
    await harness.act(
        Verb.HUNT_GROUPS_SAVE,
        _press(created, "Save groups", groups=find_input(created, "groups")["value"]),
    )
    assert await _member_of(harness, ada.id) == ["Front desk", "Sales"]


@ON_SQLITE
async def test_unlicensed_user_is_refused_next_to_the_field(harness: BotHarness) -> None:
    sam = await harness.services.users.create(PROVIDER, harness.ent, NewUser("Sam", "s@c.com"))
    ids = await _groups(harness, "Sales")
    card = await _open(harness, sam)
    assert "Sam has no calling licence" in card_text(card)
    refused = await harness.act(
        Verb.HUNT_GROUPS_SAVE, _press(card, "Save groups", groups=str(ids["Sales"]))
    )
    text = card_text(refused)
    assert "Sam has no calling licence, so the PBX cannot ring them" in text
    assert text.index("Save groups") > text.index("cannot ring them") > text.index("Groups that")
    assert find_input(refused, "groups")["value"] == str(ids["Sales"])
    assert await _member_of(harness, sam.id) == []
    phone = await harness.act(
        Verb.DESK_PHONE_ISSUE, _press(refused, "Issue desk phone login", new_group="Kept")
    )
    text = card_text(phone)
    assert "has no line for a desk phone" in text
    assert text.index("No desk phone login.") < text.index("has no line for a desk phone")
    assert find_input(phone, "new_group")["value"] == "Kept"
    assert await _credential(harness, sam.id) is None
    # a group created from an unlicensed user's card is not ticked for them
    created = await harness.act(
        Verb.HUNT_GROUP_CREATE, _press(phone, "Create group", new_group="Kept")
    )
    assert "Hunt group Kept was created." in card_text(created)
    assert find_input(created, "groups").get("value") is None


@ON_SQLITE
async def test_unknown_and_other_enterprises_ids_are_refused(harness: BotHarness) -> None:
    ada = await _ada(harness)
    ids = await _groups(harness, "Sales")
    other, vic = await user_of_another_enterprise(harness, "Vic")
    theirs = await harness.services.hunt_groups.create(PROVIDER, other, "Their desk")
    card = await _open(harness, ada)
    for crafted in (f"{ids['Sales']},{theirs.id}", "999999"):
        refused = await harness.act(
            Verb.HUNT_GROUPS_SAVE, _press(card, "Save groups", groups=crafted)
        )
        text = card_text(refused)
        assert "That hunt group does not exist in this enterprise." in text
        assert "Their desk" not in text
        # only this enterprise's groups can show as ticked
        assert find_input(refused, "groups").get("value") in (str(ids["Sales"]), None)
    unreadable = await harness.act(Verb.HUNT_GROUPS_SAVE, _press(card, "Save groups", groups="1;x"))
    assert "could not read that selection" in card_text(unreadable)
    assert await _member_of(harness, ada.id) == []
    assert [
        m.display_name for m in await harness.services.hunt_groups.members(other, theirs.id)
    ] == []
    # another enterprise's user, by every verb, even naming their enterprise
    for verb in (Verb.TELEPHONY_OPEN, Verb.HUNT_GROUPS_SAVE, Verb.DESK_PHONE_ISSUE):
        crafted_card = await harness.act(
            verb, {"ent": other, "user_id": vic.id, "groups": str(theirs.id)}
        )
        assert "does not exist in this enterprise" in card_text(crafted_card)
        assert "Vic" not in card_text(crafted_card)
    assert await _credential(harness, vic.id) is None
    assert await _member_of_other(harness, other, vic.id) == []


async def _member_of_other(harness: BotHarness, ent: int, user_id: int) -> list[str]:
    return [g.name for g in await harness.services.hunt_groups.of_user(ent, user_id)]


@ON_SQLITE
async def test_desk_phone_login_is_shown_once_and_stored_nowhere(
    harness: BotHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ada = await _ada(harness)
    card = await _open(harness, ada)
    activity = harness.teams.card_action(
        Verb.DESK_PHONE_ISSUE.value,
        {"verb": Verb.DESK_PHONE_ISSUE.value, **buttons(card)["Issue desk phone login"]},
    )
    response = await harness.client.post(activity)
    issued = response.json()["value"]
    harness.cards_seen.append(issued)
    text = card_text(issued)
    assert COPY_BANNER in text and "Desk phone login issued." in text
    assert "The phone rings for +44 20 7946 0000, extension 1000." in text
    username, password = _shown(issued, "Username"), _shown(issued, "Password")
    realm = _shown(issued, "Realm")
    assert len(password) == 24 and realm == "asterisk"
    assert _shown(issued, "Registrar") == "not configured: ask your service provider"
    # what the card shows is the login the PBX will check
    stored = await _credential(harness, ada.id)
    assert stored is not None and stored.username == username
    assert stored.md5_cred == md5_cred(username, realm, password)
    # a redelivery gets the stand-in, not the password, and issues nothing new
    again = (await harness.client.post(activity)).json()["value"]
    harness.cards_seen.append(again)
    assert password not in card_text(again) and ALREADY_ISSUED in card_text(again)
    assert (await _credential(harness, ada.id)).md5_cred == stored.md5_cred  # type: ignore[union-attr]
    # no later card shows it: hiding it, the user card, the telephony card
    hidden = await harness.act(
        Verb.TELEPHONY_OPEN, buttons(issued)["I have copied it: hide the password"]
    )
    assert "A desk phone login is set up." in card_text(hidden)
    later = [
        hidden,
        await harness.act(Verb.USER_OPEN, {"user_id": ada.id}),
        await _open(harness, ada),
    ]
    assert all(password not in card_text(c) for c in later)
    assert {"Replace login", "Revoke"} <= set(buttons(hidden))
    # nothing kept it: not the ledger, not any table, not the log
    ledger = await _ledger(harness)
    assert any(ALREADY_ISSUED in card_text(r) for r in ledger if r)
    assert all(password not in repr(r) for r in ledger)
    assert password not in await _everything_stored(harness)
    assert password not in caplog.text


@ON_SQLITE
async def test_action_submit_issue_is_shown_once_too(harness: BotHarness) -> None:
    ada = await _ada(harness)
    activity = harness.teams.message("")
    activity.pop("text")
    activity["value"] = {"verb": Verb.DESK_PHONE_ISSUE.value, "user_id": ada.id}
    assert (await harness.client.post(activity)).status == 200
    [issued] = (await harness.connector.next_message()).adaptive_cards
    password = _shown(issued, "Password")
    assert (await harness.client.post(activity)).status == 200
    [again] = (await harness.connector.next_message()).adaptive_cards
    harness.cards_seen += [issued, again]
    assert ALREADY_ISSUED in card_text(again) and password not in card_text(again)
    assert password not in await _everything_stored(harness)


@ON_SQLITE
async def test_replace_and_revoke(harness: BotHarness) -> None:
    ada = await _ada(harness)
    before = await _open(harness, ada)
    first = await harness.act(Verb.DESK_PHONE_ISSUE, _press(before, "Issue desk phone login"))
    old_password = _shown(first, "Password")
    # a second admin still holding the card from before: "Issue" must not replace silently
    stale = await harness.act(
        Verb.DESK_PHONE_ISSUE, _press(before, "Issue desk phone login", new_group="Kept")
    )
    assert "already has a desk phone login" in card_text(stale)
    assert find_input(stale, "new_group")["value"] == "Kept"
    assert old_password not in card_text(stale)
    old_digest = (await _credential(harness, ada.id)).md5_cred  # type: ignore[union-attr]
    replaced = await harness.act(Verb.DESK_PHONE_ISSUE, _press(stale, "Replace login"))
    new_password = _shown(replaced, "Password")
    assert new_password != old_password
    assert "the previous one no longer works" in card_text(replaced)
    assert (await _credential(harness, ada.id)).md5_cred != old_digest  # type: ignore[union-attr]
    card = await _open(harness, ada)
    revoked = await harness.act(Verb.DESK_PHONE_REVOKE, _press(card, "Revoke"))
    assert "Desk phone login revoked" in card_text(revoked)
    assert "No desk phone login." in card_text(revoked)
    assert not await harness.services.desk_phones.has_desk_phone(harness.ent, ada.id)
    again = await harness.act(Verb.DESK_PHONE_REVOKE, _press(card, "Revoke"))
    assert "Ada Lovelace had no desk phone login to revoke." in card_text(again)
    assert all(new_password not in card_text(c) for c in (card, revoked, again))


@ON_SQLITE
@pytest.mark.parametrize(
    ("verb", "data"),
    [
        (Verb.TELEPHONY_OPEN, {"user_id": "x"}),
        (Verb.TELEPHONY_OPEN, {"user_id": 2**40}),
        (Verb.HUNT_GROUPS_SAVE, {}),
        (Verb.HUNT_GROUP_CREATE, {"user_id": 1, "new_group": {"name": "x"}}),
        (Verb.DESK_PHONE_ISSUE, {"user_id": 1, "replace": "maybe"}),
        (Verb.DESK_PHONE_REVOKE, {"user_id": -1}),
    ],
)
async def test_malformed_payloads_get_a_clear_card(
    harness: BotHarness, verb: Verb, data: dict
) -> None:
    card = await harness.act(verb, data)
    assert "incomplete" in card_text(card)


@ON_POSTGRES
async def test_groups_and_desk_phone_on_postgres(harness: BotHarness) -> None:
    ada = await _ada(harness)
    card = await _open(harness, ada)
    assert "This enterprise has no hunt groups yet" in card_text(card)
    created = await harness.act(
        Verb.HUNT_GROUP_CREATE, _press(card, "Create group", new_group="Sales")
    )
    sales = find_input(created, "groups")["value"]
    saved = await harness.act(Verb.HUNT_GROUPS_SAVE, _press(created, "Save groups", groups=sales))
    assert "Hunt groups saved: Sales." in card_text(saved)
    huge = await harness.act(Verb.HUNT_GROUPS_SAVE, _press(saved, "Save groups", groups="9" * 12))
    assert "could not read that selection" in card_text(huge)
    activity = harness.teams.card_action(
        Verb.DESK_PHONE_ISSUE.value,
        {"verb": Verb.DESK_PHONE_ISSUE.value, **buttons(saved)["Issue desk phone login"]},
    )
    first, second = await asyncio.gather(
        harness.client.post(activity), harness.client.post(activity)
    )
    cards = [first.json()["value"], second.json()["value"]]
    harness.cards_seen.extend(cards)
    assert sum(COPY_BANNER in card_text(c) for c in cards) == 1, [card_text(c)[:300] for c in cards]
    [issued] = [c for c in cards if COPY_BANNER in card_text(c)]
    [stand_in] = [c for c in cards if ALREADY_ISSUED in card_text(c)]
    password = _shown(issued, "Password")
    assert password not in card_text(stand_in)
    opened = await harness.act(Verb.USER_OPEN, {"user_id": ada.id})
    assert "Hunt groups: Sales." in card_text(opened) and password not in card_text(opened)
    assert password not in await _everything_stored(harness)
    await _settle_pbx(harness)
    assert "🟢 On the PBX: up to date." in card_text(await _open(harness, ada))


@ON_SQLITE
async def test_a_hunt_group_gets_its_extension_and_number_from_the_card(
    harness: BotHarness,
) -> None:
    ada = await _ada(harness)
    card = await _open(harness, ada)
    taken = await harness.act(
        Verb.HUNT_GROUP_CREATE,
        _press(card, "Create group", new_group="Sales", new_group_extension=str(ada.extension)),
    )
    assert f"Extension {ada.extension} is already taken" in card_text(taken)
    assert find_input(taken, "new_group")["value"] == "Sales"
    assert find_input(taken, "new_group_extension")["value"] == str(ada.extension)
    assert await harness.services.hunt_groups.all(harness.ent) == []
    created = await harness.act(
        Verb.HUNT_GROUP_CREATE,
        _press(
            taken,
            "Create group",
            new_group="Sales",
            new_group_extension="1050",
            new_group_number="020 7946 0050",
        ),
    )
    assert "Hunt group Sales was created" in card_text(created)
    assert find_input(created, "new_group_extension").get("value") is None
    [sales] = await harness.services.hunt_groups.all(harness.ent)
    assert (sales.extension, sales.number) == (1050, "+442079460050")
    assert "Sales (0 members; extension 1050, +44 20 7946 0050)" in card_text(created)

"""Cards that stay true: the sync and user cards carry Universal Actions' `refresh` for the
admin viewing them, and the bot answers Teams' automatic refresh with the card as it is now;
users without a calling licence are never counted as provisioned."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from cards.actions import Verb
from services.domain import LicenceProduct, ProvisioningStatus, SyncStatus
from services.inventory import AUTO
from services.models import SyncRun, User, utcnow
from services.users import NewUser
from tests.botkit import BotHarness, card_text, fact_sets, global_admin
from tests.cardcheck import assert_valid_cards
from tests.conftest import PROVIDER
from tests.support.activities import TeamsActivities

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


async def _refreshed(
    harness: BotHarness, teams: TeamsActivities, verb: Verb, data: dict[str, Any]
) -> dict[str, Any]:
    """What the bot answers when Teams refreshes a card by itself (trigger "automatic")."""
    activity = teams.card_action(verb.value, {"verb": verb.value, **data})
    activity["value"]["trigger"] = "automatic"
    response = await harness.client.post(activity)
    assert response.status == 200, response.text
    body = response.json()
    assert body["statusCode"] == 200
    assert body["type"] == "application/vnd.microsoft.card.adaptive"
    card: dict[str, Any] = body["value"]
    harness.cards_seen.append(card)
    return card


async def test_the_sync_card_refreshes_to_the_finished_run(harness: BotHarness) -> None:
    await harness.services.users.create(
        PROVIDER, harness.ent, NewUser("Ada King", "ada.king@contoso.com")
    )
    gina = await global_admin(harness)
    started = await harness.act(Verb.SYNC_START, teams=gina)
    assert "Sync in progress" in card_text(started) or "Sync requested" in card_text(started)
    refresh = started["refresh"]
    assert refresh["action"]["type"] == "Action.Execute"
    assert refresh["action"]["verb"] == Verb.SYNC_REFRESH.value
    assert refresh["action"]["data"]["ent"] == harness.ent
    assert refresh["userIds"] == [gina.user.teams_id]

    # The run ends while the card sits in the chat.
    async with harness.services.db.unit_of_work() as uow:
        await uow.session.execute(
            update(SyncRun).values(status=SyncStatus.SUCCEEDED, finished_at=utcnow())
        )
        await uow.commit()
    card = await _refreshed(harness, gina, Verb.SYNC_REFRESH, refresh["action"]["data"])
    text = card_text(card)
    assert "Last sync" in text and "🟢 Succeeded" in text
    assert "Sync in progress" not in text and "Sync requested" not in text
    assert "Sync started" not in text  # the banner of the press is not repeated
    assert card["refresh"]["userIds"] == [gina.user.teams_id]
    assert_valid_cards({"started": started, "refreshed": card})


async def test_the_user_card_refreshes_to_the_users_sync_status(harness: BotHarness) -> None:
    user = await harness.services.users.create(
        PROVIDER,
        harness.ent,
        NewUser(
            "Ada King",
            "ada.king@contoso.com",
            licence=LicenceProduct.ESSENTIALS,
            number=AUTO,
            extension=AUTO,
        ),
    )
    card = await harness.act(Verb.USER_OPEN, {"user_id": user.id})
    assert "⚪ Not synced" in card_text(card)
    assert card["refresh"]["action"]["verb"] == Verb.USER_REFRESH.value
    assert card["refresh"]["action"]["data"]["user_id"] == user.id
    assert card["refresh"]["userIds"] == [harness.teams.user.teams_id]

    async with harness.services.db.unit_of_work() as uow:
        await uow.session.execute(
            update(User)
            .where(User.id == user.id)
            .values(provisioning_status=ProvisioningStatus.PROVISIONED)
        )
        await uow.commit()
    refreshed = await _refreshed(
        harness, harness.teams, Verb.USER_REFRESH, card["refresh"]["action"]["data"]
    )
    assert "🟢 Provisioned" in card_text(refreshed)
    assert "⚪ Not synced" not in card_text(refreshed)
    assert_valid_cards({"user": card, "refreshed": refreshed})


async def test_a_refused_edit_keeps_its_card_unrefreshed(harness: BotHarness) -> None:
    user = await harness.services.users.create(
        PROVIDER, harness.ent, NewUser("Ada King", "ada.king@contoso.com")
    )
    refused = await harness.act(
        Verb.USER_EDIT_SUBMIT,
        {"user_id": user.id, "version": user.version, "display_name": "", "email": "nope"},
    )
    assert "⚠" in card_text(refused)
    # A refresh would wipe what the admin typed and the messages next to the fields.
    assert "refresh" not in refused


async def test_an_unlicensed_user_is_not_counted_as_provisioned(harness: BotHarness) -> None:
    for name, licence in (("Ada King", LicenceProduct.ESSENTIALS), ("Bob Stone", None)):
        await harness.services.users.create(
            PROVIDER,
            harness.ent,
            NewUser(
                name,
                name.lower().replace(" ", ".") + "@contoso.com",
                licence=licence,
                number=AUTO if licence else None,
                extension=AUTO if licence else None,
            ),
        )
    async with harness.services.db.unit_of_work() as uow:
        await uow.session.execute(
            update(User).values(provisioning_status=ProvisioningStatus.PROVISIONED)
        )
        await uow.commit()
        licensed = (
            await uow.session.execute(select(User.display_name).where(User.licence.is_not(None)))
        ).scalars()
        assert list(licensed) == ["Ada King"]
    card = await harness.act(Verb.SYNC_OPEN)
    counts = next(f for f in fact_sets(card) if "🟢 Provisioned" in f)
    assert counts["🟢 Provisioned"] == "1"
    assert counts["⚪ No calling licence"] == "1"
    assert "Users (2)" in card_text(card)

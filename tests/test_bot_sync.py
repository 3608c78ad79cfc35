"""Sync Teams Users over real HTTP: who sees the button, one run however often it is pressed,
the automatic case explained, and the per-user indicators with their counts."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from cards.actions import Verb
from services.domain import AdminRole, ProvisioningStatus, SyncStatus
from services.models import Enterprise, SyncRun, User, utcnow
from services.users import NewUser
from tests.botkit import BotHarness, buttons, card_text, fact_sets, global_admin
from tests.conftest import PROVIDER
from tests.support.activities import TeamsUser

ON_SQLITE = pytest.mark.parametrize("database", ["sqlite"], indirect=True)
ON_POSTGRES = pytest.mark.parametrize(
    "database", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


async def _runs(harness: BotHarness) -> list[SyncRun]:
    async with harness.services.db.unit_of_work(readonly=True) as uow:
        rows = list((await uow.session.execute(select(SyncRun).order_by(SyncRun.id))).scalars())
        uow.session.expunge_all()
        return rows


async def _execute(harness: BotHarness, *statements: Any) -> None:
    """Leave the database as the sync engine or the provider would."""
    async with harness.services.db.unit_of_work() as uow:
        for statement in statements:
            await uow.session.execute(statement)
        await uow.commit()


def _user_rows(card: dict[str, Any]) -> dict[str, str]:
    [table] = [e for e in card["body"] if e.get("type") == "Table"]
    return {
        row["cells"][0]["items"][0]["text"]: row["cells"][1]["items"][0]["text"]
        for row in table["rows"][1:]
    }


async def _create(harness: BotHarness, *names: str) -> dict[str, int]:
    ids = {}
    for name in names:
        email = name.lower().replace(" ", ".") + "@contoso.com"
        ids[name] = (
            await harness.services.users.create(PROVIDER, harness.ent, NewUser(name, email))
        ).id
    return ids


@ON_SQLITE
async def test_enterprise_admin_sees_no_button_and_a_crafted_start_is_refused(
    harness: BotHarness,
) -> None:
    await _create(harness, "Ada King")
    card = await harness.say("sync")
    text = card_text(card)
    assert "Changes sync manually" in text
    assert "has not consented to “Allow Management by Service Provider”" in text
    assert "first sync, which sets up the initial users, is not done yet" in text
    assert "1 change waits for the next sync. Ask your Global Admin to run it." in text
    assert "No sync has run yet." in text
    assert "Sync Teams Users" not in buttons(card)
    assert "Refresh status" in buttons(card)
    refused = await harness.act(Verb.SYNC_START)
    assert "Only the enterprise's Global Admin can start" in card_text(refused)
    assert "Sync Teams Users" not in buttons(refused)
    assert await _runs(harness) == []
    # a provider admin acting for the enterprise sees the status, not the button
    provider = TeamsUser.random("Pat Provider")
    await harness.services.enterprises.grant(
        PROVIDER,
        aad_object_id=provider.aad_object_id,
        role=AdminRole.SERVICE_PROVIDER,
        enterprise_id=None,
    )
    as_provider = harness.teams.with_user(provider)
    seen = await harness.act(Verb.SYNC_OPEN, {"ent": harness.ent}, teams=as_provider)
    assert "Changes sync manually" in card_text(seen)
    assert "Sync Teams Users" not in buttons(seen)
    pressed = await harness.act(Verb.SYNC_START, {"ent": harness.ent}, teams=as_provider)
    assert "Only the enterprise's Global Admin" in card_text(pressed)
    assert await _runs(harness) == []


@ON_SQLITE
async def test_global_admin_starts_one_sync_and_a_second_press_shows_it(
    harness: BotHarness,
) -> None:
    await _create(harness, "Ada King", "Bob Stone")
    as_global = await global_admin(harness)
    card = await harness.say("sync", teams=as_global)
    start = buttons(card)["Sync Teams Users"]
    assert "2 changes wait for the next sync." in card_text(card)
    assert "Ask your Global Admin" not in card_text(card)
    started = await harness.act(Verb.SYNC_START, start, teams=as_global)
    text = card_text(started)
    assert "Sync started" in text and "Sync requested" in text
    [run] = await _runs(harness)
    assert run.status is SyncStatus.REQUESTED and run.is_first
    [run_facts] = [f for f in fact_sets(started) if "Requested by" in f]
    assert run_facts["Requested by"] == "Gina Global (you)"
    assert run_facts["Status"] == "🟡 Requested, waiting to start"
    assert run_facts["Expected by"].endswith("(in about 24 h)")
    assert run_facts["Promised within"] == "24 hours (first sync)"
    assert "Sync Teams Users" not in buttons(started)  # no second run while one is open
    # Teams re-reads the card whenever it is shown, by itself for the admin viewing it
    assert started["refresh"]["action"]["verb"] == Verb.SYNC_REFRESH.value
    assert started["refresh"]["userIds"] == [as_global.user.teams_id]
    assert card["refresh"]["action"]["verb"] == Verb.SYNC_REFRESH.value
    assert _user_rows(started) == {"Ada King": "🟡 Pending", "Bob Stone": "🟡 Pending"}
    # the old card's button pressed again, twice at once: still the same single run
    again = await asyncio.gather(
        harness.act(Verb.SYNC_START, start, teams=as_global),
        harness.act(Verb.SYNC_START, start, teams=as_global),
    )
    for shown in again:
        assert "A sync is already requested, so no second one was started" in card_text(shown)
        [shown_facts] = [f for f in fact_sets(shown) if "Requested by" in f]
        assert shown_facts["Requested"] == run_facts["Requested"]
    assert [r.id for r in await _runs(harness)] == [run.id]
    # the enterprise admin sees who started it
    seen = await harness.say("sync status")
    [seen_facts] = [f for f in fact_sets(seen) if "Requested by" in f]
    assert seen_facts["Requested by"] == "Gina Global"
    assert "Sync Teams Users" not in buttons(seen)
    # while the engine runs it, a press shows the running sync
    await _execute(harness, update(SyncRun).values(status=SyncStatus.RUNNING))
    running = await harness.act(Verb.SYNC_START, start, teams=as_global)
    assert "A sync is running, so no second one was started" in card_text(running)
    assert "Sync in progress" in card_text(running)
    assert len(await _runs(harness)) == 1


@ON_SQLITE
async def test_automatic_sync_is_explained(harness: BotHarness) -> None:
    await _execute(
        harness,
        update(Enterprise).values(
            sp_management_consent=True, first_sync_completed_at=utcnow() - timedelta(days=3)
        ),
    )
    await _create(harness, "Ada King")
    card = await harness.say("sync")
    text = card_text(card)
    assert "No manual sync is needed" in text and "sync to Microsoft automatically" in text
    assert "Ask your Global Admin" not in text
    # consent alone is not enough while the first sync is outstanding
    await _execute(harness, update(Enterprise).values(first_sync_completed_at=None))
    text = card_text(await harness.act(Verb.SYNC_OPEN))
    assert "Changes sync manually" in text and "first sync" in text
    assert "has not consented" not in text
    # a finished first sync without consent still needs the Global Admin
    await _execute(
        harness,
        update(Enterprise).values(sp_management_consent=False, first_sync_completed_at=utcnow()),
    )
    text = card_text(await harness.act(Verb.SYNC_OPEN))
    assert "Changes sync manually" in text and "has not consented" in text
    assert "is not done yet" not in text


@ON_SQLITE
async def test_per_user_indicators_counts_and_runs(harness: BotHarness) -> None:
    ids = await _create(
        harness, "Ada King", "Bob Stone", "Cy Young", "Di Ross", "Ed Wood", "Flo Hart"
    )
    states = {
        "Ada King": (ProvisioningStatus.PROVISIONED, None),
        "Bob Stone": (ProvisioningStatus.PROVISIONED, None),
        "Cy Young": (ProvisioningStatus.FAILED, "Entra says the licence is not available"),
        "Di Ross": (ProvisioningStatus.IN_PROGRESS, None),
        "Ed Wood": (ProvisioningStatus.PENDING, None),
        "Flo Hart": (ProvisioningStatus.NOT_SYNCED, None),
    }
    now = utcnow()
    await _execute(
        harness,
        *(
            update(User)
            .where(User.id == ids[name])
            .values(provisioning_status=status, provisioning_error=error)
            for name, (status, error) in states.items()
        ),
        SyncRun.__table__.insert().values(
            enterprise_id=harness.ent,
            status=SyncStatus.PARTIALLY_FAILED.value,
            is_first=True,
            is_automatic=False,
            requested_by="someone-gone",
            requested_at=now - timedelta(hours=30),
            expected_by=now - timedelta(hours=6),
            finished_at=now - timedelta(hours=26),
        ),
    )
    card = await harness.act(Verb.SYNC_OPEN)
    counts = next(f for f in fact_sets(card) if "🟢 Provisioned" in f)
    # Ada and Bob have no calling licence: nothing of Teams Phone is provisioned for them.
    assert counts == {
        "⚪ Not synced": "1",
        "🟡 Pending": "1",
        "🔵 In progress": "1",
        "🟢 Provisioned": "0",
        "🔴 Failed": "1",
        "⚪ No calling licence": "2",
    }
    assert "Users (6)" in card_text(card)
    assert _user_rows(card) == {
        "Cy Young": "🔴 Failed: Entra says the licence is not available",
        "Di Ross": "🔵 In progress",
        "Flo Hart": "⚪ Not synced",
        "Ed Wood": "🟡 Pending",
    }
    last = next(f for f in fact_sets(card) if "Finished" in f)
    assert last["Status"] == "🔴 Partially failed: see the users below"
    assert last["Requested by"] == "a Global Admin"  # no object id on the card
    assert "Last sync" in card_text(card)
    # a running sync past its promise is flagged
    await _execute(
        harness,
        SyncRun.__table__.insert().values(
            enterprise_id=harness.ent,
            status=SyncStatus.RUNNING.value,
            is_first=False,
            is_automatic=True,
            requested_at=now - timedelta(hours=5),
            expected_by=now - timedelta(hours=1),
        ),
    )
    overdue = await harness.act(Verb.SYNC_OPEN)
    [run_facts] = [f for f in fact_sets(overdue) if "Expected by" in f]
    assert run_facts["Status"] == "🔵 Running"
    assert run_facts["Requested by"] == "Switchboard (automatic sync)"
    assert run_facts["Expected by"].endswith("(⚠ overdue)")
    assert run_facts["Promised within"] == "4 hours"
    assert "escalated to your service provider" in card_text(overdue)
    # the name opens the user
    [table] = [e for e in overdue["body"] if e.get("type") == "Table"]
    action = table["rows"][1]["cells"][0]["selectAction"]
    assert action["data"]["user_id"] == ids["Cy Young"]


@ON_SQLITE
async def test_no_users_and_everyone_provisioned(harness: BotHarness) -> None:
    empty = await harness.act(Verb.SYNC_OPEN)
    assert "There are no users yet." in card_text(empty)
    assert "No change is waiting right now." in card_text(empty)
    await _create(harness, "Ada King")
    await _execute(harness, update(User).values(provisioning_status=ProvisioningStatus.PROVISIONED))
    done = await harness.act(Verb.SYNC_OPEN)
    assert "Every user is provisioned." in card_text(done)
    assert not [e for e in done["body"] if e.get("type") == "Table"]


@ON_POSTGRES
async def test_sync_main_flow_on_postgres(harness: BotHarness) -> None:
    await _create(harness, "Ada King")
    assert "Sync Teams Users" not in buttons(await harness.say("sync"))
    as_global = await global_admin(harness)
    card = await harness.say("sync", teams=as_global)
    start = buttons(card)["Sync Teams Users"]
    first, second = await asyncio.gather(
        harness.act(Verb.SYNC_START, start, teams=as_global),
        harness.act(Verb.SYNC_START, start, teams=as_global),
    )
    texts = sorted([card_text(first), card_text(second)], key=lambda t: "Sync started" not in t)
    assert "Sync started" in texts[0] and "no second one was started" in texts[1]
    async with harness.services.db.unit_of_work(readonly=True) as uow:
        assert (
            await uow.session.execute(select(func.count()).select_from(SyncRun))
        ).scalar_one() == 1
    status = await harness.say("sync")
    assert _user_rows(status) == {"Ada King": "🟡 Pending"}
    assert "Sync Teams Users" not in buttons(status)

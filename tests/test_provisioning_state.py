"""The owner of the provisioning status (its events and the auto-sync rule) and the one queue
primitive every worker claims its work with."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from services.container import Services
from services.db import Database
from services.domain import OutboxStatus, ProvisioningStatus, SyncStatus
from services.models import Enterprise, OutboxItem, utcnow
from services.provisioning import state
from services.provisioning.state import ProvisioningEvent
from services.queue import WorkQueue
from services.views import EnterpriseView
from tests.conftest import seed_enterprise

QUEUE = WorkQueue(
    OutboxItem,
    id=OutboxItem.id,
    status=OutboxItem.status,
    due_at=OutboxItem.next_attempt_at,
    attempts=OutboxItem.attempts,
)


def _enterprise(consent: bool, first_sync_done: bool) -> Enterprise:
    return Enterprise(
        sp_management_consent=consent,
        first_sync_completed_at=utcnow() if first_sync_done else None,
    )


def test_every_event_has_one_transition_and_the_open_statuses_are_spelled_once() -> None:
    assert set(state.TRANSITIONS) == set(ProvisioningEvent)
    assert state.OPEN_RUN_STATUSES == (SyncStatus.REQUESTED, SyncStatus.RUNNING)
    assert all(status.is_open for status in state.OPEN_RUN_STATUSES)


@pytest.mark.parametrize(
    ("consent", "first_sync_done", "waiting"),
    [
        (True, True, ProvisioningStatus.PENDING),
        (True, False, ProvisioningStatus.NOT_SYNCED),
        (False, True, ProvisioningStatus.NOT_SYNCED),
        (False, False, ProvisioningStatus.NOT_SYNCED),
    ],
)
def test_a_queued_change_waits_as_the_enterprise_syncs(
    consent: bool, first_sync_done: bool, waiting: ProvisioningStatus
) -> None:
    enterprise = _enterprise(consent, first_sync_done)
    for current in ProvisioningStatus:
        moved = state.next_status(current, ProvisioningEvent.CHANGE_QUEUED, enterprise)
        assert moved is waiting
    view = EnterpriseView(
        id=1,
        name="Contoso",
        tenant_id="t",
        main_number="+442079461000",
        region="GB",
        extension_start=1000,
        extension_end=1999,
        sp_management_consent=consent,
        first_sync_completed_at=enterprise.first_sync_completed_at,
    )
    assert view.syncs_automatically is (waiting is ProvisioningStatus.PENDING)


def test_the_run_events_lead_where_the_table_says() -> None:
    enterprise = _enterprise(False, False)
    expected = {
        ProvisioningEvent.RUN_ATTACHED: ProvisioningStatus.PENDING,
        ProvisioningEvent.CLAIMED: ProvisioningStatus.IN_PROGRESS,
        ProvisioningEvent.SUCCEEDED: ProvisioningStatus.PROVISIONED,
        ProvisioningEvent.FAILED: ProvisioningStatus.FAILED,
    }
    for event, target in expected.items():
        for current in ProvisioningStatus:
            assert state.next_status(current, event, enterprise) is target


async def test_the_auto_sync_rule_reads_the_same_in_sql(services: Services) -> None:
    manual = await seed_enterprise(services, tenant_id="tenant-manual", consent=True)
    automatic = await seed_enterprise(
        services,
        tenant_id="tenant-auto",
        numbers=("+442079460100", "+442079460199"),
        consent=True,
    )
    async with services.db.unit_of_work() as uow:
        enterprise = await uow.session.get(Enterprise, automatic)
        assert enterprise is not None
        enterprise.first_sync_completed_at = utcnow()
        await uow.commit()
    async with services.db.unit_of_work(readonly=True) as uow:
        found = set(
            (
                await uow.session.execute(
                    select(Enterprise.id).where(state.syncs_automatically_clause())
                )
            ).scalars()
        )
    assert found == {automatic}
    assert manual not in found


async def _rows(db: Database, enterprise_id: int, count: int) -> list[int]:
    async with db.unit_of_work() as uow:
        rows = [
            OutboxItem(enterprise_id=enterprise_id, channel="test", kind="k", payload={})
            for _ in range(count)
        ]
        uow.session.add_all(rows)
        await uow.session.flush()
        ids = [row.id for row in rows]
        await uow.commit()
    return ids


async def _claim(db: Database, limit: int, *, at: timedelta = timedelta(0)) -> list[int]:
    async with db.unit_of_work() as uow:
        ids = await QUEUE.claim(
            uow.session,
            utcnow() + at,
            60.0,
            where=[OutboxItem.channel == "test"],
            limit=limit,
            count_attempt=True,
        )
        await uow.commit()
    return ids


async def test_a_claimed_row_is_held_until_its_lease_ends_then_taken_over(
    services: Services,
) -> None:
    enterprise_id = await seed_enterprise(services)
    db = services.db
    ids = await _rows(db, enterprise_id, 3)
    first = await _claim(db, 2)
    assert first == ids[:2]
    assert await _claim(db, 2) == ids[2:]
    assert await _claim(db, 2) == []  # everything is held
    # The claimant died: once the lease is over the rows are due again.
    assert await _claim(db, 5, at=timedelta(seconds=61)) == ids
    async with db.unit_of_work() as uow:
        done = await QUEUE.settle(uow.session, OutboxItem.id == ids[0], OutboxStatus.DONE)
        retried = await QUEUE.settle(
            uow.session,
            OutboxItem.id == ids[1],
            OutboxStatus.PENDING,
            next_attempt_at=utcnow() + timedelta(hours=1),
        )
        await uow.commit()
    assert (done, retried) == (1, 1)
    assert await _claim(db, 5, at=timedelta(seconds=122)) == [ids[2]]
    async with db.unit_of_work(readonly=True) as uow:
        rows = await uow.session.execute(select(OutboxItem.id, OutboxItem.attempts))
        attempts = {row_id: tried for row_id, tried in rows}
    assert attempts == {ids[0]: 2, ids[1]: 2, ids[2]: 3}


@pytest.mark.parametrize(
    "database", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_claimants_in_parallel_never_take_the_same_row(services: Services) -> None:
    enterprise_id = await seed_enterprise(services)
    db = services.db
    ids = await _rows(db, enterprise_id, 40)
    claims = await asyncio.gather(*(_claim(db, 3) for _ in range(20)))
    taken = [row for claim in claims for row in claim]
    assert len(taken) == len(set(taken))
    assert sorted(taken) == ids
    async with db.unit_of_work(readonly=True) as uow:
        held = (
            await uow.session.execute(
                select(func.count())
                .select_from(OutboxItem)
                .where(OutboxItem.status == OutboxStatus.IN_PROGRESS)
            )
        ).scalar_one()
    assert held == 40

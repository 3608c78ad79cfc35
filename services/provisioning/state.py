"""The one owner of a user's provisioning status, and of what decides it.

A user's `provisioning_status` says how far Microsoft has caught up with the directory's record.
Only this module writes it, through the events below; it also owns the rule that says when
changes reach Microsoft without a manual sync, the outbox rows that wait for Microsoft, and the
life of a sync run: its creation (which takes those rows with it), planning and closing.

    event            from        to
    change_queued    any         pending (syncs automatically) or not_synced (it does not)
    run_attached     any         pending
    claimed          any         in_progress
    succeeded        any         provisioned
    failed           any         failed (with the reason)

A user who was changed again while a run worked on them settles as `change_queued`, not with
the run's outcome: the newer change still waits for Microsoft.

Kept free of the engine's imports: the journal and the views use it.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.domain import (
    NoticeKind,
    OutboxStatus,
    ProvisioningStatus,
    SyncStatus,
    syncs_automatically,
)
from services.models import (
    Enterprise,
    OutboxItem,
    ProvisioningItem,
    SyncNotice,
    SyncRun,
    User,
    utcnow,
)
from services.queue import UNFINISHED

if TYPE_CHECKING:
    from services.views import Actor

# One logger for the whole sync, named as it was before the package split.
logger = logging.getLogger("services.provisioning")

# The outbox channel the sync to Microsoft consumes.
MICROSOFT = "microsoft"

# A run that still has work ahead of it; at most one per enterprise (a unique index).
OPEN_RUN_STATUSES = tuple(status for status in SyncStatus if status.is_open)


class ProvisioningEvent(enum.StrEnum):
    """What happens to a user on the way to Microsoft."""

    CHANGE_QUEUED = "change_queued"
    RUN_ATTACHED = "run_attached"
    CLAIMED = "claimed"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


ANY = frozenset(ProvisioningStatus)


@dataclass(frozen=True)
class Transition:
    """Which states an event applies to, and where it leads (None: the enterprise decides)."""

    sources: frozenset[ProvisioningStatus]
    target: ProvisioningStatus | None


TRANSITIONS: dict[ProvisioningEvent, Transition] = {
    ProvisioningEvent.CHANGE_QUEUED: Transition(ANY, None),
    ProvisioningEvent.RUN_ATTACHED: Transition(ANY, ProvisioningStatus.PENDING),
    ProvisioningEvent.CLAIMED: Transition(ANY, ProvisioningStatus.IN_PROGRESS),
    ProvisioningEvent.SUCCEEDED: Transition(ANY, ProvisioningStatus.PROVISIONED),
    ProvisioningEvent.FAILED: Transition(ANY, ProvisioningStatus.FAILED),
}


class IllegalTransition(Exception):
    """An event that does not apply to the user's current status."""


# --- the rule: when changes reach Microsoft by themselves -----------------------------------------


def syncs_automatically_clause() -> ColumnElement[bool]:
    """`syncs_automatically` over the enterprises table, for queries."""
    return and_(
        Enterprise.sp_management_consent.is_(True),
        Enterprise.first_sync_completed_at.is_not(None),
    )


def waiting_status(enterprise: Enterprise) -> ProvisioningStatus:
    """How a change waits for Microsoft: pending when it syncs by itself, else not synced."""
    automatic = syncs_automatically(
        enterprise.sp_management_consent, enterprise.first_sync_completed_at
    )
    return ProvisioningStatus.PENDING if automatic else ProvisioningStatus.NOT_SYNCED


# --- transitions -----------------------------------------------------------------------------------


def next_status(
    current: ProvisioningStatus, event: ProvisioningEvent, enterprise: Enterprise
) -> ProvisioningStatus:
    """Where `event` moves a user in status `current`; IllegalTransition if it does not apply."""
    transition = TRANSITIONS[event]
    if current not in transition.sources:
        raise IllegalTransition(f"{event.value} does not apply to a user who is {current.value}")
    return transition.target or waiting_status(enterprise)


def change_queued(user: User, enterprise: Enterprise) -> None:
    """A change of the user was queued for Microsoft (in memory, in the change's transaction)."""
    current = user.provisioning_status or ProvisioningStatus.NOT_SYNCED
    status = next_status(current, ProvisioningEvent.CHANGE_QUEUED, enterprise)
    if user.provisioning_status is not status:
        user.provisioning_status = status
    if user.provisioning_error is not None:
        user.provisioning_error = None


async def move_users(
    session: AsyncSession,
    event: ProvisioningEvent,
    users: ColumnElement[bool],
    *,
    error: str | None = None,
    enterprise: Enterprise | None = None,
) -> None:
    """Apply an event to the users `users` selects, in one statement (`enterprise` is needed
    by the events whose target it decides)."""
    transition = TRANSITIONS[event]
    target = transition.target
    if target is None:
        if enterprise is None:
            raise IllegalTransition(f"{event.value} needs the user's enterprise")
        target = waiting_status(enterprise)
    values: dict[str, Any] = {"provisioning_status": target}
    if event is not ProvisioningEvent.CLAIMED:
        # Claiming keeps the reason of an earlier failure until the outcome replaces it.
        values["provisioning_error"] = error if event is ProvisioningEvent.FAILED else None
    condition = users
    if transition.sources != ANY:
        condition = and_(users, User.provisioning_status.in_(sorted(transition.sources)))
    await session.execute(
        update(User).where(condition).values(**values).execution_options(synchronize_session=False)
    )


async def settle_user(
    session: AsyncSession, user_id: int, enterprise_id: int, sync_id: int, error: str | None
) -> None:
    """A run finished with the user: provisioned, failed, or waiting again for a newer change."""
    newer = (
        await session.execute(
            select(OutboxItem.id)
            .where(
                OutboxItem.user_id == user_id,
                OutboxItem.channel == MICROSOFT,
                OutboxItem.status == OutboxStatus.PENDING,
                or_(OutboxItem.sync_id.is_(None), OutboxItem.sync_id != sync_id),
            )
            .limit(1)
        )
    ).first()
    if newer is not None:
        # A newer change waits for a sync: show that, not this run's outcome.
        enterprise = await session.get(Enterprise, enterprise_id)
        if enterprise is not None:
            await move_users(
                session,
                ProvisioningEvent.CHANGE_QUEUED,
                User.id == user_id,
                enterprise=enterprise,
            )
        return
    event = ProvisioningEvent.FAILED if error else ProvisioningEvent.SUCCEEDED
    await move_users(session, event, User.id == user_id, error=error)


# --- the outbox for Microsoft ----------------------------------------------------------------------


def waiting_for_microsoft(enterprise_id: int | None = None) -> ColumnElement[bool]:
    """Outbox rows for Microsoft that no run has taken yet (of one enterprise, if given)."""
    condition = and_(
        OutboxItem.channel == MICROSOFT,
        OutboxItem.status == OutboxStatus.PENDING,
        OutboxItem.sync_id.is_(None),
    )
    if enterprise_id is not None:
        condition = and_(OutboxItem.enterprise_id == enterprise_id, condition)
    return condition


def of_run(sync_id: int) -> ColumnElement[bool]:
    """Outbox rows for Microsoft that a run took."""
    return and_(OutboxItem.sync_id == sync_id, OutboxItem.channel == MICROSOFT)


def outbox_row_for_microsoft(
    enterprise_id: int, user_id: int, kind: str, payload: dict[str, Any]
) -> OutboxItem:
    """The outbox row that queues a change of a user for the sync to Microsoft."""
    return OutboxItem(
        enterprise_id=enterprise_id,
        user_id=user_id,
        channel=MICROSOFT,
        kind=kind,
        payload=payload,
    )


# --- runs ------------------------------------------------------------------------------------------


def is_open_run() -> ColumnElement[bool]:
    """A run that is requested or running."""
    return SyncRun.status.in_(OPEN_RUN_STATUSES)


async def open_run(session: AsyncSession, enterprise_id: int) -> SyncRun | None:
    """The enterprise's sync that is requested or running, if any."""
    return (
        await session.execute(
            select(SyncRun).where(SyncRun.enterprise_id == enterprise_id, is_open_run())
        )
    ).scalar_one_or_none()


async def start_run(
    session: AsyncSession,
    enterprise_id: int,
    *,
    is_first: bool,
    requested_by: str | None,
    hours: int,
) -> SyncRun | None:
    """Open a run that takes every change waiting for Microsoft; its users become pending.

    A run without a requester is automatic. None when another run opened meanwhile (the
    enterprise has at most one open run); the caller's transaction is then spent and must
    not be committed.
    """
    now = utcnow()
    run = SyncRun(
        enterprise_id=enterprise_id,
        status=SyncStatus.REQUESTED,
        is_first=is_first,
        is_automatic=requested_by is None,
        requested_by=requested_by,
        requested_at=now,
        expected_by=now + timedelta(hours=hours),
    )
    session.add(run)
    try:
        await session.flush()
    except IntegrityError:
        return None
    waiting = waiting_for_microsoft(enterprise_id)
    await move_users(
        session,
        ProvisioningEvent.RUN_ATTACHED,
        and_(
            User.enterprise_id == enterprise_id,
            User.id.in_(select(OutboxItem.user_id).where(waiting).scalar_subquery()),
        ),
    )
    await session.execute(update(OutboxItem).where(waiting).values(sync_id=run.id))
    return run


def run_planned(run: SyncRun) -> None:
    """The run's changes became items: it is running."""
    run.status = SyncStatus.RUNNING


async def lock_run(session: AsyncSession, sync_id: int) -> SyncRun | None:
    """The run, locked on PostgreSQL: finishing items of one run take turns, so the last one
    closes it."""
    postgres = session.get_bind().dialect.name == "postgresql"
    return await session.get(SyncRun, sync_id, with_for_update=postgres)


async def work_left(session: AsyncSession, sync_id: int) -> int:
    """How many of the run's items are still waiting or held."""
    return int(
        (
            await session.execute(
                select(func.count())
                .select_from(ProvisioningItem)
                .where(ProvisioningItem.sync_id == sync_id, ProvisioningItem.status.in_(UNFINISHED))
            )
        ).scalar_one()
    )


async def close_run(session: AsyncSession, run: SyncRun) -> None:
    """Every item is finished: settle the run's outbox rows, record the outcome (and a first
    sync's completion), and queue the notice that tells the admins."""
    now = utcnow()
    failed_items = and_(
        ProvisioningItem.sync_id == run.id, ProvisioningItem.status == OutboxStatus.FAILED
    )
    failed = int(
        (
            await session.execute(
                select(func.count()).select_from(ProvisioningItem).where(failed_items)
            )
        ).scalar_one()
    )
    mine = of_run(run.id)
    await session.execute(
        update(OutboxItem)
        .where(mine, OutboxItem.status != OutboxStatus.DONE)
        .values(status=OutboxStatus.DONE)
    )
    if failed:
        failed_users = (
            select(ProvisioningItem.user_id)
            .where(failed_items, ProvisioningItem.user_id.is_not(None))
            .scalar_subquery()
        )
        await session.execute(
            update(OutboxItem)
            .where(mine, OutboxItem.user_id.in_(failed_users))
            .values(status=OutboxStatus.FAILED)
        )
    run.status = SyncStatus.PARTIALLY_FAILED if failed else SyncStatus.SUCCEEDED
    run.finished_at = now
    if run.is_first:
        enterprise = await session.get(Enterprise, run.enterprise_id)
        if enterprise is not None and enterprise.first_sync_completed_at is None:
            enterprise.first_sync_completed_at = now
    session.add(SyncNotice(sync_id=run.id, kind=NoticeKind.SYNC_FINISHED))
    await session.flush()
    logger.info(
        "Sync %s of enterprise %s finished: %s", run.id, run.enterprise_id, run.status.value
    )


# --- notices about the enterprise itself -----------------------------------------------------------


def consent_changed(
    session: AsyncSession, enterprise: Enterprise, actor: Actor, *, before: bool
) -> None:
    """Queue the notice that tells the provider's admins an enterprise allowed or withdrew
    management by the service provider (in the change's transaction)."""
    session.add(
        SyncNotice(
            sync_id=None,
            enterprise_id=enterprise.id,
            kind=NoticeKind.CONSENT_CHANGED,
            detail={
                "consent": bool(enterprise.sp_management_consent),
                "before": before,
                "by": actor.display_name or actor.aad_object_id,
                "role": actor.role.value,
            },
        )
    )

"""The "Sync Teams Users" engine: the directory's changes reach Microsoft, user by user.

A sync run gathers the outbox rows waiting for Microsoft; planning turns them into one
provisioning item per user. Each item is a small state machine (Entra user, licence, number,
policy, verify, notify) whose progress is written after every step, so a restarted worker
resumes where the last one stopped, and every step looks before it changes anything.

Workers claim items with `FOR UPDATE SKIP LOCKED` on PostgreSQL (any number of processes
share a run) and hold them under a lease; SQLite runs one worker in-process. Each tenant has
its own lane: its own concurrency and its own Graph write budget, so one slow or throttled
tenant never holds up another.

Run with `python -m services.provisioning` to work outside the bot process.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import os
import random
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services import journal
from services.config import Settings
from services.db import Database
from services.enterprises import enterprise_view
from services.graph import (
    VOICE_ROUTING_POLICY_TYPE,
    EntraUser,
    GraphError,
    GraphOperations,
    GraphService,
    TeamsUser,
)
from services.models import (
    Enterprise,
    Extension,
    LicenceProduct,
    NoticeKind,
    OutboxItem,
    OutboxStatus,
    PhoneNumber,
    ProvisioningAction,
    ProvisioningItem,
    ProvisioningStatus,
    ProvisioningStep,
    SyncNotice,
    SyncRun,
    SyncStatus,
    User,
    utcnow,
)
from services.passwords import PasswordVault, generate_password
from services.phone import pretty
from services.sync import run_view
from services.views import EnterpriseView, SyncRunView

logger = logging.getLogger(__name__)

OPEN_RUN_STATUSES = (SyncStatus.REQUESTED, SyncStatus.RUNNING)
WORK_LEFT = (OutboxStatus.PENDING, OutboxStatus.IN_PROGRESS)
MAX_REPORTED_FAILURES = 25
NEW_SETUP_KINDS = frozenset({"user.create", "user.licence"})

STEP_LABELS: dict[ProvisioningStep, str] = {
    ProvisioningStep.ENTRA_USER: "Setting up the Microsoft 365 account",
    ProvisioningStep.LICENCE: "Assigning the Teams Phone licence",
    ProvisioningStep.NUMBER: "Assigning the phone number",
    ProvisioningStep.POLICY: "Assigning the voice routing policy",
    ProvisioningStep.VERIFY: "Checking the user's Teams configuration",
    ProvisioningStep.NOTIFY: "Sending the e-mail",
    ProvisioningStep.DONE: "Finishing",
}
NEXT_STEP: dict[ProvisioningStep, ProvisioningStep] = {
    ProvisioningStep.ENTRA_USER: ProvisioningStep.LICENCE,
    ProvisioningStep.LICENCE: ProvisioningStep.NUMBER,
    ProvisioningStep.NUMBER: ProvisioningStep.POLICY,
    ProvisioningStep.POLICY: ProvisioningStep.VERIFY,
    ProvisioningStep.VERIFY: ProvisioningStep.NOTIFY,
    ProvisioningStep.NOTIFY: ProvisioningStep.DONE,
}


class LeaseLost(Exception):
    """Another worker took the item over (our lease ran out): stop working on it."""


class StepAgain(GraphError):
    """Try the item again later, from an earlier step (Graph's state moved under us)."""

    def __init__(self, message: str, step: ProvisioningStep) -> None:
        super().__init__(message, status=0)
        self.step = step


# --- what the bot shows ----------------------------------------------------------------------


@dataclass(frozen=True)
class SyncFailure:
    """One user the sync could not set up, and why."""

    display_name: str
    email: str
    reason: str


@dataclass(frozen=True)
class SyncReport:
    """A sync run's outcome: counts and the failures with their reasons."""

    run: SyncRunView
    enterprise: EnterpriseView
    total: int
    provisioned: int
    failed: int
    waiting: int
    failures: list[SyncFailure] = field(default_factory=list)

    @property
    def duration_seconds(self) -> float | None:
        """How long the run took, once it finished."""
        if self.run.finished_at is None:
            return None
        return max(0.0, (self.run.finished_at - self.run.requested_at).total_seconds())


@dataclass(frozen=True)
class Notice:
    """A proactive message to send: what happened, about which run, whom it reached."""

    id: int
    kind: NoticeKind
    report: SyncReport
    delivered_to: frozenset[str]
    attempts: int


async def sync_report(session: AsyncSession, sync_id: int) -> SyncReport:
    """The outcome of a run, as the proactive cards show it."""
    run = await session.get(SyncRun, sync_id)
    if run is None:
        raise LookupError(f"no sync run {sync_id}")
    enterprise = await session.get(Enterprise, run.enterprise_id)
    assert enterprise is not None
    counts: dict[OutboxStatus, int] = dict.fromkeys(OutboxStatus, 0)
    for status, count in await session.execute(
        select(ProvisioningItem.status, func.count())
        .where(ProvisioningItem.sync_id == sync_id)
        .group_by(ProvisioningItem.status)
    ):
        counts[status] = int(count)
    failed_rows = await session.execute(
        select(ProvisioningItem.payload, ProvisioningItem.last_error, User.display_name, User.email)
        .outerjoin(User, User.id == ProvisioningItem.user_id)
        .where(
            ProvisioningItem.sync_id == sync_id,
            ProvisioningItem.status == OutboxStatus.FAILED,
        )
        .order_by(User.display_name, ProvisioningItem.id)
        .limit(MAX_REPORTED_FAILURES)
    )
    failures = [
        SyncFailure(
            display_name=name or str(payload.get("display_name") or payload.get("email") or ""),
            email=email or str(payload.get("email") or ""),
            reason=error or "Microsoft refused the change.",
        )
        for payload, error, name, email in failed_rows
    ]
    return SyncReport(
        run=run_view(run),
        enterprise=enterprise_view(enterprise),
        total=sum(counts.values()),
        provisioned=counts[OutboxStatus.DONE],
        failed=counts[OutboxStatus.FAILED],
        waiting=counts[OutboxStatus.PENDING] + counts[OutboxStatus.IN_PROGRESS],
        failures=failures,
    )


class SyncNotices:
    """The proactive messages waiting to go out, for the bot's notifier to send."""

    def __init__(self, db: Database, *, lease_seconds: float = 60.0) -> None:
        self.db = db
        self.lease_seconds = lease_seconds

    async def due(self, limit: int = 20) -> list[Notice]:
        """Claim the notices due now; another claimant sees them again after the lease."""
        now = utcnow()
        async with self.db.unit_of_work() as uow:
            session = uow.session
            query = (
                select(SyncNotice)
                .where(
                    SyncNotice.status == OutboxStatus.PENDING,
                    SyncNotice.next_attempt_at <= now,
                )
                .order_by(SyncNotice.next_attempt_at, SyncNotice.id)
                .limit(limit)
            )
            if self.db.is_postgres:
                query = query.with_for_update(skip_locked=True)
            rows = list((await session.execute(query)).scalars())
            notices = []
            for row in rows:
                row.attempts += 1
                row.next_attempt_at = now + timedelta(seconds=self.lease_seconds)
                notices.append(
                    Notice(
                        id=row.id,
                        kind=row.kind,
                        report=await sync_report(session, row.sync_id),
                        delivered_to=frozenset(row.delivered_to or []),
                        attempts=row.attempts,
                    )
                )
            await uow.commit()
            return notices

    async def delivered(self, notice_id: int, recipient: str) -> None:
        """Remember that one recipient has the message, so a retry skips them."""
        async with self.db.unit_of_work() as uow:
            row = await uow.session.get(SyncNotice, notice_id)
            if row is not None and recipient not in (row.delivered_to or []):
                row.delivered_to = [*(row.delivered_to or []), recipient]
                await uow.commit()

    async def done(self, notice_id: int, error: str | None = None) -> None:
        """Every recipient was reached (or cannot be): the notice is finished."""
        async with self.db.unit_of_work() as uow:
            row = await uow.session.get(SyncNotice, notice_id)
            if row is not None:
                row.status = OutboxStatus.FAILED if error else OutboxStatus.DONE
                row.last_error = error
                row.sent_at = utcnow()
                await uow.commit()

    async def retry(self, notice_id: int, error: str, delay_seconds: float) -> None:
        """Try the recipients not reached yet again later."""
        async with self.db.unit_of_work() as uow:
            row = await uow.session.get(SyncNotice, notice_id)
            if row is not None:
                row.last_error = error
                row.next_attempt_at = utcnow() + timedelta(seconds=delay_seconds)
                await uow.commit()

    async def report(self, sync_id: int) -> SyncReport:
        """The outcome of one run."""
        async with self.db.unit_of_work(readonly=True) as uow:
            return await sync_report(uow.session, sync_id)


# --- the work of one item --------------------------------------------------------------------


@dataclass(frozen=True)
class _Claimed:
    """An item this worker holds, with what it needs from its enterprise."""

    item_id: int
    sync_id: int
    enterprise_id: int
    tenant_id: str
    region: str
    main_number: str
    user_id: int | None
    action: ProvisioningAction
    kinds: frozenset[str]
    payload: dict[str, Any]
    step: ProvisioningStep
    attempts: int
    entra_created: bool


@dataclass(frozen=True)
class _Person:
    """The directory's record of the user, as it stood when the item was picked up."""

    display_name: str
    email: str
    licence: LicenceProduct | None
    number: str | None
    extension: int | None
    entra_object_id: str | None
    password_ciphertext: str | None
    send_password_email: bool
    notify_user: bool


@dataclass
class _Work:
    """One item being worked on, and what this worker learnt from Graph so far."""

    claimed: _Claimed
    person: _Person | None
    ops: GraphOperations
    entra: EntraUser | None = None
    teams: TeamsUser | None = None
    entra_created: bool = False

    @property
    def entra_id(self) -> str:
        """The Entra object id of the user (known after the first step)."""
        if self.entra is None:
            raise RuntimeError("the Entra user is not known yet")
        return self.entra.id


@dataclass
class _Lane:
    """A tenant's share of this worker: how many of its items run at once."""

    capacity: int
    active: int = 0

    @property
    def free(self) -> int:
        """Items this lane can take on now."""
        return max(0, self.capacity - self.active)


def line_uri(person: _Person, main_number: str) -> str | None:
    """The number Teams should ring: the DDI, or the main number with the extension."""
    if person.licence is None:
        return None
    if person.number:
        return person.number
    if person.extension is not None:
        return f"{main_number};ext={person.extension}"
    return None


def _display_line(line: str) -> str:
    base, _, extension = line.partition(";ext=")
    shown = pretty(base)
    return f"{shown} extension {extension}" if extension else shown


class ProvisioningEngine:
    """One worker of the sync: plans runs, claims items, drives them through Graph."""

    def __init__(
        self,
        db: Database,
        vault: PasswordVault,
        graph: GraphService | None,
        settings: Settings,
        *,
        worker_id: str | None = None,
        on_notice: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.vault = vault
        self.graph = graph
        self.settings = settings
        self.sync = settings.sync
        self.graph_settings = settings.graph
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.on_notice = on_notice
        self._lanes: dict[int, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._last_overdue_check = 0.0
        self.items_handled = 0

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start working in the background."""
        self._stopping.clear()
        self._loop_task = asyncio.create_task(self._run(), name=f"sync-worker {self.worker_id}")
        self._heartbeat_task = asyncio.create_task(self._heartbeat(), name="sync-heartbeat")
        logger.info("Sync worker %s started", self.worker_id)

    async def stop(self) -> None:
        """Stop, and hand back the items in hand so the next worker starts on them at once."""
        self._stopping.set()
        self._wake.set()
        for task in (self._loop_task, self._heartbeat_task, *self._tasks):
            if task is not None:
                task.cancel()
        for task in (self._loop_task, self._heartbeat_task, *list(self._tasks)):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await self._release_leases()
        logger.info("Sync worker %s stopped", self.worker_id)

    def wake(self) -> None:
        """Look for work now rather than at the next poll."""
        self._wake.set()

    @property
    def busy(self) -> int:
        """Items being worked on right now."""
        return len(self._tasks)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("The sync worker's pass failed; it will try again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.sync.poll_seconds)
            self._wake.clear()

    async def _heartbeat(self) -> None:
        interval = max(0.05, self.sync.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            if not self._tasks:
                continue
            try:
                async with self.db.unit_of_work() as uow:
                    await uow.session.execute(
                        update(ProvisioningItem)
                        .where(
                            ProvisioningItem.lease_owner == self.worker_id,
                            ProvisioningItem.status == OutboxStatus.IN_PROGRESS,
                        )
                        .values(lease_expires_at=self._lease_end())
                    )
                    await uow.commit()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Could not renew the sync worker's leases")

    def _lease_end(self) -> datetime:
        return utcnow() + timedelta(seconds=self.sync.lease_seconds)

    async def _release_leases(self) -> None:
        async with self.db.unit_of_work() as uow:
            await uow.session.execute(
                update(ProvisioningItem)
                .where(
                    ProvisioningItem.lease_owner == self.worker_id,
                    ProvisioningItem.status == OutboxStatus.IN_PROGRESS,
                )
                .values(status=OutboxStatus.PENDING, lease_owner=None, lease_expires_at=None)
            )
            await uow.commit()

    # --- one pass --------------------------------------------------------------------------

    async def tick(self) -> int:
        """One pass: overdue runs, automatic runs, planning, claiming. Returns items started."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_overdue_check >= self.sync.overdue_check_seconds:
            self._last_overdue_check = loop.time()
            await self.check_overdue()
        await self.start_automatic_runs()
        if self.graph is None:
            return 0  # nothing can reach Microsoft: runs wait, and become overdue
        while await self.plan_next_run():
            pass
        await self.close_finished_runs()
        return await self._claim_and_start()

    async def check_overdue(self) -> int:
        """Mark open runs past their promised time and queue a notice to the providers."""
        now = utcnow()
        async with self.db.unit_of_work() as uow:
            query = select(SyncRun).where(
                SyncRun.status.in_(OPEN_RUN_STATUSES),
                SyncRun.expected_by < now,
                SyncRun.overdue_notified_at.is_(None),
            )
            if self.db.is_postgres:
                query = query.with_for_update(skip_locked=True)
            runs = list((await uow.session.execute(query)).scalars())
            for run in runs:
                run.overdue_notified_at = now
                uow.session.add(SyncNotice(sync_id=run.id, kind=NoticeKind.SYNC_OVERDUE))
                logger.warning(
                    "Sync %s of enterprise %s is overdue (expected by %s)",
                    run.id,
                    run.enterprise_id,
                    run.expected_by.isoformat(),
                )
            await uow.commit()
        if runs:
            self._announce()
        return len(runs)

    async def start_automatic_runs(self) -> int:
        """Start a run for each consenting enterprise whose first sync is done and has changes."""
        waiting = (
            select(OutboxItem.enterprise_id)
            .join(Enterprise, Enterprise.id == OutboxItem.enterprise_id)
            .where(
                OutboxItem.channel == journal.MICROSOFT,
                OutboxItem.status == OutboxStatus.PENDING,
                OutboxItem.sync_id.is_(None),
                Enterprise.sp_management_consent.is_(True),
                Enterprise.first_sync_completed_at.is_not(None),
                ~exists().where(
                    SyncRun.enterprise_id == OutboxItem.enterprise_id,
                    SyncRun.status.in_(OPEN_RUN_STATUSES),
                ),
            )
            .distinct()
        )
        async with self.db.unit_of_work(readonly=True) as uow:
            enterprise_ids = list((await uow.session.execute(waiting)).scalars())
        started = 0
        for enterprise_id in enterprise_ids:
            if await self._start_automatic_run(enterprise_id):
                started += 1
        return started

    async def _start_automatic_run(self, enterprise_id: int) -> bool:
        now = utcnow()
        async with self.db.unit_of_work() as uow:
            session = uow.session
            run = SyncRun(
                enterprise_id=enterprise_id,
                status=SyncStatus.REQUESTED,
                is_first=False,
                is_automatic=True,
                requested_by=None,
                requested_at=now,
                expected_by=now + timedelta(hours=self.settings.later_sync_hours),
            )
            session.add(run)
            try:
                await session.flush()
            except IntegrityError:
                return False  # a run opened meanwhile; the changes wait for the next one
            waiting = and_(
                OutboxItem.enterprise_id == enterprise_id,
                OutboxItem.channel == journal.MICROSOFT,
                OutboxItem.status == OutboxStatus.PENDING,
                OutboxItem.sync_id.is_(None),
            )
            await session.execute(
                update(User)
                .where(
                    User.enterprise_id == enterprise_id,
                    User.id.in_(select(OutboxItem.user_id).where(waiting).scalar_subquery()),
                )
                .values(provisioning_status=ProvisioningStatus.PENDING, provisioning_error=None)
                .execution_options(synchronize_session=False)
            )
            await session.execute(update(OutboxItem).where(waiting).values(sync_id=run.id))
            await uow.commit()
            logger.info("Automatic sync %s started for enterprise %s", run.id, enterprise_id)
            return True

    async def plan_next_run(self) -> bool:
        """Turn the oldest requested run into items, one per user; False when none waits."""
        async with self.db.unit_of_work() as uow:
            session = uow.session
            query = (
                select(SyncRun)
                .where(SyncRun.status == SyncStatus.REQUESTED)
                .order_by(SyncRun.requested_at, SyncRun.id)
                .limit(1)
            )
            if self.db.is_postgres:
                query = query.with_for_update(skip_locked=True)
            run = (await session.execute(query)).scalar_one_or_none()
            if run is None:
                return False
            await self._plan(session, run)
            await uow.commit()
        self._announce_if_closed(run)
        return True

    async def _plan(self, session: AsyncSession, run: SyncRun) -> None:
        rows = list(
            (
                await session.execute(
                    select(OutboxItem)
                    .where(
                        OutboxItem.sync_id == run.id,
                        OutboxItem.channel == journal.MICROSOFT,
                        OutboxItem.status == OutboxStatus.PENDING,
                    )
                    .order_by(OutboxItem.id)
                )
            ).scalars()
        )
        per_user: dict[int, ProvisioningItem] = {}
        items: list[ProvisioningItem] = []
        for row in rows:
            row.status = OutboxStatus.IN_PROGRESS
            if row.user_id is None:
                if row.kind == "user.remove":
                    items.append(
                        ProvisioningItem(
                            sync_id=run.id,
                            enterprise_id=run.enterprise_id,
                            user_id=None,
                            action=ProvisioningAction.REMOVE,
                            kinds=[row.kind],
                            payload=dict(row.payload or {}),
                        )
                    )
                else:
                    row.status = OutboxStatus.DONE  # the user is gone: nothing to set up
                continue
            item = per_user.get(row.user_id)
            if item is None:
                item = per_user[row.user_id] = ProvisioningItem(
                    sync_id=run.id,
                    enterprise_id=run.enterprise_id,
                    user_id=row.user_id,
                    action=ProvisioningAction.PROVISION,
                    kinds=[],
                    payload={"fields": []},
                )
                items.append(item)
            if row.kind not in item.kinds:
                item.kinds = [*item.kinds, row.kind]
            fields = (row.payload or {}).get("fields") or []
            item.payload = {"fields": sorted({*item.payload.get("fields", []), *map(str, fields)})}
        if not run.is_automatic:
            # A manual sync also retries the users an earlier run could not set up.
            failed = await session.execute(
                select(User.id).where(
                    User.enterprise_id == run.enterprise_id,
                    User.provisioning_status == ProvisioningStatus.FAILED,
                )
            )
            for user_id in failed.scalars():
                if user_id not in per_user:
                    per_user[user_id] = ProvisioningItem(
                        sync_id=run.id,
                        enterprise_id=run.enterprise_id,
                        user_id=user_id,
                        action=ProvisioningAction.PROVISION,
                        kinds=["retry"],
                        payload={"fields": []},
                    )
                    items.append(per_user[user_id])
        session.add_all(items)
        if per_user:
            await session.execute(
                update(User)
                .where(User.id.in_(list(per_user)))
                .values(provisioning_status=ProvisioningStatus.PENDING, provisioning_error=None)
                .execution_options(synchronize_session=False)
            )
        run.status = SyncStatus.RUNNING
        await session.flush()
        logger.info(
            "Sync %s of enterprise %s planned: %d items from %d changes",
            run.id,
            run.enterprise_id,
            len(items),
            len(rows),
        )
        if not items:
            await self._close_run(session, run)

    async def close_finished_runs(self) -> int:
        """Close running runs with no work left (a safety net for concurrent finishes)."""
        left = exists().where(
            ProvisioningItem.sync_id == SyncRun.id, ProvisioningItem.status.in_(WORK_LEFT)
        )
        async with self.db.unit_of_work(readonly=True) as uow:
            ids = list(
                (
                    await uow.session.execute(
                        select(SyncRun.id).where(SyncRun.status == SyncStatus.RUNNING, ~left)
                    )
                ).scalars()
            )
        closed = 0
        for sync_id in ids:
            async with self.db.unit_of_work() as uow:
                run = await self._lock_run(uow.session, sync_id)
                if run is None or run.status is not SyncStatus.RUNNING:
                    continue
                if await self._work_left(uow.session, sync_id):
                    continue
                await self._close_run(uow.session, run)
                await uow.commit()
                closed += 1
        if closed:
            self._announce()
        return closed

    async def _lock_run(self, session: AsyncSession, sync_id: int) -> SyncRun | None:
        # On PostgreSQL, finishing items of one run take turns, so the last one closes it.
        return await session.get(SyncRun, sync_id, with_for_update=self.db.is_postgres)

    @staticmethod
    async def _work_left(session: AsyncSession, sync_id: int) -> int:
        return int(
            (
                await session.execute(
                    select(func.count())
                    .select_from(ProvisioningItem)
                    .where(
                        ProvisioningItem.sync_id == sync_id,
                        ProvisioningItem.status.in_(WORK_LEFT),
                    )
                )
            ).scalar_one()
        )

    async def _close_run(self, session: AsyncSession, run: SyncRun) -> None:
        now = utcnow()
        failed_users = (
            select(ProvisioningItem.user_id)
            .where(
                ProvisioningItem.sync_id == run.id,
                ProvisioningItem.status == OutboxStatus.FAILED,
                ProvisioningItem.user_id.is_not(None),
            )
            .scalar_subquery()
        )
        failed = int(
            (
                await session.execute(
                    select(func.count())
                    .select_from(ProvisioningItem)
                    .where(
                        ProvisioningItem.sync_id == run.id,
                        ProvisioningItem.status == OutboxStatus.FAILED,
                    )
                )
            ).scalar_one()
        )
        mine = and_(OutboxItem.sync_id == run.id, OutboxItem.channel == journal.MICROSOFT)
        await session.execute(
            update(OutboxItem)
            .where(mine, OutboxItem.status != OutboxStatus.DONE)
            .values(status=OutboxStatus.DONE)
        )
        if failed:
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

    def _announce(self) -> None:
        if self.on_notice is not None:
            self.on_notice()

    def _announce_if_closed(self, run: SyncRun) -> None:
        if run.status not in OPEN_RUN_STATUSES:
            self._announce()

    # --- claiming ----------------------------------------------------------------------------

    def _workable(self, now: datetime) -> Any:
        return or_(
            and_(
                ProvisioningItem.status == OutboxStatus.PENDING,
                ProvisioningItem.next_attempt_at <= now,
            ),
            and_(
                ProvisioningItem.status == OutboxStatus.IN_PROGRESS,
                ProvisioningItem.lease_expires_at < now,
            ),
        )

    async def _claim_and_start(self) -> int:
        now = utcnow()
        async with self.db.unit_of_work(readonly=True) as uow:
            due = list(
                await uow.session.execute(
                    select(ProvisioningItem.enterprise_id).where(self._workable(now)).distinct()
                )
            )
        started = 0
        enterprise_ids = [row[0] for row in due]
        random.shuffle(enterprise_ids)  # no tenant always first in line
        for enterprise_id in enterprise_ids:
            lane = self._lanes.setdefault(enterprise_id, _Lane(self.sync.tenant_concurrency))
            if lane.free <= 0:
                continue
            for claimed in await self._claim(enterprise_id, lane.free, now):
                lane.active += 1
                task = asyncio.create_task(self._work_on(claimed, lane))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                started += 1
        return started

    async def _claim(self, enterprise_id: int, limit: int, now: datetime) -> list[_Claimed]:
        async with self.db.unit_of_work() as uow:
            session = uow.session
            query = (
                select(ProvisioningItem.id)
                .where(ProvisioningItem.enterprise_id == enterprise_id, self._workable(now))
                .order_by(ProvisioningItem.next_attempt_at, ProvisioningItem.id)
                .limit(limit)
            )
            if self.db.is_postgres:
                query = query.with_for_update(skip_locked=True)
            ids = list((await session.execute(query)).scalars())
            if not ids:
                return []
            await session.execute(
                update(ProvisioningItem)
                .where(ProvisioningItem.id.in_(ids))
                .values(
                    status=OutboxStatus.IN_PROGRESS,
                    lease_owner=self.worker_id,
                    lease_expires_at=self._lease_end(),
                )
            )
            rows = await session.execute(
                select(ProvisioningItem, Enterprise)
                .join(Enterprise, Enterprise.id == ProvisioningItem.enterprise_id)
                .where(ProvisioningItem.id.in_(ids))
            )
            claimed = [
                _Claimed(
                    item_id=item.id,
                    sync_id=item.sync_id,
                    enterprise_id=item.enterprise_id,
                    tenant_id=enterprise.tenant_id,
                    region=enterprise.region,
                    main_number=enterprise.main_number,
                    user_id=item.user_id,
                    action=item.action,
                    kinds=frozenset(item.kinds or []),
                    payload=dict(item.payload or {}),
                    step=item.step,
                    attempts=item.attempts,
                    entra_created=item.entra_created,
                )
                for item, enterprise in rows
            ]
            user_ids = [c.user_id for c in claimed if c.user_id is not None]
            if user_ids:
                await session.execute(
                    update(User)
                    .where(User.id.in_(user_ids))
                    .values(provisioning_status=ProvisioningStatus.IN_PROGRESS)
                    .execution_options(synchronize_session=False)
                )
            await uow.commit()
            return claimed

    # --- working on one item -----------------------------------------------------------------

    async def _work_on(self, claimed: _Claimed, lane: _Lane) -> None:
        step = claimed.step
        try:
            assert self.graph is not None
            ops = GraphOperations(
                self.graph.tenant(claimed.tenant_id),
                poll_seconds=self.graph_settings.operation_poll_seconds,
                operation_timeout=self.graph_settings.operation_timeout_seconds,
            )
            work = _Work(claimed, await self._person(claimed), ops)
            work.entra_created = claimed.entra_created
            if claimed.action is ProvisioningAction.REMOVE:
                await self._remove(work)
                await self._finish(claimed, error=None)
                return
            if work.person is None:
                await self._finish(claimed, error=None)  # removed meanwhile: nothing to set up
                return
            while step is not ProvisioningStep.DONE:
                following = await self._do_step(work, step)
                await self._advance(work, following)
                step = following
            await self._finish(claimed, error=None)
        except LeaseLost:
            logger.info("Item %s was taken over by another worker", claimed.item_id)
        except asyncio.CancelledError:
            raise
        except StepAgain as error:
            await self._settle_failure(claimed, error.step, error)
        except GraphError as error:
            await self._settle_failure(claimed, step, error)
        except Exception:
            logger.exception("Item %s failed unexpectedly at %s", claimed.item_id, step.value)
            await self._settle_failure(
                claimed,
                step,
                GraphError(
                    "Something went wrong on our side; Switchboard will try again.", status=0
                ),
            )
        finally:
            lane.active -= 1
            self.items_handled += 1
            self._wake.set()

    async def _settle_failure(
        self, claimed: _Claimed, step: ProvisioningStep, error: GraphError
    ) -> None:
        reason = f"{STEP_LABELS[step]}: {error.message}"
        attempts = claimed.attempts + 1
        try:
            if error.transient and attempts < self.sync.max_attempts:
                await self._retry_later(claimed, step, attempts, reason)
            else:
                await self._finish(claimed, error=reason)
        except LeaseLost:
            logger.info("Item %s was taken over by another worker", claimed.item_id)
        except Exception:
            # The lease runs out and the item is picked up again: nothing is lost.
            logger.exception("Could not record the outcome of item %s", claimed.item_id)

    async def _person(self, claimed: _Claimed) -> _Person | None:
        if claimed.user_id is None:
            return None
        async with self.db.unit_of_work(readonly=True) as uow:
            row = (
                await uow.session.execute(
                    select(User, PhoneNumber.e164, Extension.number)
                    .outerjoin(PhoneNumber, PhoneNumber.user_id == User.id)
                    .outerjoin(Extension, Extension.user_id == User.id)
                    .where(User.id == claimed.user_id)
                )
            ).first()
            if row is None:
                return None
            user, number, extension = row
            return _Person(
                display_name=user.display_name,
                email=user.email,
                licence=user.licence,
                number=number,
                extension=extension,
                entra_object_id=user.entra_object_id,
                password_ciphertext=user.password_ciphertext,
                send_password_email=user.send_password_email,
                notify_user=user.notify_user,
            )

    async def _advance(self, work: _Work, step: ProvisioningStep) -> None:
        """Record that the item reached `step` (only while we still hold it)."""
        claimed = work.claimed
        async with self.db.unit_of_work() as uow:
            result = await uow.session.execute(
                update(ProvisioningItem)
                .where(
                    ProvisioningItem.id == claimed.item_id,
                    ProvisioningItem.lease_owner == self.worker_id,
                    ProvisioningItem.status == OutboxStatus.IN_PROGRESS,
                )
                .values(
                    step=step,
                    entra_created=work.entra_created,
                    lease_expires_at=self._lease_end(),
                )
            )
            if not getattr(result, "rowcount", 0):
                raise LeaseLost()
            if work.entra is not None and claimed.user_id is not None:
                await uow.session.execute(
                    update(User)
                    .where(User.id == claimed.user_id)
                    .values(entra_object_id=work.entra.id)
                    .execution_options(synchronize_session=False)
                )
            await uow.commit()

    async def _retry_later(
        self, claimed: _Claimed, step: ProvisioningStep, attempts: int, reason: str
    ) -> None:
        delay = min(
            self.sync.retry_max_seconds, self.sync.retry_base_seconds * (2.0 ** (attempts - 1))
        ) * random.uniform(0.75, 1.25)
        async with self.db.unit_of_work() as uow:
            result = await uow.session.execute(
                update(ProvisioningItem)
                .where(
                    ProvisioningItem.id == claimed.item_id,
                    ProvisioningItem.lease_owner == self.worker_id,
                    ProvisioningItem.status == OutboxStatus.IN_PROGRESS,
                )
                .values(
                    status=OutboxStatus.PENDING,
                    step=step,
                    attempts=attempts,
                    next_attempt_at=utcnow() + timedelta(seconds=delay),
                    last_error=reason,
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )
            if not getattr(result, "rowcount", 0):
                raise LeaseLost()
            await uow.commit()
        logger.info(
            "Item %s: attempt %d failed at %s; next try in %.1fs",
            claimed.item_id,
            attempts,
            step.value,
            delay,
        )

    async def _finish(self, claimed: _Claimed, *, error: str | None) -> None:
        """Close the item (done, or failed with the reason) and, if it was the last, its run."""
        now = utcnow()
        async with self.db.unit_of_work() as uow:
            session = uow.session
            run = await self._lock_run(session, claimed.sync_id)
            values: dict[str, Any] = {
                "status": OutboxStatus.FAILED if error else OutboxStatus.DONE,
                "last_error": error,
                "finished_at": now,
                "finished_by": self.worker_id,
                "lease_expires_at": None,
            }
            if error is None:
                values["step"] = ProvisioningStep.DONE
            result = await session.execute(
                update(ProvisioningItem)
                .where(
                    ProvisioningItem.id == claimed.item_id,
                    ProvisioningItem.lease_owner == self.worker_id,
                    ProvisioningItem.status == OutboxStatus.IN_PROGRESS,
                )
                .values(**values)
            )
            if not getattr(result, "rowcount", 0):
                raise LeaseLost()
            if claimed.user_id is not None:
                await self._settle_user(session, claimed, error)
            closed = False
            if (
                run is not None
                and run.status is SyncStatus.RUNNING
                and not await self._work_left(session, claimed.sync_id)
            ):
                await self._close_run(session, run)
                closed = True
            await uow.commit()
        if closed:
            self._announce()

    async def _settle_user(
        self, session: AsyncSession, claimed: _Claimed, error: str | None
    ) -> None:
        user_id = claimed.user_id
        waiting = (
            await session.execute(
                select(OutboxItem.id)
                .where(
                    OutboxItem.user_id == user_id,
                    OutboxItem.channel == journal.MICROSOFT,
                    OutboxItem.status == OutboxStatus.PENDING,
                    or_(OutboxItem.sync_id.is_(None), OutboxItem.sync_id != claimed.sync_id),
                )
                .limit(1)
            )
        ).first()
        values: dict[str, Any]
        if waiting is not None:
            # A newer change waits for a sync: show that, not this run's outcome.
            enterprise = await session.get(Enterprise, claimed.enterprise_id)
            automatic = bool(
                enterprise
                and enterprise.sp_management_consent
                and enterprise.first_sync_completed_at is not None
            )
            values = {
                "provisioning_status": ProvisioningStatus.PENDING
                if automatic
                else ProvisioningStatus.NOT_SYNCED,
                "provisioning_error": None,
            }
        elif error:
            values = {"provisioning_status": ProvisioningStatus.FAILED, "provisioning_error": error}
        else:
            values = {
                "provisioning_status": ProvisioningStatus.PROVISIONED,
                "provisioning_error": None,
            }
        await session.execute(
            update(User)
            .where(User.id == user_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )

    # --- the steps ---------------------------------------------------------------------------

    async def _do_step(self, work: _Work, step: ProvisioningStep) -> ProvisioningStep:
        handlers: dict[ProvisioningStep, Callable[[_Work], Awaitable[None]]] = {
            ProvisioningStep.ENTRA_USER: self._entra_user,
            ProvisioningStep.LICENCE: self._licence,
            ProvisioningStep.NUMBER: self._number,
            ProvisioningStep.POLICY: self._policy,
            ProvisioningStep.VERIFY: self._verify,
            ProvisioningStep.NOTIFY: self._notify,
        }
        await handlers[step](work)
        return NEXT_STEP[step]

    def _usage_location(self, claimed: _Claimed) -> str:
        region = (claimed.region or "").upper()
        return (
            region if len(region) == 2 and region.isalpha() else self.graph_settings.usage_location
        )

    async def _entra(self, work: _Work) -> EntraUser:
        """The user's account, looked up again after a restart."""
        if work.entra is None:
            person = work.person
            assert person is not None
            found = None
            if person.entra_object_id:
                found = await work.ops.find_user(person.entra_object_id)
            if found is None or found.user_principal_name.lower() != person.email.lower():
                found = await work.ops.find_user(person.email)
            if found is None:
                raise StepAgain(
                    "The Microsoft 365 account is missing; it will be set up again.",
                    ProvisioningStep.ENTRA_USER,
                )
            work.entra = found
        return work.entra

    async def _entra_user(self, work: _Work) -> None:
        """Find the account by its e-mail (or known id); create it only when there is none."""
        person = work.person
        assert person is not None
        ops = work.ops
        found: EntraUser | None = None
        if person.entra_object_id:
            found = await ops.find_user(person.entra_object_id)
            if found is not None and found.user_principal_name.lower() != person.email.lower():
                found = None  # the e-mail changed: the account to set up is another one
        if found is None:
            found = await ops.find_user(person.email)
        location = self._usage_location(work.claimed)
        if found is None:
            password = (
                self.vault.open(person.password_ciphertext) if person.password_ciphertext else None
            )
            found, created = await ops.create_user(
                display_name=person.display_name,
                user_principal_name=person.email,
                usage_location=location,
                password=password or generate_password(),
            )
            # Only a password we still hold can be e-mailed: it must be the account's own.
            work.entra_created = created and password is not None
        else:
            changes: dict[str, Any] = {}
            if not found.usage_location:
                changes["usageLocation"] = location
            fields = work.claimed.payload.get("fields") or []
            if "display_name" in fields and found.display_name != person.display_name:
                changes["displayName"] = person.display_name
            if changes:
                await ops.update_user(found.id, changes)
                found = replace(
                    found,
                    usage_location=changes.get("usageLocation", found.usage_location),
                    display_name=changes.get("displayName", found.display_name),
                )
        work.entra = found

    def _sku(self, product: LicenceProduct) -> str:
        return (
            self.graph_settings.essentials_sku
            if product is LicenceProduct.ESSENTIALS
            else self.graph_settings.basic_sku
        )

    async def _licence(self, work: _Work) -> None:
        """Give the licence the directory says, and take away our other calling licence."""
        person = work.person
        assert person is not None
        entra = await self._entra(work)
        ours = {self.graph_settings.essentials_sku, self.graph_settings.basic_sku}
        wanted = self._sku(person.licence) if person.licence else None
        add = [wanted] if wanted and wanted not in entra.licences else []
        remove = sorted(sku for sku in entra.licences & ours if sku != wanted)
        if add or remove:
            await work.ops.set_licences(entra.id, add, remove)
            work.entra = replace(entra, licences=(entra.licences | set(add)) - set(remove))

    async def _number(self, work: _Work) -> None:
        """Give the user their line in Teams (DDI, or main number with extension)."""
        person = work.person
        assert person is not None
        entra = await self._entra(work)
        ops = work.ops
        line = line_uri(person, work.claimed.main_number)
        teams = await ops.teams_user(entra.id)
        work.teams = teams
        if line is None:
            if person.licence is None and work.claimed.kinds - NEW_SETUP_KINDS - {"retry"}:
                # The calling licence was taken away: so is the line.
                for number in teams.numbers if teams else {}:
                    await self._release_number(ops, number)
            return
        if teams is not None and teams.has_primary(line):
            return
        order = await ops.assign_number(line, entra.id)
        if not order.ok and person.entra_object_id and person.entra_object_id != entra.id:
            holder = await ops.number_holder(line)
            if holder == person.entra_object_id:
                # The user's previous account still holds it (the e-mail changed).
                await self._release_number(ops, line)
                order = await ops.assign_number(line, entra.id)
        if not order.ok:
            raise GraphError(
                f"Microsoft could not assign {_display_line(line)}: "
                f"{order.detail or 'the number order failed.'}",
                status=409,
            )
        work.teams = None

    async def _release_number(self, ops: GraphOperations, number: str) -> None:
        order = await ops.unassign_number(number)
        if not order.ok and "not assigned" not in (order.detail or "").lower():
            raise GraphError(
                f"Microsoft could not release {_display_line(number)}: {order.detail}",
                status=409,
            )

    async def _policy(self, work: _Work) -> None:
        """Give calling users the Direct Routing voice routing policy, if one is configured."""
        person = work.person
        assert person is not None
        policy = self.graph_settings.voice_routing_policy
        if not policy or line_uri(person, work.claimed.main_number) is None:
            return
        entra = await self._entra(work)
        teams = work.teams or await work.ops.teams_user(entra.id)
        if teams is not None and teams.policy(VOICE_ROUTING_POLICY_TYPE) == policy:
            return
        await work.ops.assign_policy(entra.id, VOICE_ROUTING_POLICY_TYPE, policy)
        work.teams = None

    async def _verify(self, work: _Work) -> None:
        """Read the Teams configuration back: the number and voice really took effect."""
        person = work.person
        assert person is not None
        line = line_uri(person, work.claimed.main_number)
        if line is None:
            return
        entra = await self._entra(work)
        policy = self.graph_settings.voice_routing_policy
        problems: list[str] = []
        for attempt in range(self.sync.verify_attempts):
            if attempt:
                await asyncio.sleep(self.sync.verify_delay_seconds)
            teams = await work.ops.teams_user(entra.id)
            problems = []
            if teams is None or not teams.has_primary(line):
                problems.append(f"{_display_line(line)} is not on the user yet")
            elif not teams.enterprise_voice:
                problems.append("enterprise voice is not on yet")
            if policy and (teams is None or teams.policy(VOICE_ROUTING_POLICY_TYPE) != policy):
                problems.append(f"the voice routing policy {policy} is not in effect yet")
            if not problems:
                work.teams = teams
                return
        # Teams has not caught up: look again (and order again if need be) later.
        raise StepAgain(
            "Teams does not show the changes yet: " + "; ".join(problems),
            ProvisioningStep.NUMBER,
        )

    async def _notify(self, work: _Work) -> None:
        """Confirmation and password e-mails as asked; then the password is forgotten."""
        person = work.person
        assert person is not None
        sender = self.graph_settings.mail_sender
        claimed = work.claimed
        if sender and claimed.kinds & NEW_SETUP_KINDS:
            mailer = work.ops
            if self.graph_settings.mail_tenant_id and self.graph is not None:
                mailer = GraphOperations(self.graph.tenant(self.graph_settings.mail_tenant_id))
            if person.notify_user:
                subject, body = confirmation_mail(person, line_uri(person, claimed.main_number))
                await mailer.send_mail(sender, person.email, subject, body)
            password = (
                self.vault.open(person.password_ciphertext)
                if person.send_password_email and work.entra_created and person.password_ciphertext
                else None
            )
            if password:
                subject, body = password_mail(person, password)
                await mailer.send_mail(sender, person.email, subject, body)
        elif person.send_password_email and work.entra_created and not sender:
            logger.warning(
                "No sender mailbox is configured (MAIL_SENDER): the sign-in e-mail asked for was not sent"
            )
        if person.password_ciphertext and claimed.user_id is not None:
            async with self.db.unit_of_work() as uow:
                await uow.session.execute(
                    update(User)
                    .where(User.id == claimed.user_id)
                    .values(password_ciphertext=None)
                    .execution_options(synchronize_session=False)
                )
                await uow.commit()

    async def _remove(self, work: _Work) -> None:
        """Take a removed user's numbers and our calling licences away (the account stays)."""
        payload = work.claimed.payload
        ops = work.ops
        entra = None
        if payload.get("entra_object_id"):
            entra = await ops.find_user(str(payload["entra_object_id"]))
        if entra is None and payload.get("email"):
            entra = await ops.find_user(str(payload["email"]))
        if entra is None:
            return
        teams = await ops.teams_user(entra.id)
        for number in teams.numbers if teams else {}:
            await self._release_number(ops, number)
        ours = {self.graph_settings.essentials_sku, self.graph_settings.basic_sku}
        remove = sorted(entra.licences & ours)
        if remove:
            await ops.set_licences(entra.id, [], remove)


# --- e-mails -----------------------------------------------------------------------------------


def confirmation_mail(person: _Person, line: str | None) -> tuple[str, str]:
    """The subject and HTML body telling a user their Teams Phone is ready."""
    name = html.escape(person.display_name)
    rows = [f"<li>Sign-in: {html.escape(person.email)}</li>"]
    if person.number:
        rows.append(f"<li>Your direct number: {html.escape(pretty(person.number))}</li>")
    if person.extension is not None:
        rows.append(f"<li>Your extension: {person.extension}</li>")
    if line is None:
        rows.append("<li>Calling is not enabled for you yet.</li>")
    body = (
        f"<p>Hello {name},</p>"
        "<p>Your Microsoft Teams account is set up to make and take phone calls.</p>"
        f"<ul>{''.join(rows)}</ul>"
        "<p>Open Teams and use <b>Calls</b> to start. If calls do not work within the hour, "
        "contact your IT administrator.</p>"
    )
    return "Your Teams Phone is ready", body


def password_mail(person: _Person, password: str) -> tuple[str, str]:
    """The subject and HTML body carrying a new account's first password."""
    body = (
        f"<p>Hello {html.escape(person.display_name)},</p>"
        "<p>A Microsoft 365 account was created for you.</p>"
        f"<ul><li>Sign-in: {html.escape(person.email)}</li>"
        f"<li>Temporary password: <code>{html.escape(password)}</code></li></ul>"
        "<p>You will be asked to choose your own password the first time you sign in. "
        "Delete this e-mail afterwards.</p>"
    )
    return "Your new Microsoft 365 account", body


# --- running outside the bot ---------------------------------------------------------------------


async def run_workers(settings: Settings, stop: asyncio.Event) -> None:
    """Open the database and Graph, run the configured workers until `stop` is set."""
    db = Database(settings.database_url)
    await db.migrate()
    vault = PasswordVault.from_settings(settings.secret_key, settings.secret_key_file)
    graph = GraphService(settings.graph) if settings.graph.enabled else None
    if graph is None:
        logger.warning("Microsoft Graph is not configured: syncs wait and become overdue")
    count = 1 if db.is_sqlite else settings.sync.workers
    engines = [ProvisioningEngine(db, vault, graph, settings) for _ in range(count)]
    try:
        for engine in engines:
            await engine.start()
        await stop.wait()
    finally:
        for engine in engines:
            await engine.stop()
        if graph is not None:
            await graph.close()
        await db.dispose()


def main() -> None:
    """`python -m services.provisioning`: run sync workers until SIGTERM or SIGINT."""
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_workers(Settings.from_env(), stop)

    asyncio.run(serve())


if __name__ == "__main__":
    main()

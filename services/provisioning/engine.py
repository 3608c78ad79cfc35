"""The sync engine's worker: claiming, leases, tenant lanes, and the life of a run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services import journal
from services.config import Settings
from services.db import Database
from services.graph import GraphError, GraphOperations, GraphService
from services.graph.shared_pacing import SharedWriteBudget
from services.models import (
    Enterprise,
    Extension,
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
from services.passwords import PasswordVault
from services.provisioning.steps import ProvisioningSteps
from services.provisioning.work import (
    STEP_LABELS,
    Claimed,
    Lane,
    LeaseLost,
    Person,
    StepAgain,
    Work,
)

# One logger for the whole engine, named as it was before the package split.
logger = logging.getLogger("services.provisioning")

OPEN_RUN_STATUSES = (SyncStatus.REQUESTED, SyncStatus.RUNNING)
WORK_LEFT = (OutboxStatus.PENDING, OutboxStatus.IN_PROGRESS)


class ProvisioningEngine(ProvisioningSteps):
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
        if graph is not None and db.is_postgres and graph.shared_budget is None:
            # Every worker process on every host paces to one budget per app and tenant.
            graph.use_shared_budget(
                SharedWriteBudget(
                    db,
                    self.graph_settings.write_limit,
                    self.graph_settings.write_window_seconds,
                    self.graph_settings.write_guard_seconds,
                )
            )
        self._lanes: dict[int, Lane] = {}
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
            lane = self._lanes.setdefault(enterprise_id, Lane(self.sync.tenant_concurrency))
            if lane.free <= 0:
                continue
            for claimed in await self._claim(enterprise_id, lane.free, now):
                lane.active += 1
                task = asyncio.create_task(self._work_on(claimed, lane))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                started += 1
        return started

    async def _claim(self, enterprise_id: int, limit: int, now: datetime) -> list[Claimed]:
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
                Claimed(
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
                    voice_routing_policy=enterprise.voice_routing_policy,
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

    async def _work_on(self, claimed: Claimed, lane: Lane) -> None:
        step = claimed.step
        try:
            assert self.graph is not None
            ops = GraphOperations(
                self.graph.tenant(claimed.tenant_id),
                poll_seconds=self.graph_settings.operation_poll_seconds,
                operation_timeout=self.graph_settings.operation_timeout_seconds,
            )
            work = Work(claimed, await self._person(claimed), ops)
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
        self, claimed: Claimed, step: ProvisioningStep, error: GraphError
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

    async def _person(self, claimed: Claimed) -> Person | None:
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
            return Person(
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

    async def _advance(self, work: Work, step: ProvisioningStep) -> None:
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
        self, claimed: Claimed, step: ProvisioningStep, attempts: int, reason: str
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

    async def _finish(self, claimed: Claimed, *, error: str | None) -> None:
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
        self, session: AsyncSession, claimed: Claimed, error: str | None
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

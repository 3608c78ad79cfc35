"""The runner: claims items under a lease, keeps the leases alive, drives each item through its
steps in Microsoft, and settles the item, its user and (the last one) its run."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, select, update

from services.config import GraphSettings, SyncSettings
from services.db import Database, is_unreachable
from services.domain import OutboxStatus, ProvisioningAction, ProvisioningStep, SyncStatus
from services.graph import GraphError, GraphOperations, GraphService
from services.models import Enterprise, Extension, PhoneNumber, ProvisioningItem, User, utcnow
from services.provisioning import state
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
from services.queue import WorkQueue
from services.retry import backoff_seconds, cancel_requested

# One logger for the whole sync, named as it was before the package split.
logger = logging.getLogger("services.provisioning")

# The items as a queue: a lease column and its holder, so only the holder moves an item on.
ITEMS = WorkQueue(
    ProvisioningItem,
    id=ProvisioningItem.id,
    status=ProvisioningItem.status,
    due_at=ProvisioningItem.next_attempt_at,
    attempts=ProvisioningItem.attempts,
    lease_until=ProvisioningItem.lease_expires_at,
    owner=ProvisioningItem.lease_owner,
)


class Runner:
    """Works on the items of planned runs; each tenant has its own lane of concurrency."""

    def __init__(
        self,
        db: Database,
        graph: GraphService,
        steps: ProvisioningSteps,
        sync: SyncSettings,
        graph_settings: GraphSettings,
        worker_id: str,
        *,
        on_closed: Callable[[], None],
        on_item_done: Callable[[], None],
    ) -> None:
        self.db = db
        self.graph = graph
        self.steps = steps
        self.sync = sync
        self.graph_settings = graph_settings
        self.worker_id = worker_id
        self.on_closed = on_closed
        self.on_item_done = on_item_done
        self.items_handled = 0
        self._lanes: dict[int, Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def busy(self) -> int:
        """Items being worked on right now."""
        return len(self._tasks)

    def _lease_end(self) -> datetime:
        return utcnow() + timedelta(seconds=self.sync.lease_seconds)

    # --- leases ------------------------------------------------------------------------------

    async def heartbeat(self) -> None:
        """Renew the leases of the items in hand, a few times per lease, until cancelled."""
        interval = max(0.05, self.sync.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            if not self._tasks:
                continue
            try:
                async with self.db.unit_of_work() as uow:
                    await ITEMS.renew(uow.session, self.worker_id, self._lease_end())
                    await uow.commit()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if cancel_requested():  # the driver turned our cancellation into its own error
                    raise asyncio.CancelledError from error
                if is_unreachable(error):
                    # Passing: the items resume when the database is back (_resume_after_outage).
                    logger.warning("Could not renew the sync worker's leases: database unreachable")
                else:
                    logger.exception("Could not renew the sync worker's leases")

    async def stop(self) -> None:
        """Stop the items in hand and give them back, so the next worker starts on them at once."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception):
                logger.error("An item ended with an error while stopping", exc_info=outcome)
        self._tasks.clear()
        try:
            async with self.db.unit_of_work() as uow:
                await ITEMS.release(uow.session, self.worker_id)
                await uow.commit()
        except Exception:
            # Not lost: the leases run out and another worker takes the items over.
            logger.exception("Could not hand back the items of sync worker %s", self.worker_id)

    # --- claiming ----------------------------------------------------------------------------

    async def claim_and_start(self) -> int:
        """Claim what each tenant's lane has room for and start working on it."""
        now = utcnow()
        async with self.db.unit_of_work(readonly=True) as uow:
            due = list(
                await uow.session.execute(
                    select(ProvisioningItem.enterprise_id).where(ITEMS.due(now)).distinct()
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
            ids = await ITEMS.claim(
                session,
                now,
                self.sync.lease_seconds,
                where=[ProvisioningItem.enterprise_id == enterprise_id],
                order_by=(ProvisioningItem.next_attempt_at, ProvisioningItem.id),
                limit=limit,
                owner=self.worker_id,
            )
            if not ids:
                return []
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
                await state.move_users(
                    session, state.ProvisioningEvent.CLAIMED, User.id.in_(user_ids)
                )
            await uow.commit()
            return claimed

    # --- working on one item -----------------------------------------------------------------

    async def _work_on(self, claimed: Claimed, lane: Lane) -> None:
        step = claimed.step
        try:
            ops = GraphOperations(
                self.graph.tenant(claimed.tenant_id),
                poll_seconds=self.graph_settings.operation_poll_seconds,
                operation_timeout=self.graph_settings.operation_timeout_seconds,
            )
            work = Work(claimed, await self._person(claimed), ops)
            work.entra_created = claimed.entra_created
            if claimed.action is ProvisioningAction.REMOVE:
                await self.steps.remove(work)
                await self._finish(claimed, error=None)
                return
            if work.person is None:
                await self._finish(claimed, error=None)  # removed meanwhile: nothing to set up
                return
            while step is not ProvisioningStep.DONE:
                following = await self.steps.do_step(work, step)
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
        except Exception as error:
            if is_unreachable(error):
                await self._resume_after_outage(claimed, step)
                return
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
            self.on_item_done()

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
        except Exception as outcome_error:
            if is_unreachable(outcome_error):
                await self._resume_after_outage(claimed, step)
                return
            # The lease runs out and the item is picked up again: nothing is lost.
            logger.exception("Could not record the outcome of item %s", claimed.item_id)

    async def _resume_after_outage(self, claimed: Claimed, step: ProvisioningStep) -> None:
        """The database went away under the item: wait until it answers again, then put the
        item back in line at once (its attempts untouched: the outage was not the item's),
        rather than leaving it held until its lease runs out."""
        logger.warning(
            "Item %s: the database cannot be reached at %s; it resumes when the database is back",
            claimed.item_id,
            step.value,
        )
        pause = self.sync.poll_seconds
        while True:
            await asyncio.sleep(pause)
            try:
                async with self.db.unit_of_work() as uow:
                    settled = await ITEMS.settle(
                        uow.session,
                        self._mine(claimed),
                        OutboxStatus.PENDING,
                        step=step,
                        next_attempt_at=utcnow(),
                    )
                    await uow.commit()
            except Exception as error:
                if not is_unreachable(error):
                    logger.exception("Could not put item %s back in line", claimed.item_id)
                    return  # its lease runs out, and it is picked up again
                pause = min(pause * 2, max(self.sync.poll_seconds, self.sync.lease_seconds / 6))
                continue
            if not settled:
                logger.info("Item %s was taken over by another worker", claimed.item_id)
            return

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
                password_email_to=user.password_email_to,
            )

    def _mine(self, claimed: Claimed) -> Any:
        return and_(ProvisioningItem.id == claimed.item_id, ITEMS.held_by(self.worker_id))

    async def _advance(self, work: Work, step: ProvisioningStep) -> None:
        """Record that the item reached `step` (only while we still hold it)."""
        claimed = work.claimed
        async with self.db.unit_of_work() as uow:
            result = await uow.session.execute(
                update(ProvisioningItem)
                .where(self._mine(claimed))
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
        delay = backoff_seconds(
            attempts, base=self.sync.retry_base_seconds, cap=self.sync.retry_max_seconds
        )
        async with self.db.unit_of_work() as uow:
            settled = await ITEMS.settle(
                uow.session,
                self._mine(claimed),
                OutboxStatus.PENDING,
                step=step,
                attempts=attempts,
                next_attempt_at=utcnow() + timedelta(seconds=delay),
                last_error=reason,
            )
            if not settled:
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
            run = await state.lock_run(session, claimed.sync_id)
            values: dict[str, Any] = {
                "last_error": error,
                "finished_at": now,
                "finished_by": self.worker_id,
            }
            if error is None:
                values["step"] = ProvisioningStep.DONE
            settled = await ITEMS.settle(
                session,
                self._mine(claimed),
                OutboxStatus.FAILED if error else OutboxStatus.DONE,
                **values,
            )
            if not settled:
                raise LeaseLost()
            if claimed.user_id is not None:
                await state.settle_user(
                    session, claimed.user_id, claimed.enterprise_id, claimed.sync_id, error
                )
            closed = False
            if (
                run is not None
                and run.status is SyncStatus.RUNNING
                and not await state.work_left(session, claimed.sync_id)
            ):
                await state.close_run(session, run)
                closed = True
            await uow.commit()
        if closed:
            self.on_closed()

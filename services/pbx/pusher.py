"""The PBX channel of the outbox: every user change reaches the PBX at once, or waits and retries.

A change is a row in `outbox` (channel "pbx") written in the change's own transaction. The
pusher claims due rows (FOR UPDATE SKIP LOCKED on PostgreSQL), takes the enterprise's lease,
reads each affected user's *current* line from the directory and makes the PBX hold exactly
that. A PBX that is down leaves the rows pending with the error and the next attempt time;
nothing is lost, and a replay converges because it always carries the newest state.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services import journal
from services.db import Database
from services.domain import OutboxStatus
from services.enterprises import load_enterprise
from services.models import OutboxItem, utcnow
from services.pbx import signals
from services.pbx.backend import PbxBackend, describe_error
from services.pbx.lease import give_back, take_lease
from services.pbx.lines import desired_groups, desired_lines, endpoint_id, queue_name
from services.queue import UNFINISHED, WorkQueue, lock_skipping_held
from services.retry import backoff_seconds, run_passes

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
_CANDIDATES = 100

# The outbox as a queue: a held row's lease is its due time (in progress past it: the pusher
# that held it has died).
OUTBOX = WorkQueue(
    OutboxItem,
    id=OutboxItem.id,
    status=OutboxItem.status,
    due_at=OutboxItem.next_attempt_at,
    attempts=OutboxItem.attempts,
)


@dataclass(frozen=True)
class RetryPolicy:
    """How long a change waits after the PBX failed to take it: the common backoff, from
    `first_delay` up to `max_delay`."""

    first_delay: float = 2.0
    max_delay: float = 300.0

    def delay(self, attempts: int) -> timedelta:
        """The wait after the given number of failed attempts (1 or more)."""
        return timedelta(
            seconds=backoff_seconds(attempts, base=self.first_delay, cap=self.max_delay)
        )


@dataclass(frozen=True)
class Claim:
    """Outbox rows of one enterprise that this pusher holds the lease for."""

    enterprise_id: int
    row_ids: tuple[int, ...]
    user_ids: tuple[int, ...]
    rows_by_user: dict[int, tuple[int, ...]]
    rows_by_group: dict[int, tuple[int, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class PushResult:
    """What one pass over the outbox achieved."""

    pushed: int = 0
    failed: int = 0

    def __add__(self, other: PushResult) -> PushResult:
        return PushResult(self.pushed + other.pushed, self.failed + other.failed)


def _user_of(item: OutboxItem) -> int | None:
    value = (item.payload or {}).get("user_id", item.user_id)
    return int(value) if value is not None else None


def _group_of(item: OutboxItem) -> int | None:
    value = (item.payload or {}).get("group_id")
    return int(value) if value is not None else None


class PbxPusher:
    """Drains the outbox's "pbx" channel into a PbxBackend. Run one or many, in any process."""

    def __init__(
        self,
        directory_db: Database,
        backend: PbxBackend,
        *,
        retry: RetryPolicy | None = None,
        lease_seconds: float = 60.0,
        poll_interval: float = 5.0,
        clock: Clock = utcnow,
    ) -> None:
        self.db = directory_db
        self.backend = backend
        self.retry = retry or RetryPolicy()
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.clock = clock
        self.holder = f"pbx-{uuid.uuid4().hex[:16]}"
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def notify(self) -> None:
        """Wake the pusher now (a change was committed); safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._wake.set()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    async def run_once(self) -> PushResult:
        """Push every change that is due now; returns how many users were pushed or failed."""
        result = PushResult()
        seen: set[int] = set()
        while True:
            claim = await self._claim(skip=seen)
            if claim is None:
                return result
            seen.add(claim.enterprise_id)
            result += await self._push(claim)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Push changes as they are committed (and poll for other processes') until `stop`."""
        self._loop = asyncio.get_running_loop()
        unsubscribe = signals.subscribe(self.db.write_engine.sync_engine, self.notify)
        try:
            await run_passes(
                self._pass,
                wake=self._wake,
                interval=self.poll_interval,
                logger=log,
                failure="PBX push pass failed",
                stop=stop,
                describe=describe_error,
            )
        finally:
            unsubscribe()

    async def _pass(self) -> float:
        await self.run_once()
        return await self._seconds_until_due()

    # --- claiming ----------------------------------------------------------------------------

    def _due(self, now: datetime) -> list[ColumnElement[bool]]:
        return [OutboxItem.channel == journal.PBX, OUTBOX.due(now)]

    async def _claim(self, skip: set[int]) -> Claim | None:
        async with self.db.unit_of_work() as uow:
            session = uow.session
            now = self.clock()
            busy = set(skip)  # enterprises done this pass, or leased to another pusher
            while True:
                candidates = select(OutboxItem.id, OutboxItem.enterprise_id).where(*self._due(now))
                if busy:
                    candidates = candidates.where(OutboxItem.enterprise_id.not_in(sorted(busy)))
                candidates = candidates.order_by(OutboxItem.id).limit(_CANDIDATES)
                rows = (await session.execute(lock_skipping_held(session, candidates))).all()
                if not rows:
                    await uow.commit()
                    return None
                for enterprise_id in dict.fromkeys(row.enterprise_id for row in rows):
                    if await take_lease(
                        session, enterprise_id, self.holder, now, self.lease_seconds
                    ):
                        claim = await self._claim_rows(session, enterprise_id, now)
                        await uow.commit()
                        return claim
                    busy.add(enterprise_id)

    async def _claim_rows(self, session: AsyncSession, enterprise_id: int, now: datetime) -> Claim:
        query = (
            select(OutboxItem)
            .where(*self._due(now), OutboxItem.enterprise_id == enterprise_id)
            .order_by(OutboxItem.id)
        )
        items = list((await session.execute(lock_skipping_held(session, query))).scalars())
        users = {user for item in items if (user := _user_of(item)) is not None}
        if users:
            # The same users' changes still waiting for a retry ride along: the push carries
            # their current line, which includes those changes, so they settle with it.
            waiting = select(OutboxItem).where(
                OutboxItem.channel == journal.PBX,
                OutboxItem.enterprise_id == enterprise_id,
                OutboxItem.status == OutboxStatus.PENDING,
                OutboxItem.next_attempt_at > now,
                OutboxItem.user_id.in_(sorted(users)),
            )
            waiting = lock_skipping_held(session, waiting.order_by(OutboxItem.id))
            items += list((await session.execute(waiting)).scalars())
        by_user: dict[int, list[int]] = {}
        by_group: dict[int, list[int]] = {}
        for item in items:
            user_id = _user_of(item)
            group_id = _group_of(item)
            if user_id is not None:
                by_user.setdefault(user_id, []).append(item.id)
            elif group_id is not None:
                by_group.setdefault(group_id, []).append(item.id)
        row_ids = tuple(item.id for item in items)
        await OUTBOX.take(session, row_ids, now, self.lease_seconds, updated_at=now)
        return Claim(
            enterprise_id=enterprise_id,
            row_ids=row_ids,
            user_ids=tuple(by_user),
            rows_by_user={user: tuple(ids) for user, ids in by_user.items()},
            rows_by_group={group: tuple(ids) for group, ids in by_group.items()},
        )

    # --- pushing -----------------------------------------------------------------------------

    async def _push(self, claim: Claim) -> PushResult:
        named = {row for rows in claim.rows_by_user.values() for row in rows}
        named |= {row for rows in claim.rows_by_group.values() for row in rows}
        # Rows that name neither a user nor a group have nothing to push.
        done = [row for row in claim.row_ids if row not in named]
        failed: dict[int, str] = {}
        result = PushResult()
        try:
            last_error: str | None = None
            repeated = False
            # Groups first: a new group's queue and strategy exist before members join it.
            pushes: list[tuple[Callable[[int, int], Awaitable[str | None]], int, tuple[int, ...]]]
            pushes = [(self._push_group, g, rows) for g, rows in claim.rows_by_group.items()]
            pushes += [(self._push_user, u, claim.rows_by_user[u]) for u in claim.user_ids]
            for push, subject, rows in pushes:
                if repeated and last_error is not None:
                    # The same failure twice in a row: the PBX itself is down; do not hammer it.
                    failed.update(dict.fromkeys(rows, last_error))
                    result += PushResult(failed=1)
                    continue
                error = await push(claim.enterprise_id, subject)
                if error is None:
                    done.extend(rows)
                    result += PushResult(pushed=1)
                else:
                    log.warning(
                        "PBX push of %s failed: %s",
                        endpoint_id(claim.enterprise_id, subject)
                        if push == self._push_user
                        else queue_name(claim.enterprise_id, subject),
                        error,
                    )
                    failed.update(dict.fromkeys(rows, error))
                    result += PushResult(failed=1)
                    repeated = error == last_error
                last_error = error
                await self._renew(claim.enterprise_id)
        finally:
            await self._settle(claim.enterprise_id, done, failed)
        return result

    async def _push_user(self, enterprise_id: int, user_id: int) -> str | None:
        """Make the PBX hold the user's current line; an error description on failure."""
        try:
            async with self.db.unit_of_work(readonly=True) as uow:
                enterprise = await load_enterprise(uow.session, enterprise_id)
                line = (await desired_lines(uow.session, enterprise, [user_id])).get(user_id)
            if line is None:
                await self.backend.remove(enterprise_id, endpoint_id(enterprise_id, user_id))
            else:
                await self.backend.provision(line)
        except Exception as error:  # any PBX failure is retried, never lost
            return describe_error(error)
        return None

    async def _push_group(self, enterprise_id: int, group_id: int) -> str | None:
        """Make the PBX hold the hunt group as it is now; an error description on failure."""
        try:
            async with self.db.unit_of_work(readonly=True) as uow:
                enterprise = await load_enterprise(uow.session, enterprise_id)
                group = (await desired_groups(uow.session, enterprise, [group_id])).get(group_id)
            if group is None:
                await self.backend.remove_group(enterprise_id, queue_name(enterprise_id, group_id))
            else:
                await self.backend.provision_group(group)
        except Exception as error:  # any PBX failure is retried, never lost
            return describe_error(error)
        return None

    async def _renew(self, enterprise_id: int) -> None:
        async with self.db.unit_of_work() as uow:
            await take_lease(
                uow.session, enterprise_id, self.holder, self.clock(), self.lease_seconds
            )
            await uow.commit()

    async def _settle(self, enterprise_id: int, done: list[int], failed: dict[int, str]) -> None:
        now = self.clock()
        async with self.db.unit_of_work() as uow:
            session = uow.session
            if done:
                await OUTBOX.settle(
                    session,
                    OutboxItem.id.in_(done),
                    OutboxStatus.DONE,
                    last_error=None,
                    updated_at=now,
                )
            if failed:
                attempts = await session.execute(
                    select(OutboxItem.id, OutboxItem.attempts).where(
                        OutboxItem.id.in_(list(failed))
                    )
                )
                for row_id, tried in attempts.all():
                    await OUTBOX.settle(
                        session,
                        OutboxItem.id == row_id,
                        OutboxStatus.PENDING,
                        attempts=tried + 1,
                        next_attempt_at=now + self.retry.delay(tried + 1),
                        last_error=failed[row_id],
                        updated_at=now,
                    )
            await give_back(session, enterprise_id, self.holder, now)
            await uow.commit()

    async def _seconds_until_due(self) -> float:
        async with self.db.unit_of_work(readonly=True) as uow:
            soonest = (
                await uow.session.execute(
                    select(func.min(OutboxItem.next_attempt_at)).where(
                        OutboxItem.channel == journal.PBX, OutboxItem.status.in_(UNFINISHED)
                    )
                )
            ).scalar_one_or_none()
        if soonest is None:
            return self.poll_interval
        wait = (soonest - self.clock()).total_seconds()
        return min(self.poll_interval, max(wait, 0.05))

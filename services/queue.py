"""The one way work is taken from a table: claim due rows, hold them under a lease, settle them.

A queue is a table with a status (pending, in progress, done, failed), the time a row is next
due, and a lease. Claiming selects due rows with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so
any number of processes share a table without taking a row twice; SQLite has a single writer,
which serializes claims by itself. A claimant that dies leaves its rows held until the lease
ends; then they are due again and another claimant takes them over.

The lease is either its own column (with the claimant's name beside it, so only the holder
can move the row on) or the due time itself: a held row is due again when its lease ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.selectable import GenerativeSelect

from services.domain import OutboxStatus

S = TypeVar("S", bound=GenerativeSelect)

# Rows that are waiting or held: work not finished yet.
UNFINISHED = (OutboxStatus.PENDING, OutboxStatus.IN_PROGRESS)


def lock_skipping_held(session: AsyncSession, query: S) -> S:
    """`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's single writer needs no lock."""
    if session.get_bind().dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


@dataclass(frozen=True)
class WorkQueue:
    """A table read as a queue of work: which columns hold the status, due time and lease."""

    model: Any
    id: QueryableAttribute[Any]
    status: QueryableAttribute[Any]
    due_at: QueryableAttribute[Any]
    attempts: QueryableAttribute[Any]
    # The lease's own column and its holder's; None: the lease is written in `due_at`.
    lease_until: QueryableAttribute[Any] | None = None
    owner: QueryableAttribute[Any] | None = None
    # The status of a held row (a notice stays pending until every recipient has it).
    held: OutboxStatus = OutboxStatus.IN_PROGRESS

    def due(self, now: datetime) -> ColumnElement[bool]:
        """Rows to take now: pending and due, or held past their lease."""
        if self.lease_until is None:
            held = list(dict.fromkeys((OutboxStatus.PENDING, self.held)))
            return and_(self.status.in_(held), self.due_at <= now)
        return or_(
            and_(self.status == OutboxStatus.PENDING, self.due_at <= now),
            and_(self.status == self.held, self.lease_until <= now),
        )

    def held_by(self, owner: str) -> ColumnElement[bool]:
        """Rows this claimant holds (with a lease column of its own)."""
        if self.owner is None:
            raise TypeError(f"{self.model.__name__} keeps no lease holder")
        return and_(self.owner == owner, self.status == self.held)

    def _lease(self, until: datetime) -> dict[str, Any]:
        key = self.lease_until if self.lease_until is not None else self.due_at
        return {key.key: until}

    async def claim(
        self,
        session: AsyncSession,
        now: datetime,
        lease_seconds: float,
        *,
        where: Sequence[ColumnElement[bool]] = (),
        order_by: Sequence[Any] = (),
        limit: int,
        owner: str | None = None,
        count_attempt: bool = False,
        **also: Any,
    ) -> list[int]:
        """Take up to `limit` due rows (in the caller's transaction); returns their ids."""
        query = select(self.id).where(self.due(now), *where)
        query = query.order_by(*(order_by or (self.id,))).limit(limit)
        ids = list((await session.execute(lock_skipping_held(session, query))).scalars())
        await self.take(
            session, ids, now, lease_seconds, owner=owner, count_attempt=count_attempt, **also
        )
        return ids

    async def take(
        self,
        session: AsyncSession,
        ids: Sequence[int],
        now: datetime,
        lease_seconds: float,
        *,
        owner: str | None = None,
        count_attempt: bool = False,
        **also: Any,
    ) -> None:
        """Hold rows the caller has locked (or selected under SQLite's single writer)."""
        if not ids:
            return
        values: dict[str, Any] = {self.status.key: self.held, **also}
        values |= self._lease(now + timedelta(seconds=lease_seconds))
        if self.owner is not None:
            values[self.owner.key] = owner
        if count_attempt:
            values[self.attempts.key] = self.attempts + 1
        await session.execute(
            update(self.model)
            .where(self.id.in_(list(ids)))
            .values(**values)
            .execution_options(synchronize_session=False)
        )

    async def renew(
        self, session: AsyncSession, owner: str, until: datetime, *, row_id: int | None = None
    ) -> int:
        """Extend the leases this claimant holds (one row, or all); returns how many."""
        condition = self.held_by(owner)
        if row_id is not None:
            condition = and_(self.id == row_id, condition)
        result = await session.execute(
            update(self.model).where(condition).values(**self._lease(until))
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def release(self, session: AsyncSession, owner: str) -> None:
        """Hand every row this claimant holds back, due at once."""
        values: dict[str, Any] = {self.status.key: OutboxStatus.PENDING}
        if self.owner is not None:
            values[self.owner.key] = None
        if self.lease_until is not None:
            values[self.lease_until.key] = None
        await session.execute(update(self.model).where(self.held_by(owner)).values(**values))

    async def settle(
        self,
        session: AsyncSession,
        rows: ColumnElement[bool],
        status: OutboxStatus,
        **values: Any,
    ) -> int:
        """Move the rows `rows` selects to `status` (with other values); returns how many.

        Done or failed ends the work; pending with a later due time retries it. A row held
        under a lease column gives the lease up.
        """
        changes: dict[str, Any] = {self.status.key: status, **values}
        if self.lease_until is not None:
            changes[self.lease_until.key] = None
            if status is OutboxStatus.PENDING and self.owner is not None:
                changes[self.owner.key] = None
        result = await session.execute(
            update(self.model)
            .where(rows)
            .values(**changes)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)

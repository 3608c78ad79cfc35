"""Where the bot can reach people on its own: stored conversation references, and the ledger
of activities already handled so a redelivered one is not acted on twice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.db import Database, is_unreachable
from services.domain import AdminRole
from services.models import Admin, ConversationRef, ProcessedActivity, utcnow

LEDGER_RETENTION = timedelta(days=2)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredReference:
    """A conversation the bot may post into, as Bot Framework described it."""

    tenant_id: str
    aad_object_id: str
    conversation_id: str
    is_personal: bool
    reference: dict[str, Any]


class ConversationStore:
    """Conversation references, saved on install and on every message."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(
        self,
        *,
        tenant_id: str,
        aad_object_id: str,
        conversation_id: str,
        is_personal: bool,
        reference: dict[str, Any],
    ) -> None:
        """Remember (or refresh) how to reach this person in this conversation."""
        tenant, person = tenant_id.lower(), aad_object_id.lower()
        for _ in range(2):
            async with self.db.unit_of_work() as uow:
                row = (
                    await uow.session.execute(
                        select(ConversationRef).where(
                            ConversationRef.tenant_id == tenant,
                            ConversationRef.aad_object_id == person,
                            ConversationRef.conversation_id == conversation_id,
                        )
                    )
                ).scalar_one_or_none()
                if row is None:
                    row = ConversationRef(
                        tenant_id=tenant, aad_object_id=person, conversation_id=conversation_id
                    )
                    uow.session.add(row)
                elif row.reference == reference:
                    return
                row.is_personal = is_personal
                row.reference = reference
                row.updated_at = utcnow()
                try:
                    await uow.commit()
                    return
                except IntegrityError:
                    continue  # saved by a concurrent turn: update that row instead

    async def personal(self, tenant_id: str, aad_object_id: str) -> StoredReference | None:
        """The person's one-to-one chat with the bot, most recently used first."""
        async with self.db.unit_of_work(readonly=True) as uow:
            row = (
                await uow.session.execute(
                    select(ConversationRef)
                    .where(
                        ConversationRef.tenant_id == tenant_id.lower(),
                        ConversationRef.aad_object_id == aad_object_id.lower(),
                        ConversationRef.is_personal.is_(True),
                    )
                    .order_by(ConversationRef.updated_at.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            return _stored(row) if row else None

    async def by_conversation(self, conversation_id: str) -> StoredReference | None:
        """The most recently saved reference to one conversation (e.g. a team channel)."""
        async with self.db.unit_of_work(readonly=True) as uow:
            row = (
                await uow.session.execute(
                    select(ConversationRef)
                    .where(ConversationRef.conversation_id == conversation_id)
                    .order_by(ConversationRef.updated_at.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            return _stored(row) if row else None

    async def service_providers(self) -> list[StoredReference]:
        """The personal chats of every service provider admin."""
        return await self._personal_chats(Admin.role == AdminRole.SERVICE_PROVIDER)

    async def enterprise_admins(self, tenant_id: str, enterprise_id: int) -> list[StoredReference]:
        """The personal chats of the enterprise's own admins (its Global Admin included)."""
        return await self._personal_chats(
            Admin.enterprise_id == enterprise_id,
            Admin.role != AdminRole.SERVICE_PROVIDER,
            ConversationRef.tenant_id == tenant_id.lower(),
        )

    async def _personal_chats(self, *admins: ColumnElement[bool]) -> list[StoredReference]:
        """The latest personal chat of each admin matching `admins`, newest first."""
        async with self.db.unit_of_work(readonly=True) as uow:
            rows = await uow.session.execute(
                select(ConversationRef)
                .join(Admin, Admin.aad_object_id == ConversationRef.aad_object_id)
                .where(*admins, ConversationRef.is_personal.is_(True))
                .order_by(ConversationRef.updated_at.desc())
            )
            seen: set[str] = set()
            found = []
            for row in rows.scalars():
                if row.aad_object_id not in seen:
                    seen.add(row.aad_object_id)
                    found.append(_stored(row))
            return found


def _stored(row: ConversationRef) -> StoredReference:
    return StoredReference(
        row.tenant_id, row.aad_object_id, row.conversation_id, row.is_personal, row.reference
    )


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming an activity id: first delivery, or what the first one answered."""

    first: bool
    response: dict[str, Any] | None


class RedeliveredError(Exception):
    """Another delivery of this activity has already claimed it: answer with its card."""


_LEDGER = cast(Table, ProcessedActivity.__table__)
_KEY_LENGTH = 600


# The ledger row that claims an activity: its key is the primary key, so only one delivery
# can insert it.
_CLAIM = insert(_LEDGER)


def _claim_row(key: str) -> dict[str, Any]:
    return {"activity_key": key[:_KEY_LENGTH], "at": utcnow()}


class DeliveryClaim:
    """A claim on one activity id that commits with the first write transaction of its turn.

    The turn's services reach the database through a handle carrying the claim
    (`Database.carrying`), so the claim and the change it guards commit together or not at
    all: a redelivery can never repeat a committed change, and a turn that changed nothing
    leaves nothing behind.
    """

    def __init__(self, key: str) -> None:
        self.key = key[:_KEY_LENGTH]
        self.claimed = False
        # Only the turn's own task writes the claim: not, say, a background task the turn
        # started with its services, which may write long after the turn answered.
        self._task = asyncio.current_task()

    @property
    def pending(self) -> bool:
        """Whether the next write transaction of this turn must carry the claim."""
        return not self.claimed and asyncio.current_task() is self._task

    async def write(self, session: AsyncSession) -> None:
        """Insert the claim into the transaction; a claim already there means a redelivery."""
        try:
            await session.execute(_CLAIM, _claim_row(self.key))
        except IntegrityError:
            raise RedeliveredError(self.key) from None

    def committed(self) -> None:
        """The transaction carrying the claim has committed."""
        self.claimed = True


# One statement for a whole batch of answers (see ActivityLedger.complete).
_ANSWER = (
    update(_LEDGER)
    .where(_LEDGER.c.activity_key == bindparam("answered_key"))
    .values(response=bindparam("answer"))
)

# Answers waiting for their transaction, by activity key.
_Answers = dict[str, dict[str, Any] | None]


class ActivityLedger:
    """Activity ids already handled: Teams may deliver one activity twice."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._waiting: _Answers = {}
        self._writing: _Answers = {}
        self._writer: asyncio.Task[None] | None = None
        # Deliveries of one activity under way in this process, and the event a redelivery
        # waits on: set when one of them keeps its answer, or when the last one ends.
        self._claimers: dict[str, int] = {}
        self._answered: dict[str, asyncio.Event] = {}

    @contextmanager
    def claiming(self, key: str) -> Iterator[DeliveryClaim]:
        """A claim on the activity `key`, for the turn's first write transaction to carry (hand
        the turn's services a database carrying it: `Database.carrying`).

        Keep the answer (`keep`) inside the block: a redelivery waiting in this process wakes
        when it is kept, or when the block of the last delivery under way ends.
        """
        claim = DeliveryClaim(key)
        key = claim.key
        self._claimers[key] = self._claimers.get(key, 0) + 1
        self._answered.setdefault(key, asyncio.Event())
        try:
            yield claim
        finally:
            left = self._claimers.pop(key) - 1
            if left:
                self._claimers[key] = left
            else:
                self._answered.pop(key).set()

    async def first_answer(self, key: str, *, wait_seconds: float) -> dict[str, Any] | None:
        """The answer the delivery that claimed `key` gave. When that delivery is under way in
        this process, wait (up to `wait_seconds`) for it to answer; when it ran elsewhere,
        its answer is in the database or, if that instance stopped before writing it, nowhere:
        None then, at once."""
        key = key[:_KEY_LENGTH]
        answered = self._answered.get(key)
        if answered is not None:
            with suppress(TimeoutError):
                await asyncio.wait_for(answered.wait(), wait_seconds)
        claim = await self.peek(key)
        return claim.response if claim else None

    async def claim(self, key: str) -> Claim:
        """Record the activity as handled now; a repeat gets the first answer, if any yet."""
        try:
            async with self.db.write_engine.begin() as connection:
                await connection.execute(_CLAIM, _claim_row(key))
            return Claim(first=True, response=None)
        except IntegrityError:
            return await self.peek(key) or Claim(first=False, response=None)

    async def peek(self, key: str) -> Claim | None:
        """Whether another delivery claimed the activity, with its answer once it has one."""
        key = key[:_KEY_LENGTH]
        for answers in (self._waiting, self._writing):
            if key in answers:
                return Claim(first=False, response=answers[key])
        async with self.db.read_engine.connect() as connection:
            row = (
                await connection.execute(
                    select(_LEDGER.c.response).where(_LEDGER.c.activity_key == key)
                )
            ).first()
        return None if row is None else Claim(first=False, response=row.response)

    def keep(self, key: str, response: dict[str, Any] | None) -> None:
        """Keep the answer given, for a redelivery to receive the same one.

        The turn does not wait for it: the change itself committed with the claim, so a
        redelivery can never repeat it, and this process answers a redelivery from memory
        until the answer is written. Answers kept while another batch is being written go
        together in the next transaction: on SQLite's single writer, one transaction per
        answer would queue every change behind them.
        """
        key = key[:_KEY_LENGTH]
        self._waiting[key] = response
        answered = self._answered.get(key)
        if answered is not None:
            answered.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_answers())

    async def flush(self) -> None:
        """Wait until every answer kept so far is written (or its failure logged)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def _write_answers(self) -> None:
        while self._waiting:
            self._writing, self._waiting = self._waiting, {}
            try:
                async with self.db.write_engine.begin() as connection:
                    await connection.execute(
                        _ANSWER,
                        [
                            {"answered_key": key, "answer": answer}
                            for key, answer in self._writing.items()
                        ],
                    )
            except Exception as error:
                # The changes are safe; only these answers are lost, and a redelivery of one
                # of these activities gets a stand-in card instead of the first answer.
                log = logger.warning if is_unreachable(error) else logger.exception
                log("Could not keep the answers to these activities: %s", ", ".join(self._writing))
            finally:
                self._writing = {}

    async def prune(self) -> int:
        """Forget activities older than the retention period."""
        async with self.db.write_engine.begin() as connection:
            result = await connection.execute(
                delete(_LEDGER).where(_LEDGER.c.at < utcnow() - LEDGER_RETENTION)
            )
            return int(result.rowcount or 0)

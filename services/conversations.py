"""Where the bot can reach people on its own: stored conversation references, and the ledger
of activities already handled so a redelivered one is not acted on twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from services.db import Database
from services.models import Admin, AdminRole, ConversationRef, ProcessedActivity, utcnow

LEDGER_RETENTION = timedelta(days=2)


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
        async with self.db.unit_of_work(readonly=True) as uow:
            rows = await uow.session.execute(
                select(ConversationRef)
                .join(Admin, Admin.aad_object_id == ConversationRef.aad_object_id)
                .where(
                    Admin.role == AdminRole.SERVICE_PROVIDER,
                    ConversationRef.is_personal.is_(True),
                )
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


class ActivityLedger:
    """Activity ids already handled: Teams may deliver one activity twice."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim(self, key: str) -> Claim:
        """Record the activity as being handled; a repeat gets the first answer, if any yet."""
        async with self.db.unit_of_work() as uow:
            uow.session.add(ProcessedActivity(activity_key=key[:600], at=utcnow()))
            try:
                await uow.commit()
                return Claim(first=True, response=None)
            except IntegrityError:
                pass
        return await self.peek(key)

    async def peek(self, key: str) -> Claim:
        """What the first delivery of an activity answered, if it has answered yet."""
        async with self.db.unit_of_work(readonly=True) as uow:
            row = await uow.session.get(ProcessedActivity, key[:600])
            return Claim(first=False, response=row.response if row else None)

    async def complete(self, key: str, response: dict[str, Any] | None) -> None:
        """Keep the answer given, for a redelivery to receive the same one."""
        async with self.db.unit_of_work() as uow:
            await uow.session.execute(
                update(ProcessedActivity)
                .where(ProcessedActivity.activity_key == key[:600])
                .values(response=response)
            )
            await uow.commit()

    async def forget(self, key: str) -> None:
        """Drop a claim whose turn failed, so a redelivery may try again."""
        async with self.db.unit_of_work() as uow:
            await uow.session.execute(
                delete(ProcessedActivity).where(ProcessedActivity.activity_key == key[:600])
            )
            await uow.commit()

    async def prune(self) -> int:
        """Forget activities older than the retention period."""
        async with self.db.unit_of_work() as uow:
            result = await uow.session.execute(
                delete(ProcessedActivity).where(ProcessedActivity.at < utcnow() - LEDGER_RETENTION)
            )
            await uow.commit()
            return int(getattr(result, "rowcount", 0) or 0)

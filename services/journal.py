"""What every change writes beside itself: an audit entry and, when Microsoft or the PBX must
learn it, an outbox row, all in the change's own transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import AuditEntry, Enterprise, OutboxItem, User, utcnow
from services.pbx.signals import wake_after_commit
from services.provisioning import state
from services.views import SYSTEM, Actor

PBX = "pbx"
# The key of a Microsoft outbox row's payload naming the admin who made the change.
AUTHOR = "by"
_SECRET_MARKERS = ("password", "secret", "token", "ciphertext", "credential")


def redact(values: dict[str, Any] | None) -> dict[str, Any] | None:
    """A copy of `values` with the value of every secret-looking key masked (flags stay)."""
    if values is None:
        return None
    return {
        key: "***"
        if any(marker in key.lower() for marker in _SECRET_MARKERS)
        and not isinstance(value, bool | None)
        else value
        for key, value in values.items()
    }


def audit(
    session: AsyncSession,
    actor: Actor,
    enterprise_id: int | None,
    action: str,
    target: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Record who did what to which record, with secrets redacted.

    The change's rows for Microsoft staged in this transaction are signed with the admin's
    Entra object id too, so the sync that carries them tells its authors when it finished.
    """
    if actor.aad_object_id != SYSTEM.aad_object_id:
        for item in session.new:
            if (
                isinstance(item, OutboxItem)
                and item.channel == state.MICROSOFT
                and AUTHOR not in (item.payload or {})
            ):
                item.payload = {**(item.payload or {}), AUTHOR: actor.aad_object_id}
    session.add(
        AuditEntry(
            enterprise_id=enterprise_id,
            actor=actor.label,
            action=action,
            target=target,
            before=redact(before),
            after=redact(after),
            at=utcnow(),
        )
    )


def enqueue_for_microsoft(
    session: AsyncSession, enterprise: Enterprise, user: User, kind: str, **payload: Any
) -> None:
    """Queue a change for the sync to Microsoft and show the user as waiting for it."""
    session.add(state.outbox_row_for_microsoft(enterprise.id, user.id, kind, payload))
    state.change_queued(user, enterprise)


def enqueue_for_pbx(session: AsyncSession, enterprise_id: int, user_id: int, kind: str) -> None:
    """Queue a push of the user's current line to the PBX, to run as soon as this commits."""
    session.add(
        OutboxItem(
            enterprise_id=enterprise_id,
            user_id=user_id,
            channel=PBX,
            kind=kind,
            # The user id survives the user: a removal still knows whose line to take down.
            payload={"user_id": user_id},
        )
    )
    wake_after_commit(session)


def enqueue_group_for_pbx(
    session: AsyncSession, enterprise_id: int, group_id: int, kind: str
) -> None:
    """Queue a push of a hunt group's queue and numbers to the PBX, after this commits."""
    session.add(
        OutboxItem(
            enterprise_id=enterprise_id,
            user_id=None,
            channel=PBX,
            kind=kind,
            # The group id survives the group: a deletion still knows which queue to remove.
            payload={"group_id": group_id},
        )
    )
    wake_after_commit(session)


async def write_staged(session: AsyncSession) -> None:
    """Write the audit entries and outbox rows staged in the session with one statement per
    table. The ORM's flush inserts them one by one to read each new id back (on SQLite), which
    a bulk import of thousands of users pays for thousands of times; nobody reads those ids."""
    tables: list[tuple[type[OutboxItem | AuditEntry], list[dict[str, Any]]]] = []
    for model in (OutboxItem, AuditEntry):
        columns = [column.key for column in model.__mapper__.column_attrs if column.key != "id"]
        staged = [item for item in session.new if type(item) is model]
        for item in staged:
            # Every one taken out before the first insert, whose autoflush would write them.
            session.expunge(item)
        tables.append(
            (
                model,
                [
                    {key: value for key in columns if (value := getattr(item, key)) is not None}
                    for item in staged
                ],
            )
        )
    for model, rows in tables:
        for shape in {tuple(row) for row in rows}:
            await session.execute(insert(model), [row for row in rows if tuple(row) == shape])

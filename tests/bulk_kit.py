"""Helpers for the bulk import tests: files as people make them, and what a directory holds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select

from services.bulk.service import Bulk
from services.db import Database
from services.models import AuditEntry, Extension, OutboxItem, PhoneNumber, User

HEADER = ["Name", "E-mail", "Licence", "Number", "Extension"]


def sheet(
    rows: Sequence[Sequence[str]],
    header: Sequence[str] = HEADER,
    *,
    delimiter: str = ",",
    encoding: str = "utf-8",
) -> bytes:
    """A CSV file: the header, then the rows, quoted where they need it."""

    def cell(text: str) -> str:
        if any(ch in text for ch in (delimiter, '"', "\n", "\r")):
            return '"' + text.replace('"', '""') + '"'
        return text

    lines = [delimiter.join(cell(c) for c in row) for row in [header, *rows]]
    return ("\r\n".join(lines) + "\r\n").encode(encoding)


async def reasons_by_line(bulk: Bulk, enterprise_id: int, data: bytes) -> dict[int, str]:
    """The preview's rejected rows: line -> reason."""
    preview = await bulk.preview(enterprise_id, data)
    return {row.line: row.reason for row in preview.rejected}


@dataclass(frozen=True)
class Facts:
    """Who the directory holds, who holds numbers and extensions, and per user how many
    create audit entries (by e-mail) and create outbox rows (by id) were written."""

    emails: list[str]
    numbers: list[int | None]
    extensions: list[int | None]
    creates: dict[str, int]
    outbox: dict[int | None, int]


async def directory_facts(db: Database, enterprise_id: int) -> Facts:
    """What must hold after any apply: one user per e-mail, numbers and extensions unique,
    how many create audits and outbox rows each user has."""
    async with db.unit_of_work(readonly=True) as uow:
        s = uow.session
        emails = list(
            (await s.execute(select(User.email).where(User.enterprise_id == enterprise_id)))
            .scalars()
            .all()
        )
        numbers = list(
            (
                await s.execute(
                    select(PhoneNumber.user_id).where(
                        PhoneNumber.enterprise_id == enterprise_id,
                        PhoneNumber.user_id.is_not(None),
                    )
                )
            )
            .scalars()
            .all()
        )
        extensions = list(
            (
                await s.execute(
                    select(Extension.user_id).where(
                        Extension.enterprise_id == enterprise_id, Extension.user_id.is_not(None)
                    )
                )
            )
            .scalars()
            .all()
        )
        creates = dict(
            (
                await s.execute(
                    select(AuditEntry.target, func.count())
                    .where(
                        AuditEntry.enterprise_id == enterprise_id,
                        AuditEntry.action == "user.create",
                    )
                    .group_by(AuditEntry.target)
                )
            ).all()
        )
        outbox = dict(
            (
                await s.execute(
                    select(OutboxItem.user_id, func.count())
                    .where(
                        OutboxItem.enterprise_id == enterprise_id,
                        OutboxItem.kind == "user.create",
                        OutboxItem.user_id.is_not(None),
                    )
                    .group_by(OutboxItem.user_id)
                )
            ).all()
        )
    return Facts(emails, numbers, extensions, creates, outbox)

"""How far the PBX has caught up with each user: on the PBX, being pushed, or waiting to retry."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Row, func, select

from services import journal
from services.db import Database
from services.domain import OutboxStatus
from services.models import OutboxItem


class PbxState(StrEnum):
    """Where a user's latest change stands on the PBX."""

    IN_SYNC = "in_sync"
    PUSHING = "pushing"
    RETRYING = "retrying"


@dataclass(frozen=True)
class PbxStatusView:
    """A user's PBX status as the bot shows it."""

    user_id: int
    state: PbxState
    waiting_changes: int = 0
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: datetime | None = None

    @property
    def summary(self) -> str:
        """One line for an admin: what the PBX holds and, when it failed, why."""
        if self.state is PbxState.IN_SYNC:
            return "On the PBX: up to date."
        if self.state is PbxState.PUSHING:
            return "On its way to the PBX."
        when = f" at {self.next_attempt_at:%H:%M:%S} UTC" if self.next_attempt_at else ""
        return (
            f"The PBX has not taken the latest change yet ({self.last_error}); "
            f"retrying{when}. Nothing is lost."
        )


class PbxStatuses:
    """Reads the PBX status of users from the outbox."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def of_users(
        self, enterprise_id: int, user_ids: Collection[int]
    ) -> dict[int, PbxStatusView]:
        """The PBX status of each of these users of the enterprise."""
        wanted = list(dict.fromkeys(user_ids))
        statuses = {user_id: PbxStatusView(user_id, PbxState.IN_SYNC) for user_id in wanted}
        if not wanted:
            return statuses
        async with self.db.unit_of_work(readonly=True) as uow:
            rows = await uow.session.execute(
                select(
                    OutboxItem.user_id,
                    OutboxItem.attempts,
                    OutboxItem.last_error,
                    OutboxItem.next_attempt_at,
                )
                .where(
                    OutboxItem.enterprise_id == enterprise_id,
                    OutboxItem.channel == journal.PBX,
                    OutboxItem.user_id.in_(wanted),
                    OutboxItem.status.in_([OutboxStatus.PENDING, OutboxStatus.IN_PROGRESS]),
                )
                .order_by(OutboxItem.id)
            )
            waiting: dict[int, list[Row[int | None, int, str | None, datetime]]] = {}
            for row in rows:
                if row.user_id is not None:
                    waiting.setdefault(row.user_id, []).append(row)
        for user_id, items in waiting.items():
            failing = [item for item in items if item.last_error]
            latest = failing[-1] if failing else items[-1]
            statuses[user_id] = PbxStatusView(
                user_id=user_id,
                state=PbxState.RETRYING if failing else PbxState.PUSHING,
                waiting_changes=len(items),
                attempts=max(item.attempts for item in items),
                last_error=latest.last_error,
                next_attempt_at=latest.next_attempt_at if failing else None,
            )
        return statuses

    async def of_user(self, enterprise_id: int, user_id: int) -> PbxStatusView:
        """The PBX status of one user."""
        return (await self.of_users(enterprise_id, [user_id]))[user_id]

    async def waiting(self, enterprise_id: int) -> int:
        """How many changes of the enterprise still wait to reach the PBX."""
        async with self.db.unit_of_work(readonly=True) as uow:
            count = await uow.session.execute(
                select(func.count())
                .select_from(OutboxItem)
                .where(
                    OutboxItem.enterprise_id == enterprise_id,
                    OutboxItem.channel == journal.PBX,
                    OutboxItem.status.in_([OutboxStatus.PENDING, OutboxStatus.IN_PROGRESS]),
                )
            )
            return int(count.scalar_one())

"""How far the PBX has caught up with each user: on the PBX, being pushed, or waiting to retry."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import Row, func, select

from services import journal
from services.db import Database
from services.domain import OutboxStatus, PbxState
from services.models import OutboxItem
from services.views import PbxStatusView


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

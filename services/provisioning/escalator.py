"""The escalator: a run past its promised time is reported to the service provider, once."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import select

from services.db import Database
from services.domain import NoticeKind
from services.models import SyncNotice, SyncRun, utcnow
from services.provisioning import state
from services.queue import lock_skipping_held

# One logger for the whole sync, named as it was before the package split.
logger = logging.getLogger("services.provisioning")


class Escalator:
    """Finds open runs past their promised time and queues the notice to the providers."""

    def __init__(self, db: Database, on_notice: Callable[[], None]) -> None:
        self.db = db
        self.on_notice = on_notice

    async def check_overdue(self) -> int:
        """Mark open runs past their promised time and queue a notice to the providers."""
        now = utcnow()
        async with self.db.unit_of_work() as uow:
            query = select(SyncRun).where(
                state.is_open_run(),
                SyncRun.expected_by < now,
                SyncRun.overdue_notified_at.is_(None),
            )
            runs = list(
                (await uow.session.execute(lock_skipping_held(uow.session, query))).scalars()
            )
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
            self.on_notice()
        return len(runs)

"""The planner: starts automatic runs, and turns each requested run into one item per user."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import column, exists, select, table
from sqlalchemy.ext.asyncio import AsyncSession

from services.db import Database
from services.domain import OutboxStatus, ProvisioningAction, ProvisioningStatus, SyncStatus
from services.journal import AUTHOR
from services.models import Enterprise, OutboxItem, ProvisioningItem, SyncRun, User
from services.provisioning import state
from services.provisioning.work import AUTHORS, WORK_LEFT
from services.queue import lock_skipping_held

# Bulk imports (services/bulk), named here rather than imported: the bulk package builds on
# the whole directory, this sync included.
_BULK_IMPORTS = table("bulk_imports", column("id"), column("enterprise_id"), column("status"))
_BULK_ROWS = table("bulk_import_rows", column("import_id"), column("action"), column("user_id"))
_IMPORT_APPLYING = "applying"
_ROW_CREATES = "create"
# Ids per query when looking up which new users came from a file (SQLite's parameter limit).
_IDS_PER_QUERY = 900

# One logger for the whole sync, named as it was before the package split.
logger = logging.getLogger("services.provisioning")


class Planner:
    """Opens the runs that nobody has to ask for, and plans every requested run."""

    def __init__(self, db: Database, later_sync_hours: int, on_closed: Callable[[], None]) -> None:
        self.db = db
        self.later_sync_hours = later_sync_hours
        self.on_closed = on_closed

    async def start_automatic_runs(self) -> int:
        """Start a run for each enterprise that syncs automatically and has changes waiting,
        unless a bulk import is still applying: its changes go to Microsoft in one run."""
        waiting = (
            select(OutboxItem.enterprise_id)
            .join(Enterprise, Enterprise.id == OutboxItem.enterprise_id)
            .where(
                state.waiting_for_microsoft(),
                state.syncs_automatically_clause(),
                ~exists().where(
                    SyncRun.enterprise_id == OutboxItem.enterprise_id, state.is_open_run()
                ),
                ~exists().where(
                    _BULK_IMPORTS.c.enterprise_id == OutboxItem.enterprise_id,
                    _BULK_IMPORTS.c.status == _IMPORT_APPLYING,
                ),
            )
            .distinct()
        )
        async with self.db.unit_of_work(readonly=True) as uow:
            enterprise_ids = list((await uow.session.execute(waiting)).scalars())
        started = 0
        for enterprise_id in enterprise_ids:
            async with self.db.unit_of_work() as uow:
                run = await state.start_run(
                    uow.session,
                    enterprise_id,
                    is_first=False,
                    requested_by=None,
                    hours=self.later_sync_hours,
                )
                if run is None:
                    continue  # a run opened meanwhile; the changes wait for the next one
                await uow.commit()
            logger.info("Automatic sync %s started for enterprise %s", run.id, enterprise_id)
            started += 1
        return started

    async def plan_next_run(self) -> bool:
        """Turn the oldest requested run into items, one per user; False when none waits."""
        async with self.db.unit_of_work() as uow:
            session = uow.session
            query = (
                select(SyncRun)
                .where(SyncRun.status == SyncStatus.REQUESTED)
                .order_by(SyncRun.requested_at, SyncRun.id)
                .limit(1)
            )
            run = (await session.execute(lock_skipping_held(session, query))).scalar_one_or_none()
            if run is None:
                return False
            await self._plan(session, run)
            await uow.commit()
        if not run.status.is_open:
            self.on_closed()
        return True

    async def _plan(self, session: AsyncSession, run: SyncRun) -> None:
        rows = list(
            (
                await session.execute(
                    select(OutboxItem)
                    .where(state.of_run(run.id), OutboxItem.status == OutboxStatus.PENDING)
                    .order_by(OutboxItem.id)
                )
            ).scalars()
        )
        from_files = await _created_by_imports(
            session,
            run.enterprise_id,
            [row.user_id for row in rows if row.kind == "user.create" and row.user_id is not None],
        )
        per_user: dict[int, ProvisioningItem] = {}
        items: list[ProvisioningItem] = []
        for row in rows:
            row.status = OutboxStatus.IN_PROGRESS
            if row.user_id is None:
                if row.kind == "user.remove":
                    items.append(
                        ProvisioningItem(
                            sync_id=run.id,
                            enterprise_id=run.enterprise_id,
                            user_id=None,
                            action=ProvisioningAction.REMOVE,
                            kinds=[row.kind],
                            payload=dict(row.payload or {}),
                        )
                    )
                else:
                    row.status = OutboxStatus.DONE  # the user is gone: nothing to set up
                continue
            item = per_user.get(row.user_id)
            if item is None:
                item = per_user[row.user_id] = ProvisioningItem(
                    sync_id=run.id,
                    enterprise_id=run.enterprise_id,
                    user_id=row.user_id,
                    action=ProvisioningAction.PROVISION,
                    kinds=[],
                    payload={"fields": []},
                )
                items.append(item)
            if row.kind not in item.kinds:
                item.kinds = [*item.kinds, row.kind]
            fields = (row.payload or {}).get("fields") or []
            payload: dict[str, Any] = {
                "fields": sorted({*item.payload.get("fields", []), *map(str, fields)})
            }
            author = (row.payload or {}).get(AUTHOR)
            authors = list(item.payload.get(AUTHORS, []))
            if (
                row.kind == "user.create"
                and author
                and author not in authors
                and row.user_id not in from_files  # an import's result file is its confirmation
            ):
                authors.append(str(author))  # told by e-mail once the new user is set up
            if authors:
                payload[AUTHORS] = authors
            item.payload = payload
        if not run.is_automatic:
            # A manual sync also retries the users an earlier run could not set up.
            failed = await session.execute(
                select(User.id).where(
                    User.enterprise_id == run.enterprise_id,
                    User.provisioning_status == ProvisioningStatus.FAILED,
                )
            )
            for user_id in failed.scalars():
                if user_id not in per_user:
                    per_user[user_id] = ProvisioningItem(
                        sync_id=run.id,
                        enterprise_id=run.enterprise_id,
                        user_id=user_id,
                        action=ProvisioningAction.PROVISION,
                        kinds=["retry"],
                        payload={"fields": []},
                    )
                    items.append(per_user[user_id])
        session.add_all(items)
        if per_user:
            await state.move_users(
                session, state.ProvisioningEvent.RUN_ATTACHED, User.id.in_(list(per_user))
            )
        state.run_planned(run)
        await session.flush()
        logger.info(
            "Sync %s of enterprise %s planned: %d items from %d changes",
            run.id,
            run.enterprise_id,
            len(items),
            len(rows),
        )
        if not items:
            await state.close_run(session, run)

    async def close_finished_runs(self) -> int:
        """Close running runs with no work left (a safety net for concurrent finishes)."""
        left = exists().where(
            ProvisioningItem.sync_id == SyncRun.id, ProvisioningItem.status.in_(WORK_LEFT)
        )
        async with self.db.unit_of_work(readonly=True) as uow:
            ids = list(
                (
                    await uow.session.execute(
                        select(SyncRun.id).where(SyncRun.status == SyncStatus.RUNNING, ~left)
                    )
                ).scalars()
            )
        closed = 0
        for sync_id in ids:
            async with self.db.unit_of_work() as uow:
                run = await state.lock_run(uow.session, sync_id)
                if run is None or run.status is not SyncStatus.RUNNING:
                    continue
                if await state.work_left(uow.session, sync_id):
                    continue
                await state.close_run(uow.session, run)
                await uow.commit()
                closed += 1
        if closed:
            self.on_closed()
        return closed


async def _created_by_imports(
    session: AsyncSession, enterprise_id: int, user_ids: list[int]
) -> set[int]:
    """Which of these new users a bulk import created: their admin gets the import's result
    file, not one "user added" e-mail per row."""
    found: set[int] = set()
    for start in range(0, len(user_ids), _IDS_PER_QUERY):
        chunk = user_ids[start : start + _IDS_PER_QUERY]
        query = (
            select(_BULK_ROWS.c.user_id)
            .join(_BULK_IMPORTS, _BULK_IMPORTS.c.id == _BULK_ROWS.c.import_id)
            .where(
                _BULK_IMPORTS.c.enterprise_id == enterprise_id,
                _BULK_ROWS.c.action == _ROW_CREATES,
                _BULK_ROWS.c.user_id.in_(chunk),
            )
        )
        found.update((await session.execute(query)).scalars())
    return found

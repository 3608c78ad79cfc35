"""Compare the directory with the PBX, report drift, and repair it on request.

Drift is anything the PBX holds that the directory does not say: endpoints no user owns,
numbers or extensions routed to the wrong endpoint (or routed though nobody holds them),
lines missing, and caller ID, hunt groups or desk phone logins that differ.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from sqlalchemy import select

from services.db import Database
from services.enterprises import load_enterprise
from services.errors import ConflictError
from services.models import User, utcnow
from services.pbx.backend import PbxBackend
from services.pbx.drift import Drift, DriftKind
from services.pbx.lease import give_back, take_lease
from services.pbx.lines import GroupLine, PbxLine, desired_groups, desired_lines
from services.pbx.status import PbxStatuses

__all__ = ["Drift", "DriftKind", "ReconcileReport", "Reconciler"]


@dataclass(frozen=True)
class ReconcileReport:
    """What a reconcile found, and what it left after repairing (when asked to)."""

    enterprise_id: int
    lines_checked: int
    drift: list[Drift]
    remaining: list[Drift] | None = None
    waiting_changes: int = 0

    @property
    def fixed(self) -> bool:
        """Whether a repair ran and left no drift behind."""
        return self.remaining is not None and not self.remaining


class Reconciler:
    """Checks an enterprise's PBX configuration against the directory and repairs it."""

    def __init__(
        self,
        directory_db: Database,
        backend: PbxBackend,
        *,
        lease_seconds: float = 120.0,
        lease_wait: float = 30.0,
    ) -> None:
        self.db = directory_db
        self.backend = backend
        self.lease_seconds = lease_seconds
        self.lease_wait = lease_wait
        self.holder = f"reconcile-{uuid.uuid4().hex[:12]}"

    async def _desired(
        self, enterprise_id: int
    ) -> tuple[list[PbxLine], list[GroupLine], dict[str, str]]:
        async with self.db.unit_of_work(readonly=True) as uow:
            enterprise = await load_enterprise(uow.session, enterprise_id)
            lines = await desired_lines(uow.session, enterprise)
            groups = await desired_groups(uow.session, enterprise)
            names = {
                row.id: row.display_name
                for row in await uow.session.execute(
                    select(User.id, User.display_name).where(User.enterprise_id == enterprise_id)
                )
            }
        return (
            list(lines.values()),
            list(groups.values()),
            {line.endpoint: names[line.user_id] for line in lines.values()},
        )

    async def check(self, enterprise_id: int) -> ReconcileReport:
        """Report the drift between the directory and the PBX, changing nothing."""
        lines, groups, names = await self._desired(enterprise_id)
        found = await self.backend.drift(enterprise_id, lines, groups, names)
        waiting = await PbxStatuses(self.db).waiting(enterprise_id)
        return ReconcileReport(enterprise_id, len(lines), found, None, waiting)

    async def fix(self, enterprise_id: int) -> ReconcileReport:
        """Repair every drift, holding the enterprise's PBX lease so no push interleaves.

        What belongs to the operator (a foreign member of a Switchboard queue) is reported and
        left alone, so it stays in the report after the repair too.
        """
        await self._lease(enterprise_id)
        try:
            lines, groups, names = await self._desired(enterprise_id)
            found = await self.backend.drift(enterprise_id, lines, groups, names)
            await self.backend.repair(enterprise_id, lines, groups, found)
            after = await self.backend.drift(enterprise_id, lines, groups, names)
        finally:
            async with self.db.unit_of_work() as uow:
                await give_back(uow.session, enterprise_id, self.holder, utcnow())
                await uow.commit()
        waiting = await PbxStatuses(self.db).waiting(enterprise_id)
        remaining = [d for d in after if d.kind is not DriftKind.FOREIGN_MEMBER]
        return ReconcileReport(enterprise_id, len(lines), found, remaining, waiting)

    async def _lease(self, enterprise_id: int) -> None:
        deadline = asyncio.get_running_loop().time() + self.lease_wait
        while True:
            async with self.db.unit_of_work() as uow:
                taken = await take_lease(
                    uow.session, enterprise_id, self.holder, utcnow(), self.lease_seconds
                )
                await uow.commit()
            if taken:
                return
            if asyncio.get_running_loop().time() >= deadline:
                raise ConflictError(
                    "The PBX is busy with this enterprise's changes; try the repair again shortly."
                )
            await asyncio.sleep(0.5)

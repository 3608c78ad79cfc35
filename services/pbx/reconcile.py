"""Compare the directory with the PBX, report drift, and repair it on request.

Drift is anything the PBX holds that the directory does not say: endpoints no user owns,
numbers or extensions routed to the wrong endpoint (or routed though nobody holds them),
lines missing, and caller ID, hunt groups or desk phone logins that differ.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select

from services.db import Database
from services.errors import ConflictError
from services.inventory import load_enterprise
from services.models import User, utcnow
from services.pbx.backend import PbxBackend, PbxInventory, RouteKind
from services.pbx.lease import give_back, take_lease
from services.pbx.lines import PbxLine, desired_lines
from services.pbx.status import PbxStatuses
from services.phone import pretty


class DriftKind(StrEnum):
    """The kinds of difference between the directory and the PBX."""

    UNKNOWN_ENDPOINT = "unknown_endpoint"
    MISSING_LINE = "missing_line"
    WRONG_ROUTE = "wrong_route"
    STRAY_ROUTE = "stray_route"
    MISSING_ROUTE = "missing_route"
    CALLER_ID = "caller_id"
    HUNT_GROUPS = "hunt_groups"
    DESK_PHONE = "desk_phone"


@dataclass(frozen=True)
class Drift:
    """One difference, described for an operator."""

    kind: DriftKind
    endpoint: str | None
    detail: str
    route: tuple[RouteKind, str] | None = None


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


def _key_label(kind: RouteKind, key: str) -> str:
    return f"number {pretty(key)}" if kind is RouteKind.DDI else f"extension {key}"


def _caller(line: PbxLine) -> str:
    caller = line.caller_id
    extras = [
        "withheld" if caller.private else "",
        f"PAI {caller.pai_number}" if caller.send_pai else "",
    ]
    shown = ", ".join(e for e in extras if e)
    return caller.rendered() + (f" ({shown})" if shown else "")


def compare(desired: dict[str, PbxLine], held: PbxInventory, names: dict[str, str]) -> list[Drift]:
    """Every difference between the lines the directory wants and what the PBX holds."""
    drift: list[Drift] = []

    def who(endpoint: str | None) -> str:
        if endpoint is None:
            return "nobody"
        name = names.get(endpoint)
        return f"{endpoint} ({name})" if name else endpoint

    for endpoint in sorted(set(held.lines) - set(desired)):
        drift.append(
            Drift(
                DriftKind.UNKNOWN_ENDPOINT,
                endpoint,
                f"endpoint {endpoint} is on the PBX but belongs to no licensed user",
            )
        )
    expected: dict[tuple[RouteKind, str], str] = {}
    for line in desired.values():
        if line.extension is not None:
            expected[(RouteKind.EXTENSION, line.extension)] = line.endpoint
        if line.ddi is not None:
            expected[(RouteKind.DDI, line.ddi)] = line.endpoint
    judged = {k for k, r in held.routes.items() if r.endpoint is not None} | set(expected)
    for kind, key in sorted(judged):
        route = held.routes.get((kind, key))
        owner = expected.get((kind, key))
        label = _key_label(kind, key)
        if route is None:
            drift.append(
                Drift(
                    DriftKind.MISSING_ROUTE,
                    owner,
                    f"{label} is not routed; the directory gives it to {who(owner)}",
                    (kind, key),
                )
            )
        elif owner is None:
            drift.append(
                Drift(
                    DriftKind.STRAY_ROUTE,
                    route.endpoint,
                    f"{label} rings {who(route.endpoint)}, but the directory gives it to nobody",
                    (kind, key),
                )
            )
        elif route.endpoint != owner:
            rung = who(route.endpoint) if route.endpoint else route.target
            drift.append(
                Drift(
                    DriftKind.WRONG_ROUTE,
                    owner,
                    f"{label} rings {rung}; the directory gives it to {who(owner)}",
                    (kind, key),
                )
            )
    for endpoint in sorted(desired):
        want = desired[endpoint]
        have = held.lines.get(endpoint)
        if have is None:
            drift.append(
                Drift(
                    DriftKind.MISSING_LINE,
                    endpoint,
                    f"{who(endpoint)} has no endpoint on the PBX",
                )
            )
            continue
        if have.caller_id != want.caller_id:
            drift.append(
                Drift(
                    DriftKind.CALLER_ID,
                    endpoint,
                    f"caller ID of {who(endpoint)} differs: the PBX has {_caller(have)}, "
                    f"the directory says {_caller(want)}",
                )
            )
        if have.hunt_groups != want.hunt_groups:
            drift.append(
                Drift(
                    DriftKind.HUNT_GROUPS,
                    endpoint,
                    f"hunt groups of {who(endpoint)} differ: the PBX has "
                    f"{', '.join(have.hunt_groups) or 'none'}, the directory says "
                    f"{', '.join(want.hunt_groups) or 'none'}",
                )
            )
        if have.sip != want.sip:
            state = (
                "a different desk phone login"
                if have.sip and want.sip
                else (
                    "a desk phone login the directory does not know"
                    if have.sip
                    else "no desk phone login"
                )
            )
            drift.append(
                Drift(DriftKind.DESK_PHONE, endpoint, f"{who(endpoint)} has {state} on the PBX")
            )
    return drift


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

    async def _desired(self, enterprise_id: int) -> tuple[dict[str, PbxLine], dict[str, str]]:
        async with self.db.unit_of_work(readonly=True) as uow:
            enterprise = await load_enterprise(uow.session, enterprise_id)
            lines = await desired_lines(uow.session, enterprise)
            names = {
                row.id: row.display_name
                for row in await uow.session.execute(
                    select(User.id, User.display_name).where(User.enterprise_id == enterprise_id)
                )
            }
        by_endpoint = {line.endpoint: line for line in lines.values()}
        return by_endpoint, {line.endpoint: names[line.user_id] for line in lines.values()}

    async def check(self, enterprise_id: int) -> ReconcileReport:
        """Report the drift between the directory and the PBX, changing nothing."""
        desired, names = await self._desired(enterprise_id)
        held = await self.backend.inventory(enterprise_id)
        waiting = await PbxStatuses(self.db).waiting(enterprise_id)
        return ReconcileReport(
            enterprise_id, len(desired), compare(desired, held, names), None, waiting
        )

    async def fix(self, enterprise_id: int) -> ReconcileReport:
        """Repair every drift, holding the enterprise's PBX lease so no push interleaves."""
        await self._lease(enterprise_id)
        try:
            desired, names = await self._desired(enterprise_id)
            held = await self.backend.inventory(enterprise_id)
            found = compare(desired, held, names)
            await self._repair(enterprise_id, desired, found)
            after = compare(desired, await self.backend.inventory(enterprise_id), names)
        finally:
            async with self.db.unit_of_work() as uow:
                await give_back(uow.session, enterprise_id, self.holder, utcnow())
                await uow.commit()
        waiting = await PbxStatuses(self.db).waiting(enterprise_id)
        return ReconcileReport(enterprise_id, len(desired), found, after, waiting)

    async def _repair(
        self, enterprise_id: int, desired: dict[str, PbxLine], found: list[Drift]
    ) -> None:
        reprovision: set[str] = set()
        for item in found:
            if item.kind is DriftKind.UNKNOWN_ENDPOINT and item.endpoint is not None:
                await self.backend.remove(enterprise_id, item.endpoint)
            elif item.kind is DriftKind.STRAY_ROUTE and item.route is not None:
                await self.backend.remove_route(enterprise_id, *item.route)
            elif item.endpoint in desired:
                reprovision.add(item.endpoint)
        for endpoint in sorted(reprovision):
            await self.backend.provision(desired[endpoint])

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

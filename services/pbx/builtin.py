"""The built-in PBX: no external PBX; Switchboard's own tables are the PBX configuration.

For providers whose switch reads its configuration from Switchboard's database: `pbx_lines`
(one row per endpoint, with caller ID and desk phone credentials), `pbx_routes` (extensions
and direct numbers, each ringing one endpoint) and `pbx_line_groups` (hunt groups).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

from sqlalchemy import delete, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from services.db import Database
from services.models import BuiltinGroupMember, BuiltinLine, BuiltinRoute
from services.pbx.backend import PbxError, PbxInventory, PbxRoute, RouteKind, describe_error
from services.pbx.drift import Drift, DriftKind, compare, to_rewrite
from services.pbx.lines import CallerIdLine, GroupLine, PbxLine, SipAuth, parse_endpoint


class BuiltinBackend:
    """Keeps the PBX configuration in the directory's own database."""

    name = "builtin"

    def __init__(self, db: Database) -> None:
        self.db = db

    @asynccontextmanager
    async def _transaction(self, *, readonly: bool = False) -> AsyncIterator[AsyncSession]:
        try:
            async with self.db.unit_of_work(readonly=readonly) as uow:
                yield uow.session
                await uow.commit()
        except (DBAPIError, OSError, TimeoutError) as error:
            raise PbxError(describe_error(error)) from None

    async def provision(self, line: PbxLine) -> None:
        """Store the line, take over the routes it claims and set its hunt groups."""
        async with self._transaction() as session:
            await session.execute(delete(BuiltinLine).where(BuiltinLine.endpoint == line.endpoint))
            caller = line.caller_id
            session.add(
                BuiltinLine(
                    endpoint=line.endpoint,
                    enterprise_id=line.enterprise_id,
                    user_id=line.user_id,
                    caller_name=caller.name,
                    caller_number=caller.number,
                    caller_private=caller.private,
                    send_pai=caller.send_pai,
                    pai_number=caller.pai_number,
                    sip_username=line.sip.username if line.sip else None,
                    sip_realm=line.sip.realm if line.sip else None,
                    sip_md5_cred=line.sip.md5_cred if line.sip else None,
                )
            )
            await _write_routes(
                session, line.enterprise_id, line.endpoint, line.extension, line.ddi
            )
            await self._write_groups(session, line.endpoint, line.hunt_groups)

    async def remove(self, enterprise_id: int, endpoint: str) -> None:
        """Delete the line, its routes and its hunt-group memberships."""
        async with self._transaction() as session:
            await session.execute(delete(BuiltinLine).where(BuiltinLine.endpoint == endpoint))
            await session.execute(
                delete(BuiltinRoute).where(
                    BuiltinRoute.enterprise_id == enterprise_id,
                    BuiltinRoute.endpoint == endpoint,
                )
            )
            await session.execute(
                delete(BuiltinGroupMember).where(BuiltinGroupMember.endpoint == endpoint)
            )

    async def provision_group(self, group: GroupLine) -> None:
        """Route the group's extension and number to its queue (the route names the queue)."""
        async with self._transaction() as session:
            await _write_routes(
                session, group.enterprise_id, group.queue, group.extension, group.ddi
            )

    async def remove_group(self, enterprise_id: int, queue: str) -> None:
        """Delete the group's routes and memberships."""
        async with self._transaction() as session:
            await session.execute(
                delete(BuiltinRoute).where(
                    BuiltinRoute.enterprise_id == enterprise_id, BuiltinRoute.endpoint == queue
                )
            )
            await session.execute(
                delete(BuiltinGroupMember).where(BuiltinGroupMember.queue_name == queue)
            )

    async def drift(
        self,
        enterprise_id: int,
        lines: Sequence[PbxLine],
        groups: Sequence[GroupLine],
        names: Mapping[str, str],
    ) -> list[Drift]:
        """The differences between the stored configuration and the directory."""
        held = await self.inventory(enterprise_id)
        return compare({line.endpoint: line for line in lines}, held, names, groups)

    async def repair(
        self,
        enterprise_id: int,
        lines: Sequence[PbxLine],
        groups: Sequence[GroupLine],
        found: Sequence[Drift],
    ) -> None:
        """Store again every line and group a drift names; drop what nobody owns."""
        for item in found:
            if item.kind is DriftKind.UNKNOWN_ENDPOINT and item.endpoint is not None:
                await self.remove(enterprise_id, item.endpoint)
            elif item.kind is DriftKind.STRAY_ROUTE and item.route is not None:
                await self.remove_route(enterprise_id, *item.route)
        rewrite_lines, rewrite_groups = to_rewrite(found, lines, groups)
        for group in rewrite_groups:
            await self.provision_group(group)
        for line in rewrite_lines:
            await self.provision(line)

    async def set_hunt_groups(
        self, enterprise_id: int, endpoint: str, member_name: str, queues: tuple[str, ...]
    ) -> None:
        """Make the line a member of exactly these hunt groups."""
        async with self._transaction() as session:
            await self._write_groups(session, endpoint, queues)

    async def remove_route(self, enterprise_id: int, kind: RouteKind, key: str) -> None:
        """Delete one extension or number."""
        async with self._transaction() as session:
            await session.execute(
                delete(BuiltinRoute).where(
                    BuiltinRoute.enterprise_id == enterprise_id,
                    BuiltinRoute.kind == kind.value,
                    BuiltinRoute.key == key,
                )
            )

    async def read(self, enterprise_id: int, endpoint: str) -> PbxLine | None:
        """The stored line of one endpoint."""
        return (await self._inventory(enterprise_id, endpoint)).lines.get(endpoint)

    async def inventory(self, enterprise_id: int) -> PbxInventory:
        """Every line and route of the enterprise."""
        return await self._inventory(enterprise_id, None)

    async def close(self) -> None:
        """Nothing to close: the directory owns its database."""

    @staticmethod
    async def _write_groups(session: AsyncSession, endpoint: str, queues: tuple[str, ...]) -> None:
        await session.execute(
            delete(BuiltinGroupMember).where(BuiltinGroupMember.endpoint == endpoint)
        )
        for name in sorted(set(queues)):
            session.add(BuiltinGroupMember(queue_name=name, endpoint=endpoint))
        await session.flush()

    async def _inventory(self, enterprise_id: int, only: str | None) -> PbxInventory:
        async with self._transaction(readonly=True) as session:
            line_query = select(BuiltinLine).where(BuiltinLine.enterprise_id == enterprise_id)
            route_query = select(BuiltinRoute).where(BuiltinRoute.enterprise_id == enterprise_id)
            group_query = (
                select(BuiltinGroupMember)
                .join(BuiltinLine, BuiltinLine.endpoint == BuiltinGroupMember.endpoint)
                .where(BuiltinLine.enterprise_id == enterprise_id)
            )
            if only is not None:
                line_query = line_query.where(BuiltinLine.endpoint == only)
                route_query = route_query.where(BuiltinRoute.endpoint == only)
                group_query = group_query.where(BuiltinGroupMember.endpoint == only)
            stored = list((await session.execute(line_query)).scalars())
            route_rows = list((await session.execute(route_query)).scalars())
            groups: dict[str, list[str]] = {}
            for member in (await session.execute(group_query)).scalars():
                groups.setdefault(member.endpoint, []).append(member.queue_name)
        routes = {
            (RouteKind(r.kind), r.key): PbxRoute(
                kind=RouteKind(r.kind),
                key=r.key,
                endpoint=r.endpoint if parse_endpoint(r.endpoint) else None,
                target=r.endpoint,
            )
            for r in route_rows
        }
        lines: dict[str, PbxLine] = {}
        for row in stored:
            owned = {k: key for (k, key), r in routes.items() if r.endpoint == row.endpoint}
            lines[row.endpoint] = PbxLine(
                endpoint=row.endpoint,
                enterprise_id=row.enterprise_id,
                user_id=row.user_id,
                extension=owned.get(RouteKind.EXTENSION),
                ddi=owned.get(RouteKind.DDI),
                caller_id=CallerIdLine(
                    name=row.caller_name,
                    number=row.caller_number,
                    private=row.caller_private,
                    send_pai=row.send_pai,
                    pai_number=row.pai_number,
                ),
                sip=SipAuth(row.sip_username, row.sip_realm or "", row.sip_md5_cred or "")
                if row.sip_username
                else None,
                hunt_groups=tuple(sorted(groups.get(row.endpoint, []))),
            )
        return PbxInventory(lines=lines, routes=routes)


async def _write_routes(
    session: AsyncSession, enterprise_id: int, target: str, extension: str | None, ddi: str | None
) -> None:
    """Route exactly these keys to the target (an endpoint or a queue), taking them over."""
    await session.execute(
        delete(BuiltinRoute).where(
            BuiltinRoute.enterprise_id == enterprise_id, BuiltinRoute.endpoint == target
        )
    )
    for kind, key in ((RouteKind.EXTENSION, extension), (RouteKind.DDI, ddi)):
        if key is None:
            continue
        await session.execute(
            delete(BuiltinRoute).where(
                BuiltinRoute.enterprise_id == enterprise_id,
                BuiltinRoute.kind == kind.value,
                BuiltinRoute.key == key,
            )
        )
        session.add(
            BuiltinRoute(enterprise_id=enterprise_id, kind=kind.value, key=key, endpoint=target)
        )

"""Asterisk PJSIP Realtime: what Switchboard writes into Asterisk's own realtime tables.

Table and column names are Asterisk's (contrib/ast-db-manage, the `config` tree). Asterisk
declares several columns as PostgreSQL ENUM types whose names changed between releases, so
values for them are bound untyped and PostgreSQL takes the column's type.

What a user is on the PBX (see docs/PBX_SETUP.md for the static part around it):

- a ring row (`sb-e<E>-ring`, exten `u<id>`): `Dial` of the user's legs, the desk phone's
  endpoint and the Teams trunk with the user's E.164 number as the Request-URI user;
- route rows: the extension (`sb-e<E>-ext`) and the direct number (`sb-e<E>-ddi`, E.164)
  `Goto` the ring row;
- identity rows (`sb-e<E>-id`, exten = the user's E.164 number): a call arriving from Teams
  with that calling number gets the user's caller ID (number, name, presentation, PAI);
- only with a desk phone login, a PJSIP endpoint, AOR and digest auth. A user without a desk
  phone has no endpoint at all, so nobody can register or call as them;
- queue members `Local/u<id>@sb-e<E>-ring/n` in the hunt groups' queues, so a queue call
  rings the desk phone and Teams alike.

Caller ID for calls to the PSTN is applied in the outbound route from channel variables
(`SB_PAI`) and the caller's presentation, never through `send_pai`/`trust_id_outbound` on a
user's endpoint: those shape what Asterisk sends *to* that endpoint.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.types import UserDefinedType

from services.dburl import async_database_url
from services.pbx.backend import PbxError, PbxInventory, PbxRoute, RouteKind, describe_error
from services.pbx.drift import Drift, DriftKind, Names, key_label, to_rewrite
from services.pbx.lines import (
    PREFIX,
    CallerIdLine,
    GroupLine,
    PbxLine,
    SipAuth,
    ddi_context,
    dial_context,
    endpoint_id,
    endpoint_prefix,
    extension_context,
    identity_context,
    parse_endpoint,
    ring_context,
    ring_key,
)

# The trunk endpoints `switchboard pbx config` writes; ring rows dial Teams through this one.
TEAMS_TRUNK = f"{PREFIX}-teams"
PSTN_TRUNK = f"{PREFIX}-pstn"
RING_SECONDS = 30
USER_VARIABLE = "SB_USER"
PAI_VARIABLE = "SB_PAI"
DIAL_VARIABLE = "SB_DIAL"
# Two-key advisory locks (PostgreSQL): per enterprise, and one for queue_members.uniqueid.
_LOCK_SPACE = 0x5B0A
_QUEUE_MEMBERS_LOCK = 0
_CALLERID = re.compile(r'^\s*"(?P<name>.*)"\s*<(?P<number>[^>]*)>\s*$')
_RING_KEY = re.compile(r"^u(\d+)$")
_QUEUE = re.compile(rf"^{PREFIX}-e(\d+)-g(\d+)$")


class AsteriskEnum(UserDefinedType[str]):
    """A column Asterisk declares as an ENUM: bound without a cast, read as text."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "VARCHAR(40)"


METADATA = MetaData()

ps_endpoints = Table(
    "ps_endpoints",
    METADATA,
    Column("id", String(255), nullable=False),
    Column("transport", String(40)),
    Column("aors", String(2048)),
    Column("auth", String(255)),
    Column("context", String(40)),
    Column("disallow", String(200)),
    Column("allow", String(200)),
    Column("direct_media", AsteriskEnum()),
    Column("callerid", String(40)),
    Column("callerid_privacy", AsteriskEnum()),
    Column("send_pai", AsteriskEnum()),
    Column("send_rpid", AsteriskEnum()),
    Column("trust_id_inbound", AsteriskEnum()),
    Column("trust_id_outbound", AsteriskEnum()),
    Column("identify_by", String(80)),
    Column("set_var", Text),
)
ps_aors = Table(
    "ps_aors",
    METADATA,
    Column("id", String(255), nullable=False),
    Column("max_contacts", Integer),
    Column("remove_existing", AsteriskEnum()),
)
ps_auths = Table(
    "ps_auths",
    METADATA,
    Column("id", String(255), nullable=False),
    Column("auth_type", AsteriskEnum()),
    Column("md5_cred", String(40)),
    Column("password", String(80)),
    Column("realm", String(255)),
    Column("username", String(40)),
)
extensions = Table(
    "extensions",
    METADATA,
    Column("id", BigInteger),
    Column("context", String(40), nullable=False),
    Column("exten", String(40), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("app", String(40), nullable=False),
    Column("appdata", String(256), nullable=False),
)
queues = Table(
    "queues",
    METADATA,
    Column("name", String(128), nullable=False),
    Column("strategy", AsteriskEnum()),
)
queue_members = Table(
    "queue_members",
    METADATA,
    Column("queue_name", String(80), nullable=False),
    Column("interface", String(80), nullable=False),
    Column("membername", String(80)),
    Column("uniqueid", Integer, nullable=False),
)

# The columns of a user's endpoint that Switchboard owns, and so compares and repairs.
ENDPOINT_COLUMNS = tuple(c.name for c in ps_endpoints.columns if c.name != "id")
AOR_COLUMNS = ("max_contacts", "remove_existing")
AUTH_COLUMNS = ("auth_type", "username", "realm", "md5_cred", "password")
_CALLER_ID_COLUMNS = {"callerid", "callerid_privacy", "set_var"}


@dataclass(frozen=True)
class EndpointTemplate:
    """The endpoint settings that are the same for every desk phone (the provider's choice)."""

    transport: str | None = None
    disallow: str = "all"
    allow: str = "g722,alaw,ulaw"
    max_contacts: int = 1


def create_pbx_engine(url: str, *, connect_timeout: float = 5.0) -> AsyncEngine:
    """An engine for Asterisk's realtime database that never logs parameters and gives up
    quickly."""
    return create_async_engine(
        async_database_url(url, setting="PBX_DATABASE_URL"),
        hide_parameters=True,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        connect_args={"timeout": connect_timeout, "command_timeout": 3 * connect_timeout},
    )


# --- what a line and a group are on Asterisk -------------------------------------------------

Row = dict[str, Any]
DialplanRow = tuple[str, str, int, str, str]  # context, exten, priority, app, appdata


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def ring_goto(line: PbxLine) -> str:
    """Where a route to the user goes: their ring row."""
    return f"{ring_context(line.enterprise_id)},{ring_key(line.user_id)},1"


def member_interface(enterprise_id: int, user_id: int) -> str:
    """The queue member that rings the user's ring row (desk phone and Teams)."""
    return f"Local/{ring_key(user_id)}@{ring_context(enterprise_id)}/n"


def ring_target(line: PbxLine) -> tuple[str, str]:
    """The application and data of the user's ring row."""
    legs = [f"PJSIP/{line.endpoint}"] if line.sip is not None else []
    if line.ddi is not None:
        legs.append(f"PJSIP/{line.ddi}@{TEAMS_TRUNK}")
    if not legs:
        return "Hangup", "20"  # subscriber absent: nothing can ring
    return "Dial", "&".join(legs) + f",{RING_SECONDS}"


def identity_rows(line: PbxLine) -> list[DialplanRow]:
    """The rows that give a Teams call from the user's number the user's caller ID."""
    if line.ddi is None:
        return []
    caller = line.caller_id
    context = identity_context(line.enterprise_id)
    steps = [
        ("Set", f"{USER_VARIABLE}={ring_key(line.user_id)}"),
        ("Set", f"CALLERID(num)={caller.number}"),
        ("Set", f"CALLERID(name)={caller.name}"),
        ("Set", f"CALLERID(pres)={'prohib' if caller.private else 'allowed_not_screened'}"),
        ("Set", f"{PAI_VARIABLE}={caller.pai_number or '' if caller.send_pai else ''}"),
        ("Set", f"{DIAL_VARIABLE}={dial_context(line.enterprise_id)}"),
        ("Return", ""),
    ]
    return [
        (context, line.ddi, priority, app, data)
        for priority, (app, data) in enumerate(steps, start=1)
    ]


def line_dialplan(line: PbxLine) -> list[DialplanRow]:
    """Every dialplan row of one user."""
    app, data = ring_target(line)
    rows: list[DialplanRow] = [
        (ring_context(line.enterprise_id), ring_key(line.user_id), 1, app, data)
    ]
    if line.extension is not None:
        rows.append(
            (extension_context(line.enterprise_id), line.extension, 1, "Goto", ring_goto(line))
        )
    if line.ddi is not None:
        rows.append((ddi_context(line.enterprise_id), line.ddi, 1, "Goto", ring_goto(line)))
    return rows + identity_rows(line)


def group_dialplan(group: GroupLine) -> list[DialplanRow]:
    """The routes of a hunt group's extension and number to its queue."""
    rows: list[DialplanRow] = []
    if group.extension is not None:
        rows.append(
            (extension_context(group.enterprise_id), group.extension, 1, "Queue", group.queue)
        )
    if group.ddi is not None:
        rows.append((ddi_context(group.enterprise_id), group.ddi, 1, "Queue", group.queue))
    return rows


def endpoint_row(line: PbxLine, template: EndpointTemplate) -> Row | None:
    """The desk phone's endpoint, or None: without a login the user has no endpoint at all."""
    if line.sip is None:
        return None
    caller = line.caller_id
    variables = [f"{USER_VARIABLE}={ring_key(line.user_id)}"]
    if caller.send_pai and caller.pai_number:
        variables.append(f"{PAI_VARIABLE}={caller.pai_number}")
    return {
        "id": line.endpoint,
        "transport": template.transport,
        "aors": line.endpoint,
        "auth": line.endpoint,
        "context": dial_context(line.enterprise_id),
        "disallow": template.disallow,
        "allow": template.allow,
        "direct_media": "no",
        "callerid": caller.rendered(),
        "callerid_privacy": "prohib" if caller.private else "allowed_not_screened",
        # Identity headers towards the phone: never another caller's withheld identity.
        "send_pai": "no",
        "send_rpid": "no",
        "trust_id_inbound": "no",
        "trust_id_outbound": "no",
        "identify_by": "username",
        "set_var": ";".join(variables),
    }


def aor_row(line: PbxLine, template: EndpointTemplate) -> Row | None:
    """The desk phone's address of record."""
    if line.sip is None:
        return None
    return {"id": line.endpoint, "max_contacts": template.max_contacts, "remove_existing": "yes"}


def auth_row(line: PbxLine) -> Row | None:
    """The desk phone's digest credentials (the hash, never the password)."""
    if line.sip is None:
        return None
    return {
        "id": line.endpoint,
        "auth_type": "md5",
        "username": line.sip.username,
        "realm": line.sip.realm,
        "md5_cred": line.sip.md5_cred,
        "password": None,
    }


# --- reading rows back -------------------------------------------------------------------------


def _ring_user(context: str, exten: str, enterprise_id: int) -> int | None:
    if context != ring_context(enterprise_id):
        return None
    match = _RING_KEY.match(exten)
    return int(match.group(1)) if match else None


def _route_user(app: str, appdata: str, enterprise_id: int) -> int | None:
    """The user a route row rings, when it goes to a ring row of this enterprise."""
    if app != "Goto":
        return None
    parts = appdata.split(",")
    if len(parts) != 3 or parts[0] != ring_context(enterprise_id) or parts[2] != "1":
        return None
    match = _RING_KEY.match(parts[1])
    return int(match.group(1)) if match else None


def _route_queue(app: str, appdata: str, enterprise_id: int) -> str | None:
    """The Switchboard queue a route row rings, if any."""
    if app != "Queue":
        return None
    name = appdata.split(",", 1)[0]
    match = _QUEUE.match(name)
    return name if match and int(match.group(1)) == enterprise_id else None


def _member_user(interface: str, enterprise_id: int) -> int | None:
    prefix, suffix = "Local/", f"@{ring_context(enterprise_id)}/n"
    if not (interface.startswith(prefix) and interface.endswith(suffix)):
        return None
    match = _RING_KEY.match(interface[len(prefix) : -len(suffix)])
    return int(match.group(1)) if match else None


def _set_value(rows: dict[int, tuple[str, str]], priority: int, name: str) -> str | None:
    app, data = rows.get(priority, ("", ""))
    variable, _, value = data.partition("=")
    return value if app == "Set" and variable == name else None


def _caller_from_identity(rows: dict[int, tuple[str, str]]) -> CallerIdLine:
    pai = _set_value(rows, 5, PAI_VARIABLE) or None
    return CallerIdLine(
        name=_set_value(rows, 3, "CALLERID(name)") or "",
        number=_set_value(rows, 2, "CALLERID(num)") or "",
        private=(_set_value(rows, 4, "CALLERID(pres)") or "").startswith("prohib"),
        send_pai=pai is not None,
        pai_number=pai,
    )


def _caller_from_endpoint(row: Any) -> CallerIdLine:
    match = _CALLERID.match(row.callerid or "")
    name, number = (match["name"], match["number"]) if match else (row.callerid or "", "")
    pai = None
    for assignment in (row.set_var or "").split(";"):
        variable, _, value = assignment.partition("=")
        if variable.strip() == PAI_VARIABLE and value.strip():
            pai = value.strip()
    return CallerIdLine(
        name=name,
        number=number,
        private=(row.callerid_privacy or "").startswith("prohib"),
        send_pai=pai is not None,
        pai_number=pai,
    )


@dataclass
class _Held:
    """The rows of one enterprise in Switchboard's part of Asterisk's tables."""

    endpoints: dict[str, Any]
    aors: dict[str, Any]
    auths: dict[str, Any]
    dialplan: dict[tuple[str, str, int], tuple[str, str]]
    queues: dict[str, Any]
    members: dict[tuple[str, str], Any]


class AsteriskBackend:
    """Provisions users and hunt groups into Asterisk's PJSIP Realtime database (PostgreSQL)."""

    name = "asterisk"

    def __init__(
        self,
        url: str,
        *,
        template: EndpointTemplate | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        self.engine = create_pbx_engine(url, connect_timeout=connect_timeout)
        self.template = template or EndpointTemplate()

    @asynccontextmanager
    async def _transaction(
        self, enterprise_id: int | None = None
    ) -> AsyncIterator[AsyncConnection]:
        """One PBX transaction, with PBX failures turned into PbxError."""
        try:
            async with self.engine.begin() as connection:
                if enterprise_id is not None:
                    await connection.execute(
                        select(func.pg_advisory_xact_lock(_LOCK_SPACE, enterprise_id))
                    )
                yield connection
        except PbxError:
            raise
        except (DBAPIError, OSError, TimeoutError) as error:
            raise PbxError(describe_error(error)) from None

    # --- the PbxBackend protocol -----------------------------------------------------------

    async def provision(self, line: PbxLine) -> None:
        """Write the user's endpoint (desk phone only), routes, ring, identity and queues."""
        async with self._transaction(line.enterprise_id) as connection:
            await self._write_line(connection, line)

    async def remove(self, enterprise_id: int, endpoint: str) -> None:
        """Take every row of the user off the PBX: nothing rings them, nobody calls as them."""
        async with self._transaction(enterprise_id) as connection:
            await self._remove_user(connection, enterprise_id, endpoint)

    async def provision_group(self, group: GroupLine) -> None:
        """Write the hunt group's queue and the routes of its extension and number."""
        async with self._transaction(group.enterprise_id) as connection:
            await self._write_group(connection, group)

    async def remove_group(self, enterprise_id: int, queue: str) -> None:
        """Take the hunt group's queue, members and routes off the PBX."""
        async with self._transaction(enterprise_id) as connection:
            await self._delete_group_routes(connection, enterprise_id, queue)
            await connection.execute(
                delete(queue_members).where(queue_members.c.queue_name == queue)
            )
            await connection.execute(delete(queues).where(queues.c.name == queue))

    async def set_hunt_groups(
        self, enterprise_id: int, endpoint: str, member_name: str, queue_names: tuple[str, ...]
    ) -> None:
        """Make the user a member of exactly these queues."""
        parsed = parse_endpoint(endpoint)
        if parsed is None:
            return
        async with self._transaction(enterprise_id) as connection:
            await self._write_queues(connection, enterprise_id, parsed[1], member_name, queue_names)

    async def remove_route(self, enterprise_id: int, kind: RouteKind, key: str) -> None:
        """Delete every priority of one extension or number from the enterprise's dialplan."""
        async with self._transaction(enterprise_id) as connection:
            await connection.execute(
                delete(extensions).where(
                    extensions.c.context == _route_context(enterprise_id, kind),
                    extensions.c.exten == key,
                )
            )

    async def read(self, enterprise_id: int, endpoint: str) -> PbxLine | None:
        """What the PBX holds for one user."""
        return (await self.inventory(enterprise_id)).lines.get(endpoint)

    async def inventory(self, enterprise_id: int) -> PbxInventory:
        """Every Switchboard line, route and hunt group of the enterprise, as Asterisk has them."""
        async with self._transaction() as connection:
            held = await self._held(connection, enterprise_id)
        return _inventory(enterprise_id, held)

    async def drift(
        self,
        enterprise_id: int,
        lines: Sequence[PbxLine],
        groups: Sequence[GroupLine],
        names: Names,
    ) -> list[Drift]:
        """Every row and column Switchboard owns that differs from what it would write."""
        async with self._transaction() as connection:
            held = await self._held(connection, enterprise_id)
        return _row_drift(enterprise_id, lines, groups, held, self.template, names)

    async def repair(
        self,
        enterprise_id: int,
        lines: Sequence[PbxLine],
        groups: Sequence[GroupLine],
        found: Sequence[Drift],
    ) -> None:
        """Rewrite every line and group a drift names; delete the rows nobody owns."""
        rewrite_lines, rewrite_groups = to_rewrite(found, lines, groups)
        async with self._transaction(enterprise_id) as connection:
            for item in found:
                if item.row is not None:
                    await _delete_row(connection, *item.row)
            for item in found:
                if item.kind is DriftKind.UNKNOWN_ENDPOINT and item.endpoint is not None:
                    await self._remove_user(connection, enterprise_id, item.endpoint)
            for group in rewrite_groups:
                await self._write_group(connection, group)
            for line in rewrite_lines:
                await self._write_line(connection, line)

    async def close(self) -> None:
        """Close the pooled PBX connections."""
        await self.engine.dispose()

    # --- writing -----------------------------------------------------------------------------

    async def _write_line(self, connection: AsyncConnection, line: PbxLine) -> None:
        for table in (ps_endpoints, ps_aors, ps_auths):
            await connection.execute(delete(table).where(table.c.id == line.endpoint))
        for table, row in (
            (ps_endpoints, endpoint_row(line, self.template)),
            (ps_aors, aor_row(line, self.template)),
            (ps_auths, auth_row(line)),
        ):
            if row is not None:
                await connection.execute(insert(table).values(row))
        await self._delete_user_dialplan(connection, line.enterprise_id, line.user_id)
        rows = line_dialplan(line)
        # A key the line claims is taken over from whoever held it.
        claimed = [(context, exten) for context, exten, *_ in rows]
        await connection.execute(
            delete(extensions).where(tuple_(extensions.c.context, extensions.c.exten).in_(claimed))
        )
        await _insert_dialplan(connection, rows)
        await self._write_queues(
            connection, line.enterprise_id, line.user_id, line.caller_id.name, line.hunt_groups
        )

    async def _remove_user(
        self, connection: AsyncConnection, enterprise_id: int, endpoint: str
    ) -> None:
        """Every row of one user: endpoint, AOR, auth, dialplan and queue memberships."""
        for table in (ps_endpoints, ps_aors, ps_auths):
            await connection.execute(delete(table).where(table.c.id == endpoint))
        parsed = parse_endpoint(endpoint)
        if parsed is None:
            return
        await self._delete_user_dialplan(connection, enterprise_id, parsed[1])
        await connection.execute(
            delete(queue_members).where(
                queue_members.c.interface == member_interface(enterprise_id, parsed[1])
            )
        )

    async def _delete_user_dialplan(
        self, connection: AsyncConnection, enterprise_id: int, user_id: int
    ) -> None:
        """The user's ring row, every route to it and their identity rows."""
        key = ring_key(user_id)
        goto = f"{ring_context(enterprise_id)},{key},1"
        identity = identity_context(enterprise_id)
        numbers = (
            select(extensions.c.exten)
            .where(
                extensions.c.context == identity,
                extensions.c.priority == 1,
                extensions.c.appdata == f"{USER_VARIABLE}={key}",
            )
            .scalar_subquery()
        )
        await connection.execute(
            delete(extensions).where(
                or_(
                    and_(
                        extensions.c.context == ring_context(enterprise_id),
                        extensions.c.exten == key,
                    ),
                    and_(
                        extensions.c.context.in_(
                            [extension_context(enterprise_id), ddi_context(enterprise_id)]
                        ),
                        extensions.c.app == "Goto",
                        extensions.c.appdata == goto,
                    ),
                    and_(extensions.c.context == identity, extensions.c.exten.in_(numbers)),
                )
            )
        )

    async def _delete_group_routes(
        self, connection: AsyncConnection, enterprise_id: int, queue: str
    ) -> None:
        await connection.execute(
            delete(extensions).where(
                extensions.c.context.in_(
                    [extension_context(enterprise_id), ddi_context(enterprise_id)]
                ),
                extensions.c.app == "Queue",
                extensions.c.appdata == queue,
            )
        )

    async def _write_group(self, connection: AsyncConnection, group: GroupLine) -> None:
        await self._delete_group_routes(connection, group.enterprise_id, group.queue)
        rows = group_dialplan(group)
        if rows:
            claimed = [(context, exten) for context, exten, *_ in rows]
            await connection.execute(
                delete(extensions).where(
                    tuple_(extensions.c.context, extensions.c.exten).in_(claimed)
                )
            )
            await _insert_dialplan(connection, rows)
        exists = await connection.execute(select(queues.c.name).where(queues.c.name == group.queue))
        if exists.first() is None:
            await connection.execute(
                insert(queues).values(name=group.queue, strategy=group.strategy)
            )
        else:
            await connection.execute(
                update(queues).where(queues.c.name == group.queue).values(strategy=group.strategy)
            )

    async def _write_queues(
        self,
        connection: AsyncConnection,
        enterprise_id: int,
        user_id: int,
        member_name: str,
        wanted: Iterable[str],
    ) -> None:
        interface = member_interface(enterprise_id, user_id)
        wanted_set = set(wanted)
        current = {
            row.queue_name: row.membername
            for row in await connection.execute(
                select(queue_members.c.queue_name, queue_members.c.membername).where(
                    queue_members.c.interface == interface
                )
            )
        }
        gone = set(current) - wanted_set
        if gone:
            await connection.execute(
                delete(queue_members).where(
                    queue_members.c.interface == interface,
                    queue_members.c.queue_name.in_(sorted(gone)),
                )
            )
        renamed = [name for name in wanted_set & set(current) if current[name] != member_name]
        if renamed:
            await connection.execute(
                update(queue_members)
                .where(
                    queue_members.c.interface == interface,
                    queue_members.c.queue_name.in_(sorted(renamed)),
                )
                .values(membername=member_name)
            )
        missing = sorted(wanted_set - set(current))
        if not missing:
            return
        # Asterisk's uniqueid has no default on PostgreSQL: number members one at a time.
        await connection.execute(
            select(func.pg_advisory_xact_lock(_LOCK_SPACE, _QUEUE_MEMBERS_LOCK))
        )
        for name in missing:
            exists = await connection.execute(select(queues.c.name).where(queues.c.name == name))
            if exists.first() is None:
                await connection.execute(insert(queues).values(name=name, strategy="ringall"))
            next_id = select(
                literal(name, String(80)),
                literal(interface, String(80)),
                literal(member_name, String(80)),
                func.coalesce(func.max(queue_members.c.uniqueid), 0) + 1,
            ).select_from(queue_members)
            await connection.execute(
                insert(queue_members).from_select(
                    ["queue_name", "interface", "membername", "uniqueid"], next_id
                )
            )

    # --- reading -----------------------------------------------------------------------------

    async def _held(self, connection: AsyncConnection, enterprise_id: int) -> _Held:
        prefix = endpoint_prefix(enterprise_id) + "%"
        queue_prefix = f"{PREFIX}-e{enterprise_id}-g%"
        contexts = [
            extension_context(enterprise_id),
            ddi_context(enterprise_id),
            ring_context(enterprise_id),
            identity_context(enterprise_id),
        ]

        async def by_id(table: Table) -> dict[str, Any]:
            rows = await connection.execute(select(table).where(table.c.id.like(prefix)))
            return {row.id: row for row in rows if parse_endpoint(row.id) is not None}

        dialplan = {
            (row.context, row.exten, row.priority): (row.app, row.appdata)
            for row in await connection.execute(
                select(extensions).where(extensions.c.context.in_(contexts))
            )
        }
        queue_rows = {
            row.name: row
            for row in await connection.execute(
                select(queues).where(queues.c.name.like(queue_prefix))
            )
            if _QUEUE.match(row.name)
        }
        members = {
            (row.queue_name, row.interface): row
            for row in await connection.execute(
                select(queue_members).where(
                    or_(
                        queue_members.c.queue_name.like(queue_prefix),
                        queue_members.c.interface.like(f"Local/u%@{ring_context(enterprise_id)}/n"),
                    )
                )
            )
        }
        return _Held(
            endpoints=await by_id(ps_endpoints),
            aors=await by_id(ps_aors),
            auths=await by_id(ps_auths),
            dialplan=dialplan,
            queues=queue_rows,
            members=members,
        )


async def _insert_dialplan(connection: AsyncConnection, rows: Sequence[DialplanRow]) -> None:
    await connection.execute(
        insert(extensions),
        [
            {"context": c, "exten": e, "priority": p, "app": a, "appdata": d}
            for c, e, p, a, d in rows
        ],
    )


async def _delete_row(connection: AsyncConnection, table_name: str, key: str) -> None:
    """Delete one row Switchboard owns but nothing needs (an orphan or a stray route)."""
    if table_name == "extensions":
        context, _, exten = key.partition("/")
        await connection.execute(
            delete(extensions).where(extensions.c.context == context, extensions.c.exten == exten)
        )
        return
    if table_name == "queues":
        await connection.execute(
            delete(queue_members).where(
                queue_members.c.queue_name == key, queue_members.c.interface.like("Local/u%")
            )
        )
        await connection.execute(delete(queues).where(queues.c.name == key))
        return
    table = {"ps_endpoints": ps_endpoints, "ps_aors": ps_aors, "ps_auths": ps_auths}[table_name]
    await connection.execute(delete(table).where(table.c.id == key))


def _route_context(enterprise_id: int, kind: RouteKind) -> str:
    return (
        extension_context(enterprise_id)
        if kind is RouteKind.EXTENSION
        else ddi_context(enterprise_id)
    )


def _inventory(enterprise_id: int, held: _Held) -> PbxInventory:
    """The rows read back as lines, routes and groups."""
    routes: dict[tuple[RouteKind, str], PbxRoute] = {}
    for (context, exten, priority), (app, data) in sorted(held.dialplan.items()):
        if priority != 1:
            continue
        if context == extension_context(enterprise_id):
            kind = RouteKind.EXTENSION
        elif context == ddi_context(enterprise_id):
            kind = RouteKind.DDI
        else:
            continue
        user = _route_user(app, data, enterprise_id)
        routes[(kind, exten)] = PbxRoute(
            kind=kind,
            key=exten,
            endpoint=endpoint_id(enterprise_id, user) if user is not None else None,
            target=f"{app}({data})",
        )
    identities: dict[int, dict[int, tuple[str, str]]] = {}
    by_number: dict[str, dict[int, tuple[str, str]]] = {}
    for (context, exten, priority), step in held.dialplan.items():
        if context == identity_context(enterprise_id):
            by_number.setdefault(exten, {})[priority] = step
    for steps in by_number.values():
        user_value = _set_value(steps, 1, USER_VARIABLE)
        match = _RING_KEY.match(user_value or "")
        if match:
            identities[int(match.group(1))] = steps
    memberships: dict[int, list[str]] = {}
    for queue, interface in held.members:
        user = _member_user(interface, enterprise_id)
        if user is not None:
            memberships.setdefault(user, []).append(queue)
    routes_of: dict[str, dict[RouteKind, str]] = {}
    for (kind, key), route in routes.items():
        if route.endpoint is not None:
            routes_of.setdefault(route.endpoint, {})[kind] = key
    lines: dict[str, PbxLine] = {}
    ring_users = {
        user
        for (context, exten, priority) in held.dialplan
        if priority == 1 and (user := _ring_user(context, exten, enterprise_id)) is not None
    }
    for user_id in sorted(ring_users):
        endpoint = endpoint_id(enterprise_id, user_id)
        owned = routes_of.get(endpoint, {})
        endpoint_row_ = held.endpoints.get(endpoint)
        auth = held.auths.get(endpoint)
        if user_id in identities:
            caller = _caller_from_identity(identities[user_id])
        elif endpoint_row_ is not None:
            caller = _caller_from_endpoint(endpoint_row_)
        else:
            caller = CallerIdLine("", "", False, False, None)
        lines[endpoint] = PbxLine(
            endpoint=endpoint,
            enterprise_id=enterprise_id,
            user_id=user_id,
            extension=owned.get(RouteKind.EXTENSION),
            ddi=owned.get(RouteKind.DDI),
            caller_id=caller,
            sip=SipAuth(auth.username or "", auth.realm or "", auth.md5_cred or "")
            if auth is not None and endpoint_row_ is not None and endpoint_row_.auth == endpoint
            else None,
            hunt_groups=tuple(sorted(memberships.get(user_id, []))),
        )
    return PbxInventory(lines=lines, routes=routes)


def _differing(held: Any, wanted: Row, columns: Iterable[str]) -> list[str]:
    return [c for c in columns if getattr(held, c) != wanted[c]]


def _row_drift(
    enterprise_id: int,
    lines: Sequence[PbxLine],
    groups: Sequence[GroupLine],
    held: _Held,
    template: EndpointTemplate,
    names: Names,
) -> list[Drift]:
    """Compare every row Switchboard would write with what Asterisk holds."""
    drift: list[Drift] = []
    wanted_lines = {line.endpoint: line for line in lines}

    def who(endpoint: str) -> str:
        name = names.get(endpoint)
        return f"{endpoint} ({name})" if name else endpoint

    # Endpoints, AORs and auths: only desk phones have them.
    for endpoint in sorted(set(held.endpoints) | set(held.aors) | set(held.auths)):
        line = wanted_lines.get(endpoint)
        if line is None:
            if endpoint in held.endpoints:
                drift.append(
                    Drift(
                        DriftKind.UNKNOWN_ENDPOINT,
                        endpoint,
                        f"endpoint {endpoint} is on the PBX but belongs to no licensed user",
                    )
                )
            else:
                for table, rows in (("ps_aors", held.aors), ("ps_auths", held.auths)):
                    if endpoint in rows:
                        drift.append(
                            Drift(
                                DriftKind.ORPHAN_ROW,
                                None,
                                f"{table} row {endpoint} belongs to no endpoint",
                                row=(table, endpoint),
                            )
                        )
            continue
        want_endpoint = endpoint_row(line, template)
        if want_endpoint is None:
            drift.append(
                Drift(
                    DriftKind.DESK_PHONE,
                    endpoint,
                    f"{who(endpoint)} has an endpoint on the PBX but no desk phone login "
                    "in the directory",
                )
            )
            continue
        have = held.endpoints.get(endpoint)
        if have is None:
            drift.append(
                Drift(DriftKind.DESK_PHONE, endpoint, f"{who(endpoint)} has no endpoint on the PBX")
            )
            continue
        columns = _differing(have, want_endpoint, ENDPOINT_COLUMNS)
        caller_columns = [c for c in columns if c in _CALLER_ID_COLUMNS]
        other = [c for c in columns if c not in _CALLER_ID_COLUMNS]
        if caller_columns:
            drift.append(
                Drift(
                    DriftKind.CALLER_ID,
                    endpoint,
                    f"caller ID of {who(endpoint)} differs on the PBX ({', '.join(caller_columns)})",
                )
            )
        if other:
            detail = ", ".join(
                f"{c} is {getattr(have, c)!r}, Switchboard writes {want_endpoint[c]!r}"
                for c in other
            )
            drift.append(
                Drift(
                    DriftKind.ENDPOINT_SETTINGS, endpoint, f"endpoint of {who(endpoint)}: {detail}"
                )
            )
        aor = held.aors.get(endpoint)
        want_aor = aor_row(line, template)
        auth = held.auths.get(endpoint)
        want_auth = auth_row(line)
        if aor is None or want_aor is None or _differing(aor, want_aor, AOR_COLUMNS):
            drift.append(
                Drift(
                    DriftKind.ENDPOINT_SETTINGS,
                    endpoint,
                    f"address of record of {who(endpoint)} differs",
                )
            )
        if auth is None or want_auth is None or _differing(auth, want_auth, AUTH_COLUMNS):
            drift.append(
                Drift(
                    DriftKind.DESK_PHONE,
                    endpoint,
                    f"{who(endpoint)} has {'no' if auth is None else 'a different'} desk phone "
                    "login on the PBX",
                )
            )
    drift += _dialplan_drift(enterprise_id, lines, groups, held, names)
    drift += _queue_drift(enterprise_id, lines, groups, held, names)
    return drift


def _dialplan_drift(
    enterprise_id: int,
    lines: Sequence[PbxLine],
    groups: Sequence[GroupLine],
    held: _Held,
    names: Names,
) -> list[Drift]:
    drift: list[Drift] = []
    wanted: dict[tuple[str, str, int], tuple[str, str]] = {}
    owner: dict[tuple[str, str], tuple[str | None, str | None]] = {}
    for line in lines:
        for context, exten, priority, app, data in line_dialplan(line):
            wanted[(context, exten, priority)] = (app, data)
            owner[(context, exten)] = (line.endpoint, None)
    for group in groups:
        for context, exten, priority, app, data in group_dialplan(group):
            wanted[(context, exten, priority)] = (app, data)
            owner[(context, exten)] = (None, group.queue)

    def label(context: str, exten: str) -> str:
        if context == extension_context(enterprise_id):
            return key_label(RouteKind.EXTENSION, exten)
        if context == ddi_context(enterprise_id):
            return key_label(RouteKind.DDI, exten)
        return f"{context}/{exten}"

    def rung_by(context: str, exten: str) -> str:
        step = held.dialplan.get((context, exten, 1))
        if step is None:
            return "nothing"
        user = _route_user(*step, enterprise_id)
        if user is not None:
            endpoint = endpoint_id(enterprise_id, user)
            name = names.get(endpoint)
            return f"{endpoint} ({name})" if name else endpoint
        return f"{step[0]}({step[1]})"

    wanted_by_key = _by_key(wanted)
    held_by_key = _by_key(held.dialplan)
    ours_only = {ring_context(enterprise_id), identity_context(enterprise_id)}
    for context, exten in sorted(set(wanted_by_key) | set(held_by_key)):
        want = wanted_by_key.get((context, exten), {})
        have = held_by_key.get((context, exten), {})
        if want == have:
            continue
        endpoint, queue = owner.get((context, exten), (None, None))
        first = have.get(1, ("", ""))
        switchboards = (
            context in ours_only
            or _route_user(*first, enterprise_id) is not None
            or _route_queue(*first, enterprise_id) is not None
        )
        if not want:
            if not switchboards:
                continue  # the operator's own row in a Switchboard context: not ours to judge
            user = _ring_user(context, exten, enterprise_id)
            if user is not None:
                stray = endpoint_id(enterprise_id, user)
                drift.append(
                    Drift(
                        DriftKind.UNKNOWN_ENDPOINT,
                        stray,
                        f"{stray} rings on the PBX but belongs to no licensed user",
                    )
                )
                continue
            drift.append(
                Drift(
                    DriftKind.STRAY_ROUTE,
                    None,
                    f"{label(context, exten)} rings {rung_by(context, exten)}, "
                    "but the directory gives it to nobody",
                    row=("extensions", f"{context}/{exten}"),
                )
            )
            continue
        target = (
            f"{endpoint} ({names[endpoint]})"
            if endpoint is not None and endpoint in names
            else (endpoint or f"hunt group queue {queue}")
        )
        if context == ring_context(enterprise_id):
            kind = DriftKind.MISSING_LINE if not have else DriftKind.RING
            detail = (
                f"{target} has nothing on the PBX that rings them"
                if not have
                else f"what a call to {target} rings differs on the PBX"
            )
        elif context == identity_context(enterprise_id):
            kind = DriftKind.CALLER_ID
            detail = f"caller ID of {target} for calls from Teams differs on the PBX"
        elif not have:
            kind = DriftKind.MISSING_ROUTE
            detail = f"{label(context, exten)} is not routed; the directory gives it to {target}"
        else:
            kind = DriftKind.WRONG_ROUTE
            detail = (
                f"{label(context, exten)} rings {rung_by(context, exten)}; "
                f"the directory gives it to {target}"
            )
        drift.append(Drift(kind, endpoint, detail, queue=queue))
    return _merge(drift)


def _by_key(
    rows: dict[tuple[str, str, int], tuple[str, str]],
) -> dict[tuple[str, str], dict[int, tuple[str, str]]]:
    """Dialplan rows grouped by (context, exten), each a map of priority to step."""
    grouped: dict[tuple[str, str], dict[int, tuple[str, str]]] = {}
    for (context, exten, priority), step in rows.items():
        grouped.setdefault((context, exten), {})[priority] = step
    return grouped


def _queue_drift(
    enterprise_id: int,
    lines: Sequence[PbxLine],
    groups: Sequence[GroupLine],
    held: _Held,
    names: Names,
) -> list[Drift]:
    drift: list[Drift] = []
    wanted_groups = {group.queue: group for group in groups}
    for queue in sorted(set(held.queues) - set(wanted_groups)):
        drift.append(
            Drift(
                DriftKind.HUNT_GROUPS,
                None,
                f"queue {queue} is on the PBX but no hunt group of the directory uses it",
                row=("queues", queue),
            )
        )
    for queue, group in sorted(wanted_groups.items()):
        have = held.queues.get(queue)
        if have is None or have.strategy != group.strategy:
            drift.append(
                Drift(
                    DriftKind.QUEUE_SETTINGS,
                    None,
                    f"queue {queue} "
                    + (
                        "is missing"
                        if have is None
                        else f"rings {have.strategy}, the directory says {group.strategy}"
                    ),
                    queue=queue,
                )
            )
    wanted_members = {
        (queue, member_interface(enterprise_id, line.user_id)): line
        for line in lines
        for queue in line.hunt_groups
    }
    for key in sorted(set(held.members) | set(wanted_members)):
        queue, interface = key
        user = _member_user(interface, enterprise_id)
        line = wanted_members.get(key)
        have = held.members.get(key)
        if user is None:
            drift.append(
                Drift(
                    DriftKind.FOREIGN_MEMBER,
                    None,
                    f"{interface} is a member of Switchboard's queue {queue} but not Switchboard's "
                    "(left alone)",
                )
            )
            continue
        endpoint = endpoint_id(enterprise_id, user)
        if line is None or have is None or have.membername != line.caller_id.name:
            name = names.get(endpoint)
            drift.append(
                Drift(
                    DriftKind.HUNT_GROUPS,
                    endpoint,
                    f"hunt groups of {endpoint}{f' ({name})' if name else ''} differ on the PBX "
                    f"(queue {queue})",
                )
            )
    return _merge(drift)


def _merge(drift: list[Drift]) -> list[Drift]:
    """One drift per kind and subject: several rows of one line tell one story."""
    seen: set[tuple[DriftKind, str | None, str | None, tuple[str, str] | None]] = set()
    merged: list[Drift] = []
    for item in drift:
        key = (item.kind, item.endpoint, item.queue, item.row)
        if key not in seen:
            seen.add(key)
            merged.append(item)
    return merged

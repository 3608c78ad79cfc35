"""Asterisk PJSIP Realtime: the endpoint, AOR and auth rows Asterisk reads at call time, the
dialplan rows of the `extensions` table, and `queue_members` for hunt groups.

Table and column names are Asterisk's own (contrib/ast-db-manage). Asterisk declares several
columns as PostgreSQL ENUM types whose names changed between releases (e.g.
`pjsip_auth_type_values_v2`), so values for them are bound untyped and PostgreSQL takes the
column's type, whatever it is called.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    event,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.types import UserDefinedType

from services.pbx.backend import PbxError, PbxInventory, PbxRoute, RouteKind, describe_error
from services.pbx.lines import (
    CallerIdLine,
    PbxLine,
    SipAuth,
    ddi_context,
    endpoint_prefix,
    extension_context,
    parse_endpoint,
)

PAI_VARIABLE = "SWITCHBOARD_PAI"
DIAL_APP = "Dial"
# Two-key advisory locks (PostgreSQL): per enterprise, and one for queue_members.uniqueid.
_LOCK_SPACE = 0x5B0A
_QUEUE_MEMBERS_LOCK = 0
_CALLERID = re.compile(r'^\s*"(?P<name>.*)"\s*<(?P<number>[^>]*)>\s*$')


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
    Column("trust_id_outbound", AsteriskEnum()),
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

# The tables as Asterisk's realtime schema defines them, reduced to the columns Switchboard
# uses plus Asterisk's keys. For tests and demos: a production PBX runs Asterisk's migrations.
_POSTGRES_TYPES = {
    "yesno_values": ("yes", "no"),
    "pjsip_cid_privacy_values": (
        "allowed_not_screened",
        "allowed_passed_screened",
        "allowed_failed_screened",
        "allowed",
        "prohib_not_screened",
        "prohib_passed_screened",
        "prohib_failed_screened",
        "prohib",
        "unavailable",
    ),
    "pjsip_auth_type_values_v2": ("md5", "userpass", "google_oauth"),
    "queue_strategy_values": (
        "ringall",
        "leastrecent",
        "fewestcalls",
        "random",
        "rrmemory",
        "linear",
        "wrandom",
        "rrordered",
    ),
}
_TABLES = """
CREATE TABLE IF NOT EXISTS ps_endpoints (
    id VARCHAR(255) NOT NULL, transport VARCHAR(40), aors VARCHAR(2048), auth VARCHAR(255),
    context VARCHAR(40), disallow VARCHAR(200), allow VARCHAR(200),
    direct_media {yesno}, callerid VARCHAR(40), callerid_privacy {privacy},
    send_pai {yesno}, send_rpid {yesno}, trust_id_outbound {yesno}, set_var TEXT,
    UNIQUE (id)
);
CREATE INDEX IF NOT EXISTS ps_endpoints_id ON ps_endpoints (id);
CREATE TABLE IF NOT EXISTS ps_aors (
    id VARCHAR(255) NOT NULL, max_contacts INTEGER, remove_existing {yesno}, UNIQUE (id)
);
CREATE INDEX IF NOT EXISTS ps_aors_id ON ps_aors (id);
CREATE TABLE IF NOT EXISTS ps_auths (
    id VARCHAR(255) NOT NULL, auth_type {auth_type}, md5_cred VARCHAR(40), password VARCHAR(80),
    realm VARCHAR(255), username VARCHAR(40), UNIQUE (id)
);
CREATE INDEX IF NOT EXISTS ps_auths_id ON ps_auths (id);
CREATE TABLE IF NOT EXISTS extensions (
    id {serial}, context VARCHAR(40) NOT NULL, exten VARCHAR(40) NOT NULL,
    priority INTEGER NOT NULL, app VARCHAR(40) NOT NULL, appdata VARCHAR(256) NOT NULL,
    UNIQUE (context, exten, priority)
);
CREATE TABLE IF NOT EXISTS queues (
    name VARCHAR(128) NOT NULL, strategy {strategy}, PRIMARY KEY (name)
);
CREATE TABLE IF NOT EXISTS queue_members (
    queue_name VARCHAR(80) NOT NULL, interface VARCHAR(80) NOT NULL, membername VARCHAR(80),
    uniqueid INTEGER NOT NULL, PRIMARY KEY (queue_name, interface), UNIQUE (uniqueid)
)
"""


async def create_asterisk_tables(engine: AsyncEngine) -> None:
    """Create the realtime tables Switchboard writes, shaped as Asterisk's schema has them."""
    postgres = engine.dialect.name == "postgresql"
    names = (
        {
            "yesno": "yesno_values",
            "privacy": "pjsip_cid_privacy_values",
            "auth_type": "pjsip_auth_type_values_v2",
            "strategy": "queue_strategy_values",
            "serial": "BIGSERIAL NOT NULL PRIMARY KEY",
        }
        if postgres
        else {
            "yesno": "VARCHAR(3)",
            "privacy": "VARCHAR(40)",
            "auth_type": "VARCHAR(40)",
            "strategy": "VARCHAR(40)",
            "serial": "INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT",
        }
    )
    async with engine.begin() as connection:
        if postgres:
            for name, values in _POSTGRES_TYPES.items():
                labels = ", ".join(f"'{value}'" for value in values)
                await connection.execute(
                    text(
                        f"DO $$ BEGIN CREATE TYPE {name} AS ENUM ({labels}); "
                        "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
                    )
                )
        for statement in _TABLES.format(**names).split(";"):
            if statement.strip():
                await connection.execute(text(statement))


@dataclass(frozen=True)
class EndpointTemplate:
    """The endpoint settings that are the same for every user (the provider's choice)."""

    transport: str | None = None
    disallow: str = "all"
    allow: str = "g722,alaw,ulaw"
    max_contacts: int = 1


def create_pbx_engine(
    url: str, *, busy_timeout: float = 5.0, connect_timeout: float = 5.0
) -> AsyncEngine:
    """An engine for the PBX database that never logs parameters and gives up quickly."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, hide_parameters=True, connect_args={"timeout": busy_timeout}
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # BEGIN comes from the hook below

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(connection: Connection) -> None:
            # Take the write lock up front: two writers never deadlock on an upgrade.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_async_engine(
        url,
        hide_parameters=True,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        connect_args={"timeout": connect_timeout, "command_timeout": 3 * connect_timeout},
    )


def _dial(endpoint: str) -> str:
    return f"PJSIP/{endpoint}"


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _routes_to(endpoint: str) -> Any:
    return or_(
        extensions.c.appdata == _dial(endpoint),
        extensions.c.appdata.like(_dial(endpoint) + ",%"),
    )


def _target_endpoint(app: str, appdata: str) -> str | None:
    if app != DIAL_APP or not appdata.startswith("PJSIP/"):
        return None
    target = appdata.removeprefix("PJSIP/").split(",", 1)[0].split("&", 1)[0]
    return target if parse_endpoint(target) is not None else None


def _parse_caller_id(row: Any) -> CallerIdLine:
    match = _CALLERID.match(row.callerid or "")
    name, number = (match["name"], match["number"]) if match else (row.callerid or "", "")
    pai_number = None
    for assignment in (row.set_var or "").split(";"):
        variable, _, value = assignment.partition("=")
        if variable.strip() == PAI_VARIABLE and value.strip():
            pai_number = value.strip()
    return CallerIdLine(
        name=name,
        number=number,
        private=(row.callerid_privacy or "").startswith("prohib"),
        send_pai=row.send_pai == "yes",
        pai_number=pai_number,
    )


class AsteriskBackend:
    """Provisions users into an Asterisk PJSIP Realtime database (PostgreSQL or SQLite)."""

    name = "asterisk"

    def __init__(
        self,
        url: str,
        *,
        template: EndpointTemplate | None = None,
        busy_timeout: float = 5.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.engine = create_pbx_engine(
            url, busy_timeout=busy_timeout, connect_timeout=connect_timeout
        )
        self.template = template or EndpointTemplate()
        self._postgres = self.engine.dialect.name == "postgresql"

    @asynccontextmanager
    async def _transaction(
        self, enterprise_id: int | None = None
    ) -> AsyncIterator[AsyncConnection]:
        """One PBX transaction, with PBX failures turned into PbxError."""
        try:
            async with self.engine.begin() as connection:
                if self._postgres and enterprise_id is not None:
                    await connection.execute(
                        select(func.pg_advisory_xact_lock(_LOCK_SPACE, enterprise_id))
                    )
                yield connection
        except PbxError:
            raise
        except (DBAPIError, OSError, TimeoutError) as error:
            raise PbxError(describe_error(error)) from None

    async def provision(self, line: PbxLine) -> None:
        """Write the user's endpoint, AOR, auth, dialplan routes and queue memberships."""
        async with self._transaction(line.enterprise_id) as connection:
            await self._write_endpoint(connection, line)
            await self._write_routes(connection, line)
            await self._write_queues(
                connection, line.endpoint, line.caller_id.name, line.hunt_groups
            )

    async def remove(self, enterprise_id: int, endpoint: str) -> None:
        """Delete the endpoint's rows, every route to it and its queue memberships."""
        async with self._transaction(enterprise_id) as connection:
            for table in (ps_endpoints, ps_aors, ps_auths):
                await connection.execute(delete(table).where(table.c.id == endpoint))
            await connection.execute(
                delete(extensions).where(
                    extensions.c.context.in_(_contexts(enterprise_id)),
                    extensions.c.app == DIAL_APP,
                    _routes_to(endpoint),
                )
            )
            await connection.execute(
                delete(queue_members).where(queue_members.c.interface == _dial(endpoint))
            )

    async def set_hunt_groups(
        self, enterprise_id: int, endpoint: str, member_name: str, queues: tuple[str, ...]
    ) -> None:
        """Make the endpoint a member of exactly these queues."""
        async with self._transaction(enterprise_id) as connection:
            await self._write_queues(connection, endpoint, member_name, queues)

    async def remove_route(self, enterprise_id: int, kind: RouteKind, key: str) -> None:
        """Delete every priority of one extension or number from the enterprise's dialplan."""
        async with self._transaction(enterprise_id) as connection:
            await connection.execute(
                delete(extensions).where(
                    extensions.c.context == _context(enterprise_id, kind),
                    extensions.c.exten == key,
                )
            )

    async def read(self, enterprise_id: int, endpoint: str) -> PbxLine | None:
        """What the PBX holds for one endpoint."""
        async with self._transaction() as connection:
            found = await self._lines(connection, enterprise_id, [endpoint])
        return found.lines.get(endpoint)

    async def inventory(self, enterprise_id: int) -> PbxInventory:
        """Every Switchboard endpoint and route of the enterprise."""
        async with self._transaction() as connection:
            return await self._lines(connection, enterprise_id, None)

    async def close(self) -> None:
        """Close the pooled PBX connections."""
        await self.engine.dispose()

    # --- writing -----------------------------------------------------------------------------

    async def _write_endpoint(self, connection: AsyncConnection, line: PbxLine) -> None:
        endpoint = line.endpoint
        for table in (ps_endpoints, ps_aors, ps_auths):
            await connection.execute(delete(table).where(table.c.id == endpoint))
        caller = line.caller_id
        await connection.execute(
            insert(ps_endpoints).values(
                id=endpoint,
                transport=self.template.transport,
                aors=endpoint,
                auth=endpoint if line.sip is not None else None,
                context=extension_context(line.enterprise_id),
                disallow=self.template.disallow,
                allow=self.template.allow,
                direct_media="no",
                callerid=caller.rendered(),
                callerid_privacy="prohib" if caller.private else "allowed_not_screened",
                send_pai=_yes_no(caller.send_pai),
                send_rpid="no",
                # Send the identity headers even when the number is withheld.
                trust_id_outbound=_yes_no(caller.send_pai),
                set_var=f"{PAI_VARIABLE}={caller.pai_number}"
                if caller.send_pai and caller.pai_number
                else None,
            )
        )
        await connection.execute(
            insert(ps_aors).values(
                id=endpoint, max_contacts=self.template.max_contacts, remove_existing="yes"
            )
        )
        if line.sip is not None:
            await connection.execute(
                insert(ps_auths).values(
                    id=endpoint,
                    auth_type="md5",
                    username=line.sip.username,
                    realm=line.sip.realm,
                    md5_cred=line.sip.md5_cred,
                    password=None,
                )
            )

    async def _write_routes(self, connection: AsyncConnection, line: PbxLine) -> None:
        contexts = _contexts(line.enterprise_id)
        wanted = [
            (_context(line.enterprise_id, kind), key)
            for kind, key in ((RouteKind.EXTENSION, line.extension), (RouteKind.DDI, line.ddi))
            if key is not None
        ]
        # Routes to this endpoint it no longer owns, then whatever holds the keys it owns.
        await connection.execute(
            delete(extensions).where(
                extensions.c.context.in_(contexts),
                extensions.c.app == DIAL_APP,
                _routes_to(line.endpoint),
            )
        )
        for context, key in wanted:
            await connection.execute(
                delete(extensions).where(extensions.c.context == context, extensions.c.exten == key)
            )
            await connection.execute(
                insert(extensions).values(
                    context=context,
                    exten=key,
                    priority=1,
                    app=DIAL_APP,
                    appdata=_dial(line.endpoint),
                )
            )

    async def _write_queues(
        self,
        connection: AsyncConnection,
        endpoint: str,
        member_name: str,
        wanted: Iterable[str],
    ) -> None:
        interface = _dial(endpoint)
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
        if self._postgres:
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

    async def _lines(
        self, connection: AsyncConnection, enterprise_id: int, only: list[str] | None
    ) -> PbxInventory:
        endpoint_query = select(ps_endpoints)
        if only is None:
            endpoint_query = endpoint_query.where(
                ps_endpoints.c.id.like(endpoint_prefix(enterprise_id) + "%")
            )
        else:
            endpoint_query = endpoint_query.where(ps_endpoints.c.id.in_(only))
        endpoint_rows = [
            row
            for row in await connection.execute(endpoint_query)
            if (parsed := parse_endpoint(row.id)) is not None and parsed[0] == enterprise_id
        ]
        ids = [row.id for row in endpoint_rows]
        auths = {
            row.id: row
            for row in await connection.execute(select(ps_auths).where(ps_auths.c.id.in_(ids)))
        }
        memberships: dict[str, list[str]] = {}
        for row in await connection.execute(
            select(queue_members.c.queue_name, queue_members.c.interface).where(
                queue_members.c.interface.in_([_dial(i) for i in ids])
            )
        ):
            memberships.setdefault(row.interface.removeprefix("PJSIP/"), []).append(row.queue_name)
        routes: dict[tuple[RouteKind, str], PbxRoute] = {}
        for row in await connection.execute(
            select(extensions)
            .where(
                extensions.c.context.in_(_contexts(enterprise_id)),
                extensions.c.priority == 1,
            )
            .order_by(extensions.c.context, extensions.c.exten)
        ):
            kind = (
                RouteKind.EXTENSION
                if row.context == extension_context(enterprise_id)
                else RouteKind.DDI
            )
            routes[(kind, row.exten)] = PbxRoute(
                kind=kind,
                key=row.exten,
                endpoint=_target_endpoint(row.app, row.appdata),
                target=f"{row.app}({row.appdata})",
            )
        lines: dict[str, PbxLine] = {}
        for row in endpoint_rows:
            parsed = parse_endpoint(row.id)
            assert parsed is not None
            auth = auths.get(row.auth) if row.auth else None
            owned = {kind: key for (kind, key), route in routes.items() if route.endpoint == row.id}
            lines[row.id] = PbxLine(
                endpoint=row.id,
                enterprise_id=parsed[0],
                user_id=parsed[1],
                extension=owned.get(RouteKind.EXTENSION),
                ddi=owned.get(RouteKind.DDI),
                caller_id=_parse_caller_id(row),
                sip=SipAuth(auth.username or "", auth.realm or "", auth.md5_cred or "")
                if auth is not None and auth.auth_type == "md5"
                else None,
                hunt_groups=tuple(sorted(memberships.get(row.id, []))),
            )
        if only is not None:
            wanted = set(only)
            routes = {k: r for k, r in routes.items() if r.endpoint in wanted}
        return PbxInventory(lines=lines, routes=routes)


def _context(enterprise_id: int, kind: RouteKind) -> str:
    return (
        extension_context(enterprise_id)
        if kind is RouteKind.EXTENSION
        else ddi_context(enterprise_id)
    )


def _contexts(enterprise_id: int) -> list[str]:
    return [extension_context(enterprise_id), ddi_context(enterprise_id)]

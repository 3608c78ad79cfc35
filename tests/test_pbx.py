"""The PBX side on SQLite and PostgreSQL: every directory change lands in Asterisk's realtime
tables (or the built-in PBX tables) exactly as Asterisk reads them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import Table, delete, insert, select, text, update
from sqlalchemy.engine import make_url

from services.callerid import CallerIdChange
from services.db import Database
from services.directory import Directory
from services.errors import ConflictError, ValidationError
from services.inventory import AUTO
from services.models import (
    AuditEntry,
    BuiltinGroupMember,
    BuiltinLine,
    BuiltinRoute,
    CallerIdMode,
    LicenceProduct,
    OutboxItem,
    OutboxStatus,
    PbxLease,
    SipCredential,
    utcnow,
)
from services.pbx.asterisk import (
    AsteriskBackend,
    create_asterisk_tables,
    extensions,
    ps_aors,
    ps_auths,
    ps_endpoints,
    queue_members,
    queues,
)
from services.pbx.backend import PbxBackend
from services.pbx.builtin import BuiltinBackend
from services.pbx.credentials import DeskPhones
from services.pbx.factory import Pbx
from services.pbx.huntgroups import HuntGroups
from services.pbx.lines import desired_lines
from services.pbx.pusher import PbxPusher, RetryPolicy
from services.pbx.reconcile import DriftKind, Reconciler, compare
from services.pbx.status import PbxState, PbxStatuses
from services.users import RELEASE, NewUser, UserChanges
from tests.conftest import PG_URL, admin_of, extra_run_database, seed_enterprise, settings_for

# Asterisk's tables get a database of their own, named after the directory's test database.
ASTERISK_TABLES = (ps_endpoints, ps_aors, ps_auths, extensions, queues, queue_members)
_pbx_url = ""

MAIN = "+442079461000"
FIRST = "+442079460000"


# --- fixtures ----------------------------------------------------------------------------------


async def _fresh_pbx_postgres() -> str:
    """A database of its own for Asterisk's tables, made once per run and emptied per test."""
    global _pbx_url
    if not _pbx_url:
        url = await extra_run_database("asterisk")
        backend = AsteriskBackend(url)
        await create_asterisk_tables(backend.engine)
        await backend.close()
        _pbx_url = url
    url = _pbx_url
    backend = AsteriskBackend(url)
    async with backend.engine.begin() as connection:
        names = ", ".join(table.name for table in ASTERISK_TABLES)
        await connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
    await backend.close()
    return url


@pytest.fixture
async def asterisk_url(database: Database, tmp_path: Path) -> str:
    """Asterisk's realtime tables, in a database of the same kind as the directory's."""
    if database.is_postgres:
        return await _fresh_pbx_postgres()
    url = f"sqlite+aiosqlite:///{tmp_path / 'asterisk.db'}"
    backend = AsteriskBackend(url)
    await create_asterisk_tables(backend.engine)
    await backend.close()
    return url


@pytest.fixture
async def asterisk(asterisk_url: str) -> AsyncIterator[AsteriskBackend]:
    """The Asterisk backend, quick to give up when the PBX does not answer."""
    backend = AsteriskBackend(asterisk_url, busy_timeout=0.3, connect_timeout=2.0)
    yield backend
    await backend.close()


def _pusher(directory: Directory, backend: PbxBackend, **options: Any) -> PbxPusher:
    return PbxPusher(directory.db, backend, retry=RetryPolicy(first_delay=60.0), **options)


async def _rows(backend: AsteriskBackend, table: Table) -> list[dict[str, Any]]:
    async with backend.engine.connect() as connection:
        result = await connection.execute(select(table))
        rows = [dict(row._mapping) for row in result]
    rows = [{k: v for k, v in row.items() if k != "id" or table is not extensions} for row in rows]
    return sorted(rows, key=lambda row: json.dumps(row, sort_keys=True, default=str))


async def _routes(backend: AsteriskBackend) -> list[tuple[str, str, int, str, str]]:
    return sorted(
        (r["context"], r["exten"], r["priority"], r["app"], r["appdata"])
        for r in await _rows(backend, extensions)
    )


async def _plant(backend: AsteriskBackend, *statements: Any) -> None:
    async with backend.engine.begin() as connection:
        for statement in statements:
            await connection.execute(statement)


async def _directory_rows(directory: Directory, model: type, *where: Any) -> list[Any]:
    async with directory.db.unit_of_work(readonly=True) as uow:
        rows = list((await uow.session.execute(select(model).where(*where))).scalars())
        uow.session.expunge_all()
        return rows


def _endpoint_row(
    ent: int,
    user_id: int,
    callerid: str,
    *,
    privacy: str = "allowed_not_screened",
    pai: str | None = None,
    auth: bool = False,
) -> dict[str, Any]:
    endpoint = f"sb-e{ent}-u{user_id}"
    return {
        "id": endpoint,
        "transport": None,
        "aors": endpoint,
        "auth": endpoint if auth else None,
        "context": f"sb-e{ent}-ext",
        "disallow": "all",
        "allow": "g722,alaw,ulaw",
        "direct_media": "no",
        "callerid": callerid,
        "callerid_privacy": privacy,
        "send_pai": "yes" if pai else "no",
        "send_rpid": "no",
        "trust_id_outbound": "yes" if pai else "no",
        "set_var": f"SWITCHBOARD_PAI={pai}" if pai else None,
    }


async def _essentials(directory: Directory, ent: int, name: str, email: str, **extra: Any) -> Any:
    return await directory.users.create(
        admin_of(ent), ent, NewUser(name, email, LicenceProduct.ESSENTIALS, **extra)
    )


async def _in_sync(directory: Directory, backend: PbxBackend, ent: int) -> None:
    """The PBX holds exactly the lines the directory wants, and nothing else of the enterprise."""
    async with directory.db.unit_of_work(readonly=True) as uow:
        from services.inventory import load_enterprise

        enterprise = await load_enterprise(uow.session, ent)
        desired = {
            line.endpoint: line for line in (await desired_lines(uow.session, enterprise)).values()
        }
    held = await backend.inventory(ent)
    assert held.lines == desired
    assert compare(desired, held, {}) == []


# --- provisioning ------------------------------------------------------------------------------


async def test_create_writes_endpoint_aor_and_both_routes(
    directory: Directory, asterisk: AsteriskBackend
) -> None:
    ent = await seed_enterprise(directory)
    ada = await _essentials(directory, ent, "Ada Lovelace", "ada@contoso.com")
    pusher = _pusher(directory, asterisk)
    result = await pusher.run_once()
    assert (result.pushed, result.failed) == (1, 0)
    endpoint = f"sb-e{ent}-u{ada.id}"
    assert await _rows(asterisk, ps_endpoints) == [
        _endpoint_row(ent, ada.id, f'"Ada Lovelace" <{FIRST}>')
    ]
    assert await _rows(asterisk, ps_aors) == [
        {"id": endpoint, "max_contacts": 1, "remove_existing": "yes"}
    ]
    assert await _rows(asterisk, ps_auths) == []
    assert await _routes(asterisk) == [
        (f"sb-e{ent}-ddi", FIRST, 1, "Dial", f"PJSIP/{endpoint}"),
        (f"sb-e{ent}-ext", "1000", 1, "Dial", f"PJSIP/{endpoint}"),
    ]
    [pbx_row] = await _directory_rows(directory, OutboxItem, OutboxItem.channel == "pbx")
    assert (pbx_row.status, pbx_row.kind, pbx_row.attempts) == (
        OutboxStatus.DONE,
        "user.create",
        0,
    )
    # The Microsoft channel belongs to the sync engine: untouched.
    [ms_row] = await _directory_rows(directory, OutboxItem, OutboxItem.channel == "microsoft")
    assert (ms_row.status, ms_row.attempts) == (OutboxStatus.PENDING, 0)
    status = await PbxStatuses(directory.db).of_user(ent, ada.id)
    assert status.state is PbxState.IN_SYNC
    # Nothing left: a second pass pushes nothing.
    assert (await pusher.run_once()).pushed == 0


async def test_edit_number_extension_and_name_moves_the_routes(
    directory: Directory, asterisk: AsteriskBackend
) -> None:
    ent = await seed_enterprise(directory)
    ada = await _essentials(directory, ent, "Ada Lovelace", "ada@contoso.com")
    pusher = _pusher(directory, asterisk)
    await pusher.run_once()
    edited = await directory.users.update(
        admin_of(ent),
        ent,
        ada.id,
        ada.version,
        UserChanges(display_name="Ada King", number="+442079460042", extension=1042),
    )
    assert (await PbxStatuses(directory.db).of_user(ent, ada.id)).state is PbxState.PUSHING
    await pusher.run_once()
    endpoint = f"sb-e{ent}-u{ada.id}"
    assert await _routes(asterisk) == [
        (f"sb-e{ent}-ddi", "+442079460042", 1, "Dial", f"PJSIP/{endpoint}"),
        (f"sb-e{ent}-ext", "1042", 1, "Dial", f"PJSIP/{endpoint}"),
    ]
    assert await _rows(asterisk, ps_endpoints) == [
        _endpoint_row(ent, ada.id, '"Ada King" <+442079460042>')
    ]
    # Basic: the direct number goes; the extension stays and still rings her.
    await directory.users.update(
        admin_of(ent),
        ent,
        ada.id,
        edited.version,
        UserChanges(licence=LicenceProduct.BASIC, number=RELEASE),
    )
    await pusher.run_once()
    assert await _routes(asterisk) == [
        (f"sb-e{ent}-ext", "1042", 1, "Dial", f"PJSIP/{endpoint}"),
    ]
    assert await _rows(asterisk, ps_endpoints) == [
        _endpoint_row(ent, ada.id, f'"Ada King" <{MAIN}>')
    ]
    await _in_sync(directory, asterisk, ent)


@pytest.mark.parametrize(
    ("change", "callerid", "privacy", "pai"),
    [
        (
            CallerIdChange(CallerIdMode.OWN_DDI),
            f'"Ada Lovelace" <{FIRST}>',
            "allowed_not_screened",
            None,
        ),
        (
            CallerIdChange(CallerIdMode.COMPANY_MAIN, caller_name="Contoso"),
            f'"Contoso" <{MAIN}>',
            "allowed_not_screened",
            None,
        ),
        (
            CallerIdChange(CallerIdMode.OTHER, number_digits="0042"),
            '"Ada Lovelace" <+442079460042>',
            "allowed_not_screened",
            None,
        ),
        (CallerIdChange(CallerIdMode.ANONYMOUS), f'"Ada Lovelace" <{FIRST}>', "prohib", None),
        (
            CallerIdChange(CallerIdMode.ANONYMOUS, send_pai=True),
            f'"Ada Lovelace" <{FIRST}>',
            "prohib",
            FIRST,
        ),
        (
            CallerIdChange(
                CallerIdMode.OWN_DDI, caller_name="Sales Desk", send_pai=True, pai_digits="1000"
            ),
            f'"Sales Desk" <{FIRST}>',
            "allowed_not_screened",
            MAIN,
        ),
        (
            CallerIdChange(CallerIdMode.COMPANY_MAIN, send_pai=True),
            f'"Ada Lovelace" <{MAIN}>',
            "allowed_not_screened",
            MAIN,
        ),
    ],
    ids=["own", "main", "other", "anonymous", "anonymous-pai", "own-pai-main", "main-pai"],
)
async def test_caller_id_modes_map_to_the_endpoint(
    directory: Directory,
    asterisk: AsteriskBackend,
    change: CallerIdChange,
    callerid: str,
    privacy: str,
    pai: str | None,
) -> None:
    ent = await seed_enterprise(directory)
    ada = await _essentials(directory, ent, "Ada Lovelace", "ada@contoso.com")
    pusher = _pusher(directory, asterisk)
    await pusher.run_once()
    # Start from another mode so every case is a real change.
    start = (
        CallerIdChange(CallerIdMode.COMPANY_MAIN, caller_name="Start")
        if change.mode is CallerIdMode.ANONYMOUS
        else CallerIdChange(CallerIdMode.ANONYMOUS)
    )
    ada = await directory.users.set_caller_id(admin_of(ent), ent, ada.id, ada.version, start)
    await directory.users.set_caller_id(admin_of(ent), ent, ada.id, ada.version, change)
    kinds = [
        r.kind for r in await _directory_rows(directory, OutboxItem, OutboxItem.channel == "pbx")
    ]
    assert kinds == ["user.create", "user.caller_id", "user.caller_id"]
    await pusher.run_once()
    assert await _rows(asterisk, ps_endpoints) == [
        _endpoint_row(ent, ada.id, callerid, privacy=privacy, pai=pai)
    ]
    await _in_sync(directory, asterisk, ent)


async def test_long_names_are_fitted_to_asterisks_callerid_column(
    directory: Directory, asterisk: AsteriskBackend
) -> None:
    ent = await seed_enterprise(directory)
    ada = await _essentials(
        directory, ent, 'Augusta "Ada" King, Countess of Lovelace', "ada@contoso.com"
    )
    await _pusher(directory, asterisk).run_once()
    [row] = await _rows(asterisk, ps_endpoints)
    assert row["callerid"] == f'"Augusta Ada King, Coun" <{FIRST}>'
    assert len(row["callerid"]) == 40
    assert (await asterisk.read(ent, f"sb-e{ent}-u{ada.id}")) is not None
    await _in_sync(directory, asterisk, ent)


async def test_remove_takes_every_row_off_the_pbx(
    directory: Directory, asterisk: AsteriskBackend
) -> None:
    ent = await seed_enterprise(directory)
    ada = await _essentials(directory, ent, "Ada Lovelace", "ada@contoso.com")
    bob = await _essentials(directory, ent, "Bob Byte", "bob@contoso.com")
    groups = HuntGroups(directory.db)
    sales = await groups.create(admin_of(ent), ent, "Sales")
    await groups.add_member(admin_of(ent), ent, sales.id, ada.id)
    await groups.add_member(admin_of(ent), ent, sales.id, bob.id)
    await DeskPhones(directory.db, "asterisk").issue(admin_of(ent), ent, ada.id)
    pusher = _pusher(directory, asterisk)
    await pusher.run_once()
    assert len(await _rows(asterisk, ps_auths)) == 1
    ada = await directory.users.get(ent, ada.id)
    await directory.users.remove(admin_of(ent), ent, ada.id, ada.version)
    await pusher.run_once()
    bob_endpoint = f"sb-e{ent}-u{bob.id}"
    assert [r["id"] for r in await _rows(asterisk, ps_endpoints)] == [bob_endpoint]
    assert [r["id"] for r in await _rows(asterisk, ps_aors)] == [bob_endpoint]
    assert await _rows(asterisk, ps_auths) == []
    assert {r[4] for r in await _routes(asterisk)} == {f"PJSIP/{bob_endpoint}"}
    assert [r["interface"] for r in await _rows(asterisk, queue_members)] == [
        f"PJSIP/{bob_endpoint}"
    ]
    removal = [
        r
        for r in await _directory_rows(directory, OutboxItem, OutboxItem.channel == "pbx")
        if r.kind == "user.remove"
    ]
    assert removal[0].status is OutboxStatus.DONE and removal[0].payload == {"user_id": ada.id}
    await _in_sync(directory, asterisk, ent)


async def test_unlicensed_users_have_no_line_and_enabling_adds_one(
    directory: Directory, asterisk: AsteriskBackend
) -> None:
    ent = await seed_enterprise(directory)
    cy = await directory.users.create(admin_of(ent), ent, NewUser("Cy", "cy@contoso.com"))
    pusher = _pusher(directory, asterisk)
    await pusher.run_once()
    assert await _rows(asterisk, ps_endpoints) == []
    await directory.users.enable(admin_of(ent), ent, [cy.id], LicenceProduct.BASIC)
    await pusher.run_once()
    endpoint = f"sb-e{ent}-u{cy.id}"
    assert await _routes(asterisk) == [(f"sb-e{ent}-ext", "1000", 1, "Dial", f"PJSIP/{endpoint}")]
    assert await _rows(asterisk, ps_endpoints) == [_endpoint_row(ent, cy.id, f'"Cy" <{MAIN}>')]


# --- hunt groups -------------------------------------------------------------------------------


async def test_hunt_group_membership_becomes_queue_members(
    directory: Directory, asterisk: AsteriskBackend
) -> None:
    ent = await seed_enterprise(directory)
    admin = admin_of(ent)
    ada = await _essentials(directory, ent, "Ada Lovelace", "ada@contoso.com")
    bob = await _essentials(directory, ent, "Bob Byte", "bob@contoso.com")
    groups = HuntGroups(directory.db)
    sales = await groups.create(admin, ent, "Sales")
    support = await groups.create(admin, ent, "Support")
    with pytest.raises(ConflictError):
        await groups.create(admin, ent, " sales ")
    await groups.add_member(admin, ent, sales.id, ada.id)
    await groups.add_member(admin, ent, support.id, ada.id)
    view = await groups.add_member(admin, ent, sales.id, bob.id)
    assert (view.name, view.members, view.queue) == ("Sales", 2, f"sb-e{ent}-g{sales.id}")
    again = await groups.add_member(admin, ent, sales.id, bob.id)  # changes nothing
    assert again.members == 2
    pusher = _pusher(directory, asterisk)
    await pusher.run_once()
    ada_if, bob_if = f"PJSIP/sb-e{ent}-u{ada.id}", f"PJSIP/sb-e{ent}-u{bob.id}"
    members = await _rows(asterisk, queue_members)
    assert sorted((m["queue_name"], m["interface"], m["membername"]) for m in members) == [
        (sales.queue, ada_if, "Ada Lovelace"),
        (sales.queue, bob_if, "Bob Byte"),
        (support.queue, ada_if, "Ada Lovelace"),
    ]
    assert sorted(m["uniqueid"] for m in members) == [1, 2, 3]
    assert {q["name"]: q["strategy"] for q in await _rows(asterisk, queues)} == {
        sales.queue: "ringall",
        support.queue: "ringall",
    }
    bob_uniqueid = next(m["uniqueid"] for m in members if m["interface"] == bob_if)
    # Ada leaves Sales: her row goes, Bob's keeps its uniqueid.
    await groups.remove_member(admin, ent, sales.id, ada.id)
    assert [g.name for g in await groups.of_user(ent, ada.id)] == ["Support"]
    await pusher.run_once()
    members = await _rows(asterisk, queue_members)
    assert sorted((m["queue_name"], m["interface"], m["uniqueid"]) for m in members) == sorted(
        [(sales.queue, bob_if, bob_uniqueid), (support.queue, ada_if, members[0]["uniqueid"])]
        if members[0]["interface"] == ada_if
        else [(sales.queue, bob_if, bob_uniqueid), (support.queue, ada_if, members[1]["uniqueid"])]
    )
    # The user card submits the whole set at once.
    chosen = await groups.set_user_groups(admin, ent, bob.id, [support.id])
    assert [g.name for g in chosen] == ["Support"]
    assert [m.display_name for m in await groups.members(ent, support.id)] == [
        "Ada Lovelace",
        "Bob Byte",
    ]
    await pusher.run_once()
    assert sorted(
        (m["queue_name"], m["interface"]) for m in await _rows(asterisk, queue_members)
    ) == [
        (support.queue, ada_if),
        (support.queue, bob_if),
    ]
    assert [(g.name, g.members) for g in await groups.all(ent)] == [("Sales", 0), ("Support", 2)]
    await _in_sync(directory, asterisk, ent)


async def test_hunt_groups_refuse_what_the_pbx_cannot_ring(
    directory: Directory, asterisk: AsteriskBackend
) -> None:
    ent = await seed_enterprise(directory)
    other = await seed_enterprise(
        directory, tenant_id="t-other", numbers=("+442079470000", "+442079470009")
    )
    admin = admin_of(ent)
    cy = await directory.users.create(admin, ent, NewUser("Cy", "cy@contoso.com"))
    sales = await HuntGroups(directory.db).create(admin, ent, "Sales")
    with pytest.raises(ValidationError, match="no calling licence"):
        await HuntGroups(directory.db).add_member(admin, ent, sales.id, cy.id)
    with pytest.raises(ValidationError):
        await HuntGroups(directory.db).create(admin, ent, "   ")
    from services.errors import NotFoundError

    with pytest.raises(NotFoundError):
        await HuntGroups(directory.db).add_member(admin_of(other), other, sales.id, cy.id)


# --- desk phones -------------------------------------------------------------------------------


async def test_desk_phone_login_is_shown_once_and_stored_as_md5_cred_only(
    directory: Directory, asterisk: AsteriskBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ent = await seed_enterprise(directory)
    ada = await _essentials(directory, ent, "Ada Lovelace", "ada@contoso.com")
    phones = DeskPhones(directory.db, "asterisk", "sip.contoso.example")
    login = await phones.issue(admin_of(ent), ent, ada.id)
    endpoint = f"sb-e{ent}-u{ada.id}"
    assert (login.username, login.realm, login.registrar) == (
        endpoint,
        "asterisk",
        "sip.contoso.example",
    )
    assert len(login.password) == 24 and login.password not in repr(login)
    expected = hashlib.md5(f"{endpoint}:asterisk:{login.password}".encode()).hexdigest()
    [stored] = await _directory_rows(directory, SipCredential)
    assert stored.md5_cred == expected
    await _pusher(directory, asterisk).run_once()
    assert await _rows(asterisk, ps_auths) == [
        {
            "id": endpoint,
            "auth_type": "md5",
            "md5_cred": expected,
            "password": None,
            "realm": "asterisk",
            "username": endpoint,
        }
    ]
    [row] = await _rows(asterisk, ps_endpoints)
    assert row["auth"] == endpoint
    # The password is nowhere: not in the directory, not in the audit log, not in the logs.
    audit = await _directory_rows(directory, AuditEntry)
    everything = json.dumps([(a.action, a.before, a.after) for a in audit]) + caplog.text
    assert login.password not in everything
    assert await phones.has_desk_phone(ent, ada.id)
    # A new login replaces the old one; revoking takes it off the PBX.
    second = await phones.issue(admin_of(ent), ent, ada.id)
    assert second.password != login.password
    assert await phones.revoke(admin_of(ent), ent, ada.id)
    assert not await phones.revoke(admin_of(ent), ent, ada.id)
    await _pusher(directory, asterisk).run_once()
    assert await _rows(asterisk, ps_auths) == []
    assert (await _rows(asterisk, ps_endpoints))[0]["auth"] is None


# --- the PBX goes away and comes back ----------------------------------------------------------


class _PostgresOutage:
    """A TCP relay to PostgreSQL that can drop every connection and refuse new ones."""

    def __init__(self) -> None:
        self.is_down = False
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_down:
            writer.close()
            return
        target = make_url(PG_URL)
        upstream_reader, upstream_writer = await asyncio.open_connection(
            target.host, target.port or 5432
        )
        self.writers |= {writer, upstream_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    async def down(self) -> None:
        self.is_down = True
        for writer in list(self.writers):
            writer.close()
        self.writers.clear()

    async def up(self) -> None:
        self.is_down = False

    async def stop(self) -> None:
        await self.down()
        if self.server is not None:
            self.server.close()


class _SqliteOutage:
    """Another process holding the Asterisk SQLite file's exclusive lock."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.connection: sqlite3.Connection | None = None

    async def down(self) -> None:
        self.connection = sqlite3.connect(self.path, isolation_level=None)
        self.connection.execute("BEGIN EXCLUSIVE")

    async def up(self) -> None:
        if self.connection is not None:
            self.connection.execute("ROLLBACK")
            self.connection.close()
            self.connection = None

    async def stop(self) -> None:
        await self.up()


@dataclass
class Outage:
    """A PBX that can be switched off and on, and the backend that talks to it."""

    backend: AsteriskBackend
    down: Callable[[], Any]
    up: Callable[[], Any]


@pytest.fixture
async def flaky_asterisk(
    database: Database, asterisk_url: str, asterisk: AsteriskBackend
) -> AsyncIterator[Outage]:
    """The Asterisk database behind a switch: a TCP relay on PostgreSQL, a lock on SQLite."""
    if database.is_postgres:
        relay = _PostgresOutage()
        await relay.start()
        url = make_url(asterisk_url).set(port=relay.port).render_as_string(hide_password=False)
        backend = AsteriskBackend(url, connect_timeout=2.0)
        yield Outage(backend, relay.down, relay.up)
        await backend.close()
        await relay.stop()
    else:
        locker = _SqliteOutage(make_url(asterisk_url).database or "")
        yield Outage(asterisk, locker.down, locker.up)
        await locker.stop()


async def test_pbx_down_during_an_edit_then_back_lands_the_change_once(
    directory: Directory, asterisk: AsteriskBackend, flaky_asterisk: Outage
) -> None:
    ent = await seed_enterprise(directory)
    ada = await _essentials(directory, ent, "Ada Lovelace", "ada@contoso.com")
    backend = flaky_asterisk.backend
    await _pusher(directory, backend).run_once()
    await flaky_asterisk.down()
    await directory.users.update(
        admin_of(ent), ent, ada.id, ada.version, UserChanges(number="+442079460042")
    )
    result = await _pusher(directory, backend).run_once()
    assert (result.pushed, result.failed) == (0, 1)
    [waiting] = await _directory_rows(
        directory, OutboxItem, OutboxItem.channel == "pbx", OutboxItem.kind == "user.update"
    )
    assert waiting.status is OutboxStatus.PENDING and waiting.attempts == 1
    assert waiting.last_error and waiting.next_attempt_at > utcnow() + timedelta(seconds=30)
    status = await PbxStatuses(directory.db).of_user(ent, ada.id)
    assert status.state is PbxState.RETRYING and status.last_error == waiting.last_error
    assert "retrying" in status.summary and "Nothing is lost" in status.summary
    await flaky_asterisk.up()
    # Back, but not yet due: the retry waits its turn.
    assert (await _pusher(directory, backend).run_once()).pushed == 0
    later = _pusher(directory, backend, clock=lambda: utcnow() + timedelta(minutes=5))
    assert (await later.run_once()).pushed == 1
    endpoint = f"sb-e{ent}-u{ada.id}"
    assert await _routes(asterisk) == [
        (f"sb-e{ent}-ddi", "+442079460042", 1, "Dial", f"PJSIP/{endpoint}"),
        (f"sb-e{ent}-ext", "1000", 1, "Dial", f"PJSIP/{endpoint}"),
    ]
    assert len(await _rows(asterisk, ps_endpoints)) == 1
    [landed] = await _directory_rows(directory, OutboxItem, OutboxItem.id == waiting.id)
    assert (landed.status, landed.attempts, landed.last_error) == (OutboxStatus.DONE, 1, None)
    assert (await PbxStatuses(directory.db).of_user(ent, ada.id)).state is PbxState.IN_SYNC
    assert (await later.run_once()).pushed == 0


async def test_a_change_after_the_pbx_is_back_carries_the_waiting_one_along(
    directory: Directory, asterisk: AsteriskBackend, flaky_asterisk: Outage
) -> None:
    ent = await seed_enterprise(directory)
    ada = await _essentials(directory, ent, "Ada Lovelace", "ada@contoso.com")
    backend = flaky_asterisk.backend
    await _pusher(directory, backend).run_once()
    await flaky_asterisk.down()
    ada = await directory.users.update(
        admin_of(ent), ent, ada.id, ada.version, UserChanges(number="+442079460042")
    )
    assert (await _pusher(directory, backend).run_once()).failed == 1
    await flaky_asterisk.up()
    await directory.users.set_caller_id(
        admin_of(ent), ent, ada.id, ada.version, CallerIdChange(CallerIdMode.ANONYMOUS)
    )
    # The new change is due at once; its push carries the number change waiting for a retry.
    assert (await _pusher(directory, backend).run_once()).pushed == 1
    rows = await _directory_rows(directory, OutboxItem, OutboxItem.channel == "pbx")
    assert [(r.kind, r.status, r.attempts) for r in rows] == [
        ("user.create", OutboxStatus.DONE, 0),
        ("user.update", OutboxStatus.DONE, 1),
        ("user.caller_id", OutboxStatus.DONE, 0),
    ]
    assert (await PbxStatuses(directory.db).of_user(ent, ada.id)).state is PbxState.IN_SYNC
    assert await _rows(asterisk, ps_endpoints) == [
        _endpoint_row(ent, ada.id, '"Ada Lovelace" <+442079460042>', privacy="prohib")
    ]
    await _in_sync(directory, asterisk, ent)


# --- reconcile ---------------------------------------------------------------------------------


async def _three_users(directory: Directory, backend: PbxBackend) -> tuple[int, Any, Any, Any]:
    ent = await seed_enterprise(directory)
    ada = await _essentials(directory, ent, "Ada Lovelace", "ada@contoso.com")
    bob = await _essentials(directory, ent, "Bob Byte", "bob@contoso.com")
    cy = await directory.users.create(
        admin_of(ent), ent, NewUser("Cy Basic", "cy@contoso.com", LicenceProduct.BASIC)
    )
    sales = await HuntGroups(directory.db).create(admin_of(ent), ent, "Sales")
    await HuntGroups(directory.db).add_member(admin_of(ent), ent, sales.id, bob.id)
    await _pusher(directory, backend).run_once()
    return ent, ada, bob, cy


async def test_reconcile_finds_planted_drift_and_fix_repairs_it(
    directory: Directory, asterisk: AsteriskBackend
) -> None:
    ent, ada, bob, cy = await _three_users(directory, asterisk)
    reconciler = Reconciler(directory.db, asterisk)
    assert (await reconciler.check(ent)).drift == []
    before = {t.name: await _rows(asterisk, t) for t in (ps_endpoints, ps_aors, queue_members)}
    before_routes = await _routes(asterisk)
    ada_ep, bob_ep, cy_ep = (f"sb-e{ent}-u{u.id}" for u in (ada, bob, cy))
    ghost = f"sb-e{ent}-u999"
    await _plant(
        asterisk,
        # an endpoint nobody owns, ringing a number nobody holds
        insert(ps_endpoints).values(id=ghost, aors=ghost, context=f"sb-e{ent}-ext"),
        insert(extensions).values(
            context=f"sb-e{ent}-ddi",
            exten="+442079460090",
            priority=1,
            app="Dial",
            appdata=f"PJSIP/{ghost}",
        ),
        # Ada's number rings Bob
        update(extensions)
        .where(extensions.c.exten == ada.number)
        .values(appdata=f"PJSIP/{bob_ep}"),
        # Bob's caller ID was edited by hand on the PBX
        update(ps_endpoints)
        .where(ps_endpoints.c.id == bob_ep)
        .values(callerid='"Bob" <+449999999999>'),
        # Cy's endpoint is gone; Bob left the hunt group behind the directory's back
        delete(ps_endpoints).where(ps_endpoints.c.id == cy_ep),
        delete(queue_members).where(queue_members.c.interface == f"PJSIP/{bob_ep}"),
    )
    report = await reconciler.check(ent)
    found = {(d.kind, d.endpoint) for d in report.drift}
    assert found == {
        (DriftKind.UNKNOWN_ENDPOINT, ghost),
        (DriftKind.STRAY_ROUTE, ghost),
        (DriftKind.WRONG_ROUTE, ada_ep),
        (DriftKind.CALLER_ID, bob_ep),
        (DriftKind.MISSING_LINE, cy_ep),
        (DriftKind.HUNT_GROUPS, bob_ep),
    }
    wrong = next(d for d in report.drift if d.kind is DriftKind.WRONG_ROUTE)
    assert "Bob Byte" in wrong.detail and "Ada Lovelace" in wrong.detail
    assert report.remaining is None and not report.fixed
    fixed = await reconciler.fix(ent)
    assert fixed.fixed and len(fixed.drift) == 6
    assert (await reconciler.check(ent)).drift == []
    assert await _routes(asterisk) == before_routes
    for table in (ps_endpoints, ps_aors, queue_members):
        after = await _rows(asterisk, table)
        if table is queue_members:
            # Bob's membership came back as a new member row.
            after = [{k: v for k, v in r.items() if k != "uniqueid"} for r in after]
            before[table.name] = [
                {k: v for k, v in r.items() if k != "uniqueid"} for r in before[table.name]
            ]
        assert after == before[table.name]


async def test_reconcile_leaves_the_operators_own_dialplan_alone(
    directory: Directory, asterisk: AsteriskBackend
) -> None:
    ent, _, _, _ = await _three_users(directory, asterisk)
    await _plant(
        asterisk,
        # an outbound pattern and a number routed to reception: not Switchboard's business
        insert(extensions).values(
            context=f"sb-e{ent}-ext",
            exten="_0X.",
            priority=1,
            app="Dial",
            appdata="PJSIP/${EXTEN}@trunk",
        ),
        insert(extensions).values(
            context=f"sb-e{ent}-ddi",
            exten="+442079460077",
            priority=1,
            app="Goto",
            appdata="ivr,s,1",
        ),
    )
    reconciler = Reconciler(directory.db, asterisk)
    assert (await reconciler.check(ent)).drift == []
    assert (await reconciler.fix(ent)).drift == []
    assert len(await _routes(asterisk)) == 7


# --- two admins, two pushers -------------------------------------------------------------------


async def test_two_admins_editing_one_user_leave_the_pbx_like_the_directory(
    directory: Directory, asterisk: AsteriskBackend
) -> None:
    ent = await seed_enterprise(directory)
    ada = await _essentials(directory, ent, "Ada Lovelace", "ada@contoso.com")
    bob = await _essentials(directory, ent, "Bob Byte", "bob@contoso.com")
    stop = asyncio.Event()
    workers = [
        asyncio.create_task(_pusher(directory, asterisk, poll_interval=0.05).run_forever(stop))
        for _ in range(2)
    ]
    changes: list[Callable[[int], Any]] = [
        lambda v: directory.users.update(admin_of(ent), ent, ada.id, v, UserChanges(number=AUTO)),
        lambda v: directory.users.update(
            admin_of(ent), ent, ada.id, v, UserChanges(extension=AUTO)
        ),
        lambda v: directory.users.set_caller_id(
            admin_of(ent), ent, ada.id, v, CallerIdChange(CallerIdMode.ANONYMOUS, send_pai=True)
        ),
        lambda v: directory.users.update(
            admin_of(ent), ent, ada.id, v, UserChanges(display_name="Ada King")
        ),
        lambda v: directory.users.set_caller_id(
            admin_of(ent), ent, ada.id, v, CallerIdChange(CallerIdMode.COMPANY_MAIN)
        ),
        lambda v: directory.users.update(
            admin_of(ent), ent, bob.id, v, UserChanges(extension=AUTO)
        ),
    ]

    async def admin(offset: int) -> int:
        saved = 0
        for round_ in range(8):
            change = changes[(round_ + offset) % len(changes)]
            for _ in range(20):
                target = bob.id if change is changes[-1] else ada.id
                version = (await directory.users.get(ent, target)).version
                try:
                    await change(version)
                except ConflictError:
                    await asyncio.sleep(0)
                    continue
                saved += 1
                break
        return saved

    try:
        saved = await asyncio.gather(admin(0), admin(3))
    finally:
        stop.set()
        await asyncio.gather(*workers)
    assert sum(saved) >= 12
    await _pusher(directory, asterisk).run_once()
    await _in_sync(directory, asterisk, ent)
    pending = await _directory_rows(
        directory,
        OutboxItem,
        OutboxItem.channel == "pbx",
        OutboxItem.status != OutboxStatus.DONE,
    )
    assert pending == []


async def test_a_number_moving_between_users_never_rings_the_old_owner(
    directory: Directory, asterisk: AsteriskBackend
) -> None:
    ent = await seed_enterprise(directory)
    ada = await _essentials(directory, ent, "Ada Lovelace", "ada@contoso.com")
    bob = await directory.users.create(
        admin_of(ent), ent, NewUser("Bob Byte", "bob@contoso.com", LicenceProduct.BASIC)
    )
    first = _pusher(directory, asterisk)
    await first.run_once()
    # Ada goes to Basic, giving her number up; with no quarantine it goes straight to Bob.
    directory.users.quarantine_days = 0
    await directory.users.update(
        admin_of(ent), ent, ada.id, ada.version, UserChanges(licence=LicenceProduct.BASIC)
    )
    await directory.users.update(
        admin_of(ent),
        ent,
        bob.id,
        bob.version,
        UserChanges(licence=LicenceProduct.ESSENTIALS, number=FIRST),
    )
    # Two pushers race over the two changes.
    await asyncio.gather(_pusher(directory, asterisk).run_once(), first.run_once())
    await _pusher(directory, asterisk).run_once()
    assert [r for r in await _routes(asterisk) if r[1] == FIRST] == [
        (f"sb-e{ent}-ddi", FIRST, 1, "Dial", f"PJSIP/sb-e{ent}-u{bob.id}")
    ]
    await _in_sync(directory, asterisk, ent)


async def test_the_pusher_wakes_on_commit(directory: Directory, asterisk: AsteriskBackend) -> None:
    ent = await seed_enterprise(directory)
    stop = asyncio.Event()
    # Polling alone would take a minute: only the wake-up on commit gets this done in time.
    worker = asyncio.create_task(_pusher(directory, asterisk, poll_interval=60).run_forever(stop))
    await asyncio.sleep(0.05)
    try:
        ada = await _essentials(directory, ent, "Ada Lovelace", "ada@contoso.com")
        for _ in range(200):
            if await _rows(asterisk, ps_endpoints):
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await worker
    assert [r["id"] for r in await _rows(asterisk, ps_endpoints)] == [f"sb-e{ent}-u{ada.id}"]


# --- the built-in PBX --------------------------------------------------------------------------


async def test_builtin_pbx_keeps_lines_routes_and_groups_in_the_directory(
    directory: Directory,
) -> None:
    backend = BuiltinBackend(directory.db)
    ent, ada, bob, cy = await _three_users(directory, backend)
    ada_ep, bob_ep, cy_ep = (f"sb-e{ent}-u{u.id}" for u in (ada, bob, cy))
    lines = {line.endpoint: line for line in await _directory_rows(directory, BuiltinLine)}
    assert set(lines) == {ada_ep, bob_ep, cy_ep}
    assert (lines[ada_ep].caller_name, lines[ada_ep].caller_number) == ("Ada Lovelace", FIRST)
    assert lines[cy_ep].caller_number == MAIN
    routes = sorted(
        (r.kind, r.key, r.endpoint) for r in await _directory_rows(directory, BuiltinRoute)
    )
    assert routes == sorted(
        [
            ("ddi", ada.number, ada_ep),
            ("ddi", bob.number, bob_ep),
            ("extension", "1000", ada_ep),
            ("extension", "1001", bob_ep),
            ("extension", "1002", cy_ep),
        ]
    )
    [member] = await _directory_rows(directory, BuiltinGroupMember)
    assert member.endpoint == bob_ep
    await directory.users.set_caller_id(
        admin_of(ent), ent, ada.id, ada.version, CallerIdChange(CallerIdMode.ANONYMOUS)
    )
    await DeskPhones(directory.db, "asterisk").issue(admin_of(ent), ent, bob.id)
    cy = await directory.users.get(ent, cy.id)
    await directory.users.remove(admin_of(ent), ent, cy.id, cy.version)
    await _pusher(directory, backend).run_once()
    lines = {line.endpoint: line for line in await _directory_rows(directory, BuiltinLine)}
    assert set(lines) == {ada_ep, bob_ep}
    assert lines[ada_ep].caller_private and lines[bob_ep].sip_md5_cred
    await _in_sync(directory, backend, ent)
    # Drift planted in the built-in tables is found and repaired too.
    async with directory.db.unit_of_work() as uow:
        await uow.session.execute(
            update(BuiltinRoute).where(BuiltinRoute.key == "1000").values(endpoint=bob_ep)
        )
        await uow.session.execute(
            update(BuiltinLine).where(BuiltinLine.endpoint == bob_ep).values(caller_name="Bobby")
        )
        await uow.commit()
    reconciler = Reconciler(directory.db, backend)
    assert {d.kind for d in (await reconciler.check(ent)).drift} == {
        DriftKind.WRONG_ROUTE,
        DriftKind.CALLER_ID,
    }
    assert (await reconciler.fix(ent)).fixed
    await _in_sync(directory, backend, ent)


async def test_a_dead_pushers_work_is_taken_over_when_its_lease_ends(
    directory: Directory, asterisk: AsteriskBackend
) -> None:
    ent = await seed_enterprise(directory)
    ada = await _essentials(directory, ent, "Ada Lovelace", "ada@contoso.com")
    now = utcnow()
    async with directory.db.unit_of_work() as uow:
        # A pusher claimed the change and died: its rows and lease run until a minute from now.
        uow.session.add(
            PbxLease(enterprise_id=ent, holder="dead", expires_at=now + timedelta(minutes=1))
        )
        await uow.session.execute(
            update(OutboxItem)
            .where(OutboxItem.channel == "pbx")
            .values(status=OutboxStatus.IN_PROGRESS, next_attempt_at=now + timedelta(minutes=1))
        )
        await uow.commit()
    assert (await _pusher(directory, asterisk).run_once()).pushed == 0
    assert await _rows(asterisk, ps_endpoints) == []
    later = _pusher(directory, asterisk, clock=lambda: utcnow() + timedelta(minutes=2))
    assert (await later.run_once()).pushed == 1
    assert [r["id"] for r in await _rows(asterisk, ps_endpoints)] == [f"sb-e{ent}-u{ada.id}"]


async def test_pbx_is_wired_from_the_settings(
    directory: Directory, asterisk_url: str, tmp_path: Path
) -> None:
    builtin = Pbx.build(settings_for(directory.db.url, tmp_path), directory.db)
    assert isinstance(builtin.backend, BuiltinBackend)
    settings = replace(
        settings_for(directory.db.url, tmp_path),
        pbx_backend="asterisk",
        pbx_database_url=asterisk_url,
        pbx_sip_realm="pbx.contoso.example",
    )
    pbx = Pbx.build(settings, directory.db)
    try:
        ent = await seed_enterprise(directory)
        ada = await _essentials(directory, ent, "Ada Lovelace", "ada@contoso.com")
        login = await pbx.desk_phones.issue(admin_of(ent), ent, ada.id)
        assert login.realm == "pbx.contoso.example"
        sales = await pbx.hunt_groups.create(admin_of(ent), ent, "Sales")
        await pbx.hunt_groups.add_member(admin_of(ent), ent, sales.id, ada.id)
        assert (await pbx.statuses.of_user(ent, ada.id)).waiting_changes == 3
        assert (await pbx.pusher.run_once()).pushed == 1
        line = await pbx.backend.read(ent, f"sb-e{ent}-u{ada.id}")
        assert line is not None and line.hunt_groups == (sales.queue,)
        assert line.sip is not None and line.sip.realm == "pbx.contoso.example"
        assert "md5_cred='***'" in repr(line.sip)
        assert (await pbx.reconciler.check(ent)).drift == []
    finally:
        await pbx.close()

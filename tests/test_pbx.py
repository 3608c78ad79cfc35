"""The PBX side on SQLite and PostgreSQL: every directory change lands in Asterisk's realtime
tables (or the built-in PBX tables) exactly as Asterisk reads them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.engine import make_url

from services.callerid import CallerIdChange
from services.container import Services
from services.domain import CallerIdMode, LicenceProduct, OutboxStatus, PbxState
from services.errors import ConflictError, ValidationError
from services.inventory import AUTO
from services.models import (
    AuditEntry,
    BuiltinGroupMember,
    BuiltinLine,
    BuiltinRoute,
    OutboxItem,
    PbxLease,
    SipCredential,
    utcnow,
)
from services.pbx.asterisk import (
    AsteriskBackend,
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
from services.pbx.drift import compare
from services.pbx.huntgroups import HuntGroups
from services.pbx.lines import desired_groups, desired_lines
from services.pbx.pusher import PbxPusher, RetryPolicy
from services.pbx.reconcile import DriftKind, Reconciler
from services.pbx.status import PbxStatuses
from services.users import RELEASE, NewUser, UserChanges
from tests.conftest import SERVER_URL, admin_of, seed_enterprise, settings_for

# Every test here writes Asterisk's real realtime schema (tests/asterisk_kit.py): PostgreSQL.
pytestmark = pytest.mark.postgres

MAIN = "+442079461000"
FIRST = "+442079460000"


# --- fixtures ----------------------------------------------------------------------------------


def _pusher(services: Services, backend: PbxBackend, **options: Any) -> PbxPusher:
    return PbxPusher(services.db, backend, retry=RetryPolicy(first_delay=60.0), **options)


async def _rows(backend: AsteriskBackend, table: Table) -> list[dict[str, Any]]:
    async with backend.engine.connect() as connection:
        result = await connection.execute(select(table))
        rows = [dict(row._mapping) for row in result]
    rows = [{k: v for k, v in row.items() if k != "id" or table is not extensions} for row in rows]
    return sorted(rows, key=lambda row: json.dumps(row, sort_keys=True, default=str))


async def _dialplan(backend: AsteriskBackend) -> list[tuple[str, str, int, str, str]]:
    return sorted(
        (r["context"], r["exten"], r["priority"], r["app"], r["appdata"])
        for r in await _rows(backend, extensions)
    )


async def _routes(backend: AsteriskBackend) -> list[tuple[str, str, int, str, str]]:
    """The extension and direct-number rows (what a number rings)."""
    return [r for r in await _dialplan(backend) if r[0].endswith(("-ext", "-ddi"))]


async def _plant(backend: AsteriskBackend, *statements: Any) -> None:
    async with backend.engine.begin() as connection:
        for statement in statements:
            await connection.execute(statement)


async def _directory_rows(services: Services, model: type, *where: Any) -> list[Any]:
    async with services.db.unit_of_work(readonly=True) as uow:
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
) -> dict[str, Any]:
    """A desk phone's endpoint as Switchboard writes it: always with its digest auth."""
    endpoint = f"sb-e{ent}-u{user_id}"
    return {
        "id": endpoint,
        "transport": None,
        "aors": endpoint,
        "auth": endpoint,
        "context": f"sb-e{ent}-dial",
        "disallow": "all",
        "allow": "g722,alaw,ulaw",
        "direct_media": "no",
        "callerid": callerid,
        "callerid_privacy": privacy,
        "send_pai": "no",
        "send_rpid": "no",
        "trust_id_inbound": "no",
        "trust_id_outbound": "no",
        "identify_by": "username",
        "set_var": f"SB_USER=u{user_id}" + (f";SB_PAI={pai}" if pai else ""),
    }


def _ring(ent: int, user_id: int, data: str, app: str = "Dial") -> tuple[str, str, int, str, str]:
    return (f"sb-e{ent}-ring", f"u{user_id}", 1, app, data)


def _goto(ent: int, kind: str, key: str, user_id: int) -> tuple[str, str, int, str, str]:
    return (f"sb-e{ent}-{kind}", key, 1, "Goto", f"sb-e{ent}-ring,u{user_id},1")


def _identity(
    ent: int,
    user_id: int,
    ddi: str,
    *,
    number: str,
    name: str,
    private: bool = False,
    pai: str = "",
) -> list[tuple[str, str, int, str, str]]:
    steps = [
        ("Set", f"SB_USER=u{user_id}"),
        ("Set", f"CALLERID(num)={number}"),
        ("Set", f"CALLERID(name)={name}"),
        ("Set", f"CALLERID(pres)={'prohib' if private else 'allowed_not_screened'}"),
        ("Set", f"SB_PAI={pai}"),
        ("Set", f"SB_DIAL=sb-e{ent}-dial"),
        ("Return", ""),
    ]
    return [(f"sb-e{ent}-id", ddi, i, app, data) for i, (app, data) in enumerate(steps, 1)]


async def _essentials(services: Services, ent: int, name: str, email: str, **extra: Any) -> Any:
    return await services.users.create(
        admin_of(ent), ent, NewUser(name, email, LicenceProduct.ESSENTIALS, **extra)
    )


async def _in_sync(services: Services, backend: PbxBackend, ent: int) -> None:
    """The PBX holds exactly the lines the directory wants, and nothing else of the enterprise."""
    async with services.db.unit_of_work(readonly=True) as uow:
        from services.enterprises import load_enterprise

        enterprise = await load_enterprise(uow.session, ent)
        desired = {
            line.endpoint: line for line in (await desired_lines(uow.session, enterprise)).values()
        }
        groups = list((await desired_groups(uow.session, enterprise)).values())
    held = await backend.inventory(ent)
    assert {e: line.sip for e, line in held.lines.items()} == {
        e: line.sip for e, line in desired.items()
    }
    assert {e: line.hunt_groups for e, line in held.lines.items()} == {
        e: line.hunt_groups for e, line in desired.items()
    }
    assert await backend.drift(ent, list(desired.values()), groups, {}) == []
    if isinstance(backend, BuiltinBackend):
        assert held.lines == desired
        assert compare(desired, held, {}) == []


# --- provisioning ------------------------------------------------------------------------------


async def test_create_routes_the_user_to_teams_and_opens_no_sip_account(
    services: Services, asterisk: AsteriskBackend
) -> None:
    ent = await seed_enterprise(services)
    ada = await _essentials(services, ent, "Ada Lovelace", "ada@contoso.com")
    pusher = _pusher(services, asterisk)
    result = await pusher.run_once()
    assert (result.pushed, result.failed) == (1, 0)
    # No desk phone: no endpoint, AOR or auth that anyone could register or call as.
    for table in (ps_endpoints, ps_aors, ps_auths):
        assert await _rows(asterisk, table) == []
    assert await _dialplan(asterisk) == sorted(
        [
            _goto(ent, "ddi", FIRST, ada.id),
            _goto(ent, "ext", "1000", ada.id),
            *_identity(ent, ada.id, FIRST, number=FIRST, name="Ada Lovelace"),
            _ring(ent, ada.id, f"PJSIP/{FIRST}@sb-teams,30"),
        ]
    )
    [pbx_row] = await _directory_rows(services, OutboxItem, OutboxItem.channel == "pbx")
    assert (pbx_row.status, pbx_row.kind, pbx_row.attempts) == (
        OutboxStatus.DONE,
        "user.create",
        0,
    )
    # The Microsoft channel belongs to the sync engine: untouched.
    [ms_row] = await _directory_rows(services, OutboxItem, OutboxItem.channel == "microsoft")
    assert (ms_row.status, ms_row.attempts) == (OutboxStatus.PENDING, 0)
    status = await PbxStatuses(services.db).of_user(ent, ada.id)
    assert status.state is PbxState.IN_SYNC
    # Nothing left: a second pass pushes nothing.
    assert (await pusher.run_once()).pushed == 0


async def test_edit_number_extension_and_name_moves_the_routes(
    services: Services, asterisk: AsteriskBackend
) -> None:
    ent = await seed_enterprise(services)
    ada = await _essentials(services, ent, "Ada Lovelace", "ada@contoso.com")
    pusher = _pusher(services, asterisk)
    await pusher.run_once()
    edited = await services.users.update(
        admin_of(ent),
        ent,
        ada.id,
        ada.version,
        UserChanges(display_name="Ada King", number="+442079460042", extension=1042),
    )
    assert (await PbxStatuses(services.db).of_user(ent, ada.id)).state is PbxState.PUSHING
    await pusher.run_once()
    assert await _routes(asterisk) == [
        _goto(ent, "ddi", "+442079460042", ada.id),
        _goto(ent, "ext", "1042", ada.id),
    ]
    line = await asterisk.read(ent, f"sb-e{ent}-u{ada.id}")
    assert line is not None
    assert (line.caller_id.name, line.caller_id.number) == ("Ada King", "+442079460042")
    # Basic: the direct number goes (and with it Teams and the Teams identity); the extension
    # stays.
    await services.users.update(
        admin_of(ent),
        ent,
        ada.id,
        edited.version,
        UserChanges(licence=LicenceProduct.BASIC, number=RELEASE),
    )
    await pusher.run_once()
    assert await _dialplan(asterisk) == [
        _goto(ent, "ext", "1042", ada.id),
        _ring(ent, ada.id, "20", app="Hangup"),
    ]
    await _in_sync(services, asterisk, ent)


@pytest.mark.parametrize(
    ("change", "callerid", "privacy", "pai"),  # the desk phone's endpoint and Teams identity
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
async def test_caller_id_modes_map_to_the_endpoint_and_the_teams_identity(
    services: Services,
    asterisk: AsteriskBackend,
    change: CallerIdChange,
    callerid: str,
    privacy: str,
    pai: str | None,
) -> None:
    ent = await seed_enterprise(services)
    ada = await _essentials(services, ent, "Ada Lovelace", "ada@contoso.com")
    await DeskPhones(services.db, "asterisk").issue(admin_of(ent), ent, ada.id)
    ada = await services.users.get(ent, ada.id)
    pusher = _pusher(services, asterisk)
    await pusher.run_once()
    # Start from another mode so every case is a real change.
    start = (
        CallerIdChange(CallerIdMode.COMPANY_MAIN, caller_name="Start")
        if change.mode is CallerIdMode.ANONYMOUS
        else CallerIdChange(CallerIdMode.ANONYMOUS)
    )
    ada = await services.users.set_caller_id(admin_of(ent), ent, ada.id, ada.version, start)
    await services.users.set_caller_id(admin_of(ent), ent, ada.id, ada.version, change)
    kinds = [
        r.kind for r in await _directory_rows(services, OutboxItem, OutboxItem.channel == "pbx")
    ]
    assert kinds == ["user.create", "user.desk_phone", "user.caller_id", "user.caller_id"]
    await pusher.run_once()
    assert await _rows(asterisk, ps_endpoints) == [
        _endpoint_row(ent, ada.id, callerid, privacy=privacy, pai=pai)
    ]
    name, number = callerid[1:].split('" <')
    assert [r for r in await _dialplan(asterisk) if r[0].endswith("-id")] == _identity(
        ent,
        ada.id,
        FIRST,
        number=number.rstrip(">"),
        name=name,
        private=privacy == "prohib",
        pai=pai or "",
    )
    await _in_sync(services, asterisk, ent)


async def test_long_names_are_fitted_to_asterisks_callerid_column(
    services: Services, asterisk: AsteriskBackend
) -> None:
    ent = await seed_enterprise(services)
    ada = await _essentials(
        services, ent, 'Augusta "Ada" King, Countess of ${Lovelace}', "ada@contoso.com"
    )
    await DeskPhones(services.db, "asterisk").issue(admin_of(ent), ent, ada.id)
    await _pusher(services, asterisk).run_once()
    [row] = await _rows(asterisk, ps_endpoints)
    assert row["callerid"] == f'"Augusta Ada King, Coun" <{FIRST}>'
    assert len(row["callerid"]) == 40
    # Realtime dialplan data is substituted by Asterisk: no "$" reaches it from a name.
    names = [r[4] for r in await _dialplan(asterisk) if r[4].startswith("CALLERID(name)")]
    assert names == ["CALLERID(name)=Augusta Ada King, Coun"]
    assert (await asterisk.read(ent, f"sb-e{ent}-u{ada.id}")) is not None
    await _in_sync(services, asterisk, ent)


async def test_remove_takes_every_row_off_the_pbx(
    services: Services, asterisk: AsteriskBackend
) -> None:
    ent = await seed_enterprise(services)
    ada = await _essentials(services, ent, "Ada Lovelace", "ada@contoso.com")
    bob = await _essentials(services, ent, "Bob Byte", "bob@contoso.com")
    groups = HuntGroups(services.db)
    sales = await groups.create(admin_of(ent), ent, "Sales")
    await groups.add_member(admin_of(ent), ent, sales.id, ada.id)
    await groups.add_member(admin_of(ent), ent, sales.id, bob.id)
    await DeskPhones(services.db, "asterisk").issue(admin_of(ent), ent, ada.id)
    pusher = _pusher(services, asterisk)
    await pusher.run_once()
    assert len(await _rows(asterisk, ps_auths)) == 1
    ada = await services.users.get(ent, ada.id)
    await services.users.remove(admin_of(ent), ent, ada.id, ada.version)
    await pusher.run_once()
    for table in (ps_endpoints, ps_aors, ps_auths):
        assert await _rows(asterisk, table) == []
    assert {r[4] for r in await _routes(asterisk)} == {f"sb-e{ent}-ring,u{bob.id},1"}
    assert {r[1] for r in await _dialplan(asterisk) if r[0].endswith("-ring")} == {f"u{bob.id}"}
    assert [r["interface"] for r in await _rows(asterisk, queue_members)] == [
        f"Local/u{bob.id}@sb-e{ent}-ring/n"
    ]
    removal = [
        r
        for r in await _directory_rows(services, OutboxItem, OutboxItem.channel == "pbx")
        if r.kind == "user.remove"
    ]
    assert removal[0].status is OutboxStatus.DONE and removal[0].payload == {"user_id": ada.id}
    await _in_sync(services, asterisk, ent)


async def test_unlicensed_users_have_no_line_and_enabling_adds_one(
    services: Services, asterisk: AsteriskBackend
) -> None:
    ent = await seed_enterprise(services)
    cy = await services.users.create(admin_of(ent), ent, NewUser("Cy", "cy@contoso.com"))
    pusher = _pusher(services, asterisk)
    await pusher.run_once()
    assert await _rows(asterisk, ps_endpoints) == []
    assert await _dialplan(asterisk) == []
    await services.users.enable(admin_of(ent), ent, [cy.id], LicenceProduct.BASIC)
    await DeskPhones(services.db, "asterisk").issue(admin_of(ent), ent, cy.id)
    await pusher.run_once()
    endpoint = f"sb-e{ent}-u{cy.id}"
    assert await _dialplan(asterisk) == [
        _goto(ent, "ext", "1000", cy.id),
        _ring(ent, cy.id, f"PJSIP/{endpoint},30"),
    ]
    assert await _rows(asterisk, ps_endpoints) == [_endpoint_row(ent, cy.id, f'"Cy" <{MAIN}>')]


# --- hunt groups -------------------------------------------------------------------------------


async def test_hunt_group_membership_becomes_queue_members(
    services: Services, asterisk: AsteriskBackend
) -> None:
    ent = await seed_enterprise(services)
    admin = admin_of(ent)
    ada = await _essentials(services, ent, "Ada Lovelace", "ada@contoso.com")
    bob = await _essentials(services, ent, "Bob Byte", "bob@contoso.com")
    groups = HuntGroups(services.db)
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
    pusher = _pusher(services, asterisk)
    await pusher.run_once()
    ada_if, bob_if = (f"Local/u{u.id}@sb-e{ent}-ring/n" for u in (ada, bob))
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
    await _in_sync(services, asterisk, ent)


async def test_hunt_groups_refuse_what_the_pbx_cannot_ring(
    services: Services, asterisk: AsteriskBackend
) -> None:
    ent = await seed_enterprise(services)
    other = await seed_enterprise(
        services, tenant_id="t-other", numbers=("+442079470000", "+442079470009")
    )
    admin = admin_of(ent)
    cy = await services.users.create(admin, ent, NewUser("Cy", "cy@contoso.com"))
    sales = await HuntGroups(services.db).create(admin, ent, "Sales")
    with pytest.raises(ValidationError, match="no calling licence"):
        await HuntGroups(services.db).add_member(admin, ent, sales.id, cy.id)
    with pytest.raises(ValidationError):
        await HuntGroups(services.db).create(admin, ent, "   ")
    from services.errors import NotFoundError

    with pytest.raises(NotFoundError):
        await HuntGroups(services.db).add_member(admin_of(other), other, sales.id, cy.id)


# --- desk phones -------------------------------------------------------------------------------


async def test_desk_phone_login_is_shown_once_and_stored_as_md5_cred_only(
    services: Services, asterisk: AsteriskBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ent = await seed_enterprise(services)
    ada = await _essentials(services, ent, "Ada Lovelace", "ada@contoso.com")
    phones = DeskPhones(services.db, "asterisk", "sip.contoso.example")
    login = await phones.issue(admin_of(ent), ent, ada.id)
    endpoint = f"sb-e{ent}-u{ada.id}"
    assert (login.username, login.realm, login.registrar) == (
        endpoint,
        "asterisk",
        "sip.contoso.example",
    )
    assert len(login.password) == 24 and login.password not in repr(login)
    expected = hashlib.md5(f"{endpoint}:asterisk:{login.password}".encode()).hexdigest()
    [stored] = await _directory_rows(services, SipCredential)
    assert stored.md5_cred == expected
    await _pusher(services, asterisk).run_once()
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
    audit = await _directory_rows(services, AuditEntry)
    everything = json.dumps([(a.action, a.before, a.after) for a in audit]) + caplog.text
    assert login.password not in everything
    assert await phones.has_desk_phone(ent, ada.id)
    # A new login replaces the old one; revoking takes it off the PBX.
    second = await phones.issue(admin_of(ent), ent, ada.id)
    assert second.password != login.password
    assert await phones.revoke(admin_of(ent), ent, ada.id)
    assert not await phones.revoke(admin_of(ent), ent, ada.id)
    await _pusher(services, asterisk).run_once()
    # Revoked: the account is gone, not opened.
    for table in (ps_endpoints, ps_aors, ps_auths):
        assert await _rows(asterisk, table) == []


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
        target = make_url(SERVER_URL)
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


@dataclass
class Outage:
    """A PBX that can be switched off and on, and the backend that talks to it."""

    backend: AsteriskBackend
    down: Callable[[], Any]
    up: Callable[[], Any]


@pytest.fixture
async def flaky_asterisk(asterisk_url: str) -> AsyncIterator[Outage]:
    """Asterisk's database behind a switch: a TCP relay to PostgreSQL that can drop."""
    relay = _PostgresOutage()
    await relay.start()
    url = make_url(asterisk_url).set(port=relay.port).render_as_string(hide_password=False)
    backend = AsteriskBackend(url, connect_timeout=2.0)
    yield Outage(backend, relay.down, relay.up)
    await backend.close()
    await relay.stop()


async def test_pbx_down_during_an_edit_then_back_lands_the_change_once(
    services: Services, asterisk: AsteriskBackend, flaky_asterisk: Outage
) -> None:
    ent = await seed_enterprise(services)
    ada = await _essentials(services, ent, "Ada Lovelace", "ada@contoso.com")
    backend = flaky_asterisk.backend
    await _pusher(services, backend).run_once()
    await flaky_asterisk.down()
    await services.users.update(
        admin_of(ent), ent, ada.id, ada.version, UserChanges(number="+442079460042")
    )
    result = await _pusher(services, backend).run_once()
    assert (result.pushed, result.failed) == (0, 1)
    [waiting] = await _directory_rows(
        services, OutboxItem, OutboxItem.channel == "pbx", OutboxItem.kind == "user.update"
    )
    assert waiting.status is OutboxStatus.PENDING and waiting.attempts == 1
    assert waiting.last_error and waiting.next_attempt_at > utcnow() + timedelta(seconds=30)
    status = await PbxStatuses(services.db).of_user(ent, ada.id)
    assert status.state is PbxState.RETRYING and status.last_error == waiting.last_error
    assert "retrying" in status.summary and "Nothing is lost" in status.summary
    await flaky_asterisk.up()
    # Back, but not yet due: the retry waits its turn.
    assert (await _pusher(services, backend).run_once()).pushed == 0
    later = _pusher(services, backend, clock=lambda: utcnow() + timedelta(minutes=5))
    assert (await later.run_once()).pushed == 1
    assert await _routes(asterisk) == [
        _goto(ent, "ddi", "+442079460042", ada.id),
        _goto(ent, "ext", "1000", ada.id),
    ]
    [landed] = await _directory_rows(services, OutboxItem, OutboxItem.id == waiting.id)
    assert (landed.status, landed.attempts, landed.last_error) == (OutboxStatus.DONE, 1, None)
    assert (await PbxStatuses(services.db).of_user(ent, ada.id)).state is PbxState.IN_SYNC
    assert (await later.run_once()).pushed == 0


async def test_a_change_after_the_pbx_is_back_carries_the_waiting_one_along(
    services: Services, asterisk: AsteriskBackend, flaky_asterisk: Outage
) -> None:
    ent = await seed_enterprise(services)
    ada = await _essentials(services, ent, "Ada Lovelace", "ada@contoso.com")
    backend = flaky_asterisk.backend
    await _pusher(services, backend).run_once()
    await flaky_asterisk.down()
    ada = await services.users.update(
        admin_of(ent), ent, ada.id, ada.version, UserChanges(number="+442079460042")
    )
    assert (await _pusher(services, backend).run_once()).failed == 1
    await flaky_asterisk.up()
    await services.users.set_caller_id(
        admin_of(ent), ent, ada.id, ada.version, CallerIdChange(CallerIdMode.ANONYMOUS)
    )
    # The new change is due at once; its push carries the number change waiting for a retry.
    assert (await _pusher(services, backend).run_once()).pushed == 1
    rows = await _directory_rows(services, OutboxItem, OutboxItem.channel == "pbx")
    assert [(r.kind, r.status, r.attempts) for r in rows] == [
        ("user.create", OutboxStatus.DONE, 0),
        ("user.update", OutboxStatus.DONE, 1),
        ("user.caller_id", OutboxStatus.DONE, 0),
    ]
    assert (await PbxStatuses(services.db).of_user(ent, ada.id)).state is PbxState.IN_SYNC
    line = await asterisk.read(ent, f"sb-e{ent}-u{ada.id}")
    assert line is not None and line.ddi == "+442079460042" and line.caller_id.private
    await _in_sync(services, asterisk, ent)


# --- reconcile ---------------------------------------------------------------------------------


async def _three_users(services: Services, backend: PbxBackend) -> tuple[int, Any, Any, Any]:
    ent = await seed_enterprise(services)
    ada = await _essentials(services, ent, "Ada Lovelace", "ada@contoso.com")
    bob = await _essentials(services, ent, "Bob Byte", "bob@contoso.com")
    cy = await services.users.create(
        admin_of(ent), ent, NewUser("Cy Basic", "cy@contoso.com", LicenceProduct.BASIC)
    )
    sales = await HuntGroups(services.db).create(admin_of(ent), ent, "Sales")
    await HuntGroups(services.db).add_member(admin_of(ent), ent, sales.id, bob.id)
    await _pusher(services, backend).run_once()
    return ent, ada, bob, cy


async def test_reconcile_finds_planted_drift_and_fix_repairs_it(
    services: Services, asterisk: AsteriskBackend
) -> None:
    ent, ada, bob, cy = await _three_users(services, asterisk)
    await DeskPhones(services.db, "asterisk").issue(admin_of(ent), ent, bob.id)
    [sales] = await HuntGroups(services.db).all(ent)
    await _pusher(services, asterisk).run_once()
    reconciler = Reconciler(services.db, asterisk)
    assert (await reconciler.check(ent)).drift == []
    tables = (ps_endpoints, ps_aors, ps_auths, queues, queue_members)
    before = {t.name: await _rows(asterisk, t) for t in tables}
    before_dialplan = await _dialplan(asterisk)
    ada_ep, bob_ep, cy_ep = (f"sb-e{ent}-u{u.id}" for u in (ada, bob, cy))
    ghost = f"sb-e{ent}-u999"
    await _plant(
        asterisk,
        # an endpoint nobody owns, and a number ringing a user who does not exist
        insert(ps_endpoints).values(id=ghost, aors=ghost, context=f"sb-e{ent}-dial"),
        insert(extensions).values(
            context=f"sb-e{ent}-ddi",
            exten="+442079460090",
            priority=1,
            app="Goto",
            appdata=f"sb-e{ent}-ring,u999,1",
        ),
        # Ada's number rings Bob
        update(extensions)
        .where(extensions.c.context == f"sb-e{ent}-ddi", extensions.c.exten == ada.number)
        .values(appdata=f"sb-e{ent}-ring,u{bob.id},1"),
        # Bob's endpoint was edited by hand on the PBX: caller ID and settings
        update(ps_endpoints)
        .where(ps_endpoints.c.id == bob_ep)
        .values(
            callerid='"Bob" <+449999999999>',
            context="default",
            transport="transport-udp",
            direct_media="yes",
            allow="all",
        ),
        # nothing rings Cy any more; Bob left the hunt group behind the directory's back
        delete(extensions).where(
            extensions.c.context == f"sb-e{ent}-ring", extensions.c.exten == f"u{cy.id}"
        ),
        delete(queue_members).where(
            queue_members.c.interface == f"Local/u{bob.id}@sb-e{ent}-ring/n"
        ),
        # leftovers of endpoints deleted by hand
        insert(ps_auths).values(id=f"sb-e{ent}-u555", auth_type="md5", username="x"),
        insert(ps_aors).values(id=f"sb-e{ent}-u556", max_contacts=1),
        # the operator's own phone in Switchboard's queue, and a changed strategy
        insert(queue_members).values(
            queue_name=sales.queue, interface="PJSIP/reception", membername="Desk", uniqueid=999
        ),
        update(queues).where(queues.c.name == sales.queue).values(strategy="random"),
    )
    report = await reconciler.check(ent)
    found = {(d.kind, d.endpoint) for d in report.drift}
    assert found == {
        (DriftKind.UNKNOWN_ENDPOINT, ghost),
        (DriftKind.STRAY_ROUTE, None),
        (DriftKind.WRONG_ROUTE, ada_ep),
        (DriftKind.CALLER_ID, bob_ep),
        (DriftKind.ENDPOINT_SETTINGS, bob_ep),
        (DriftKind.MISSING_LINE, cy_ep),
        (DriftKind.HUNT_GROUPS, bob_ep),
        (DriftKind.ORPHAN_ROW, None),
        (DriftKind.FOREIGN_MEMBER, None),
        (DriftKind.QUEUE_SETTINGS, None),
    }
    assert len([d for d in report.drift if d.kind is DriftKind.ORPHAN_ROW]) == 2
    wrong = next(d for d in report.drift if d.kind is DriftKind.WRONG_ROUTE)
    assert "Bob Byte" in wrong.detail and "Ada Lovelace" in wrong.detail
    settings = next(d for d in report.drift if d.kind is DriftKind.ENDPOINT_SETTINGS)
    for column in ("context", "transport", "direct_media", "allow"):
        assert column in settings.detail
    assert report.remaining is None and not report.fixed
    fixed = await reconciler.fix(ent)
    assert fixed.fixed and len(fixed.drift) == len(report.drift)
    # The operator's queue member is reported, and left where it is.
    assert [d.kind for d in (await reconciler.check(ent)).drift] == [DriftKind.FOREIGN_MEMBER]
    assert await _dialplan(asterisk) == before_dialplan
    for table in tables:
        after = await _rows(asterisk, table)
        if table is queue_members:
            # Bob's membership came back as a new member row; the foreign one stayed.
            after = [
                {k: v for k, v in r.items() if k != "uniqueid"}
                for r in after
                if r["interface"] != "PJSIP/reception"
            ]
            before[table.name] = [
                {k: v for k, v in r.items() if k != "uniqueid"} for r in before[table.name]
            ]
        assert after == before[table.name], table.name


async def test_reconcile_leaves_the_operators_own_dialplan_alone(
    services: Services, asterisk: AsteriskBackend
) -> None:
    ent, _, _, _ = await _three_users(services, asterisk)
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
    reconciler = Reconciler(services.db, asterisk)
    assert (await reconciler.check(ent)).drift == []
    assert (await reconciler.fix(ent)).drift == []
    assert len(await _routes(asterisk)) == 7


# --- two admins, two pushers -------------------------------------------------------------------


async def test_two_admins_editing_one_user_leave_the_pbx_like_the_directory(
    services: Services, asterisk: AsteriskBackend
) -> None:
    ent = await seed_enterprise(services)
    ada = await _essentials(services, ent, "Ada Lovelace", "ada@contoso.com")
    bob = await _essentials(services, ent, "Bob Byte", "bob@contoso.com")
    stop = asyncio.Event()
    workers = [
        asyncio.create_task(_pusher(services, asterisk, poll_interval=0.05).run_forever(stop))
        for _ in range(2)
    ]
    changes: list[Callable[[int], Any]] = [
        lambda v: services.users.update(admin_of(ent), ent, ada.id, v, UserChanges(number=AUTO)),
        lambda v: services.users.update(admin_of(ent), ent, ada.id, v, UserChanges(extension=AUTO)),
        lambda v: services.users.set_caller_id(
            admin_of(ent), ent, ada.id, v, CallerIdChange(CallerIdMode.ANONYMOUS, send_pai=True)
        ),
        lambda v: services.users.update(
            admin_of(ent), ent, ada.id, v, UserChanges(display_name="Ada King")
        ),
        lambda v: services.users.set_caller_id(
            admin_of(ent), ent, ada.id, v, CallerIdChange(CallerIdMode.COMPANY_MAIN)
        ),
        lambda v: services.users.update(admin_of(ent), ent, bob.id, v, UserChanges(extension=AUTO)),
    ]

    async def admin(offset: int) -> int:
        saved = 0
        for round_ in range(8):
            change = changes[(round_ + offset) % len(changes)]
            for _ in range(20):
                target = bob.id if change is changes[-1] else ada.id
                version = (await services.users.get(ent, target)).version
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
    await _pusher(services, asterisk).run_once()
    await _in_sync(services, asterisk, ent)
    pending = await _directory_rows(
        services,
        OutboxItem,
        OutboxItem.channel == "pbx",
        OutboxItem.status != OutboxStatus.DONE,
    )
    assert pending == []


async def test_a_number_moving_between_users_never_rings_the_old_owner(
    services: Services, asterisk: AsteriskBackend
) -> None:
    ent = await seed_enterprise(services)
    ada = await _essentials(services, ent, "Ada Lovelace", "ada@contoso.com")
    bob = await services.users.create(
        admin_of(ent), ent, NewUser("Bob Byte", "bob@contoso.com", LicenceProduct.BASIC)
    )
    first = _pusher(services, asterisk)
    await first.run_once()
    # Ada goes to Basic, giving her number up; with no quarantine it goes straight to Bob.
    services.users.quarantine_days = 0
    await services.users.update(
        admin_of(ent), ent, ada.id, ada.version, UserChanges(licence=LicenceProduct.BASIC)
    )
    await services.users.update(
        admin_of(ent),
        ent,
        bob.id,
        bob.version,
        UserChanges(licence=LicenceProduct.ESSENTIALS, number=FIRST),
    )
    # Two pushers race over the two changes.
    await asyncio.gather(_pusher(services, asterisk).run_once(), first.run_once())
    await _pusher(services, asterisk).run_once()
    assert [r for r in await _routes(asterisk) if r[1] == FIRST] == [
        _goto(ent, "ddi", FIRST, bob.id)
    ]
    await _in_sync(services, asterisk, ent)


async def test_the_pusher_wakes_on_commit(services: Services, asterisk: AsteriskBackend) -> None:
    ent = await seed_enterprise(services)
    stop = asyncio.Event()
    # Polling alone would take a minute: only the wake-up on commit gets this done in time.
    worker = asyncio.create_task(_pusher(services, asterisk, poll_interval=60).run_forever(stop))
    await asyncio.sleep(0.05)
    try:
        ada = await _essentials(services, ent, "Ada Lovelace", "ada@contoso.com")
        for _ in range(200):
            if await _routes(asterisk):
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await worker
    assert [r[4] for r in await _routes(asterisk)] == [f"sb-e{ent}-ring,u{ada.id},1"] * 2


# --- the built-in PBX --------------------------------------------------------------------------


async def test_builtin_pbx_keeps_lines_routes_and_groups_in_the_directory(
    services: Services,
) -> None:
    backend = BuiltinBackend(services.db)
    ent, ada, bob, cy = await _three_users(services, backend)
    ada_ep, bob_ep, cy_ep = (f"sb-e{ent}-u{u.id}" for u in (ada, bob, cy))
    lines = {line.endpoint: line for line in await _directory_rows(services, BuiltinLine)}
    assert set(lines) == {ada_ep, bob_ep, cy_ep}
    assert (lines[ada_ep].caller_name, lines[ada_ep].caller_number) == ("Ada Lovelace", FIRST)
    assert lines[cy_ep].caller_number == MAIN
    routes = sorted(
        (r.kind, r.key, r.endpoint) for r in await _directory_rows(services, BuiltinRoute)
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
    [member] = await _directory_rows(services, BuiltinGroupMember)
    assert member.endpoint == bob_ep
    await services.users.set_caller_id(
        admin_of(ent), ent, ada.id, ada.version, CallerIdChange(CallerIdMode.ANONYMOUS)
    )
    await DeskPhones(services.db, "asterisk").issue(admin_of(ent), ent, bob.id)
    cy = await services.users.get(ent, cy.id)
    await services.users.remove(admin_of(ent), ent, cy.id, cy.version)
    await _pusher(services, backend).run_once()
    lines = {line.endpoint: line for line in await _directory_rows(services, BuiltinLine)}
    assert set(lines) == {ada_ep, bob_ep}
    assert lines[ada_ep].caller_private and lines[bob_ep].sip_md5_cred
    await _in_sync(services, backend, ent)
    # Drift planted in the built-in tables is found and repaired too.
    async with services.db.unit_of_work() as uow:
        await uow.session.execute(
            update(BuiltinRoute).where(BuiltinRoute.key == "1000").values(endpoint=bob_ep)
        )
        await uow.session.execute(
            update(BuiltinLine).where(BuiltinLine.endpoint == bob_ep).values(caller_name="Bobby")
        )
        await uow.commit()
    reconciler = Reconciler(services.db, backend)
    assert {d.kind for d in (await reconciler.check(ent)).drift} == {
        DriftKind.WRONG_ROUTE,
        DriftKind.CALLER_ID,
    }
    assert (await reconciler.fix(ent)).fixed
    await _in_sync(services, backend, ent)


async def test_a_dead_pushers_work_is_taken_over_when_its_lease_ends(
    services: Services, asterisk: AsteriskBackend
) -> None:
    ent = await seed_enterprise(services)
    ada = await _essentials(services, ent, "Ada Lovelace", "ada@contoso.com")
    now = utcnow()
    async with services.db.unit_of_work() as uow:
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
    assert (await _pusher(services, asterisk).run_once()).pushed == 0
    assert await _dialplan(asterisk) == []
    later = _pusher(services, asterisk, clock=lambda: utcnow() + timedelta(minutes=2))
    assert (await later.run_once()).pushed == 1
    assert (await asterisk.read(ent, f"sb-e{ent}-u{ada.id}")) is not None


async def test_pbx_is_wired_from_the_settings(
    services: Services, asterisk_url: str, tmp_path: Path
) -> None:
    """The composition root builds the PBX side from the settings: the backend PBX_BACKEND
    names, and the desk phones in the realm PBX_SIP_REALM names."""
    assert isinstance(services.pbx.backend, BuiltinBackend)
    settings = replace(
        settings_for(services.db.url, tmp_path),
        pbx_backend="asterisk",
        pbx_database_url=asterisk_url,
        pbx_sip_realm="pbx.contoso.example",
    )
    wired = Services.build(services.db, settings, services.vault)
    pbx = wired.pbx
    try:
        ent = await seed_enterprise(wired)
        ada = await _essentials(wired, ent, "Ada Lovelace", "ada@contoso.com")
        login = await wired.desk_phones.issue(admin_of(ent), ent, ada.id)
        assert login.realm == "pbx.contoso.example"
        sales = await wired.hunt_groups.create(admin_of(ent), ent, "Sales")
        await wired.hunt_groups.add_member(admin_of(ent), ent, sales.id, ada.id)
        assert (await wired.pbx_statuses.of_user(ent, ada.id)).waiting_changes == 3
        assert (await pbx.pusher.run_once()).pushed == 2  # Ada's line and the Sales queue
        line = await pbx.backend.read(ent, f"sb-e{ent}-u{ada.id}")
        assert line is not None and line.hunt_groups == (sales.queue,)
        assert line.sip is not None and line.sip.realm == "pbx.contoso.example"
        assert "md5_cred='***'" in repr(line.sip)
        assert (await pbx.reconciler.check(ent)).drift == []
    finally:
        await pbx.close()

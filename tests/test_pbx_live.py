"""Live SIP against a real Asterisk: what the directory says is what the PBX does on the wire.

The directory writes through the product's own path (users service, outbox, pusher, Asterisk
backend) into Asterisk's real realtime schema; Asterisk runs the static configuration that
`switchboard pbx config` writes. Loopback SIP peers stand in for the carrier (127.0.0.2) and
for Microsoft's Direct Routing proxies (127.0.0.3); desk phones and strangers are SIP user
agents on other loopback addresses.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from services.callerid import CallerIdChange
from services.cli import main
from services.config import PbxTrunkSettings, Settings
from services.container import Services
from services.db import Database
from services.domain import CallerIdMode, LicenceProduct
from services.passwords import PasswordVault
from services.pbx.asterisk import AsteriskBackend
from services.pbx.credentials import DeskPhones
from services.pbx.huntgroups import HuntGroups
from services.pbx.lines import CallerIdLine, PbxLine
from services.pbx.pusher import PbxPusher
from services.pbx.staticconf import static_files
from services.users import NewUser
from tests.asterisk_kit import (
    ENTERPRISES,
    PSTN_IP,
    STRANGER_IP,
    TEAMS_IP,
    LivePbx,
    TlsSipPeer,
    display_name,
    free_udp_port,
    hang_up,
    harness,
    header,
    sipua,
    uri_user,
)
from tests.conftest import admin_of, seed_enterprise, settings_for

MAIN = "+442079461000"
ADA_DDI = "+442079460000"
BOB_DDI = "+442079460001"
EXTERNAL = "+447700900123"

pytestmark = pytest.mark.postgres


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    """The directory on SQLite (the PBX side is what these tests are about)."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'switchboard.db'}")
    await db.migrate()
    vault = PasswordVault.from_settings("", tmp_path / "secret.key")
    yield Services.build(db, settings_for(db.url, tmp_path), vault)
    await db.dispose()


class Office:
    """One enterprise on the live PBX, changed through the product's own services."""

    def __init__(self, services: Services, backend: AsteriskBackend, live: LivePbx) -> None:
        self.services = services
        self.backend = backend
        self.live = live
        self.ent = 0
        self.phones: list[Any] = []

    async def open(self) -> Office:
        self.ent = await seed_enterprise(self.services)
        assert self.ent == 1, "the static dialplan is written for enterprises 1-3"
        return self

    async def push(self) -> None:
        """Land every waiting change on Asterisk."""
        result = await PbxPusher(self.services.db, self.backend).run_once()
        assert result.failed == 0

    async def user(self, name: str, licence: LicenceProduct = LicenceProduct.ESSENTIALS) -> Any:
        email = name.split()[0].lower() + "@contoso.com"
        made = await self.services.users.create(
            admin_of(self.ent), self.ent, NewUser(name, email, licence)
        )
        await self.push()
        return made

    async def desk_phone(self, user: Any, ip: str = "127.0.0.4") -> Any:
        """Issue the user a desk phone login and register a phone with it."""
        login = await DeskPhones(self.services.db, "asterisk").issue(
            admin_of(self.ent), self.ent, user.id
        )
        await self.push()
        phone = self.live.phone(login.username, password=login.password, ip=ip)
        self.phones.append(phone)
        assert phone.register().code == 200
        return phone

    async def caller_id(self, user: Any, change: CallerIdChange) -> None:
        fresh = await self.services.users.get(self.ent, user.id)
        await self.services.users.set_caller_id(
            admin_of(self.ent), self.ent, user.id, fresh.version, change
        )
        await self.push()

    def keep(self, phone: Any) -> Any:
        if phone is not self.live.microsoft:  # the run's Teams peer outlives the test
            self.phones.append(phone)
        return phone

    def close(self) -> None:
        for phone in self.phones:
            hang_up(phone)
        # Calls still ringing (a queue retries its members) end with the test.
        self.live.ast.cli("channel request hangup all")


@pytest.fixture
async def office(
    services: Services, asterisk: AsteriskBackend, live_pbx: LivePbx
) -> AsyncIterator[Office]:
    made = await Office(services, asterisk, live_pbx).open()
    yield made
    made.close()


def _request_user(message: str) -> str:
    return uri_user(message.split(" ", 2)[1])


# --- nobody calls or registers as someone else -------------------------------------------------


async def test_no_endpoint_accepts_an_unauthenticated_register_or_invite(office: Office) -> None:
    ada = await office.user("Ada Lovelace")
    bob = await office.user("Bob Byte")
    bob_phone = await office.desk_phone(bob)
    live = office.live
    ada_endpoint, bob_endpoint = f"sb-e1-u{ada.id}", f"sb-e1-u{bob.id}"
    # Ada has no desk phone: there is no account to register or call as, with or without a
    # password.
    stranger = office.keep(live.phone(ada_endpoint, ip=STRANGER_IP, password="guess"))
    assert stranger.register(password=None).code == 401
    assert stranger.register().code == 401
    assert stranger.invite(EXTERNAL, password=None).code == 401
    # Bob's account needs Bob's password.
    impostor = office.keep(live.phone(bob_endpoint, ip=STRANGER_IP, password="wrong"))
    assert impostor.register(password=None).code == 401
    assert impostor.register().code == 401
    assert impostor.invite(EXTERNAL, password=None).code == 401
    # A stranger naming a trunk or a user's number is still a stranger.
    for user in ("sb-pstn", "sb-teams", ADA_DDI, "anonymous"):
        assert (
            office.keep(live.phone(user, ip=STRANGER_IP)).invite(EXTERNAL, password=None).code
            == 401
        )
    # Revoking Bob's login closes his account: his old password no longer works.
    password = bob_phone.password
    assert await DeskPhones(office.services.db, "asterisk").revoke(
        admin_of(office.ent), office.ent, bob.id
    )
    await office.push()
    old = office.keep(live.phone(bob_endpoint, ip="127.0.0.5", password=password))
    assert old.register().code == 401
    assert old.register(password=None).code == 401
    assert old.invite(EXTERNAL).code == 401
    pstn = office.keep(live.pstn())
    assert pstn.wait_request("INVITE", timeout=0.5) is None


# --- calls that reach Teams ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "dialled",
    [ADA_DDI, ADA_DDI[1:], "0" + ADA_DDI[3:], "00" + ADA_DDI[1:]],
    ids=["e164", "without-plus", "national", "international-prefix"],
)
async def test_a_ddi_from_the_pstn_rings_teams_and_the_desk_phone(
    office: Office, dialled: str
) -> None:
    ada = await office.user("Ada Lovelace")
    desk = await office.desk_phone(ada)
    teams = office.keep(office.live.teams())
    carrier = office.keep(office.live.pstn())
    reply = carrier.invite(dialled)
    assert reply.code == 486  # both legs answered busy
    at_teams = teams.wait_request("INVITE")
    assert at_teams is not None, "the call never reached the Teams trunk"
    assert _request_user(at_teams) == ADA_DDI
    at_desk = desk.wait_request("INVITE")
    assert at_desk is not None, "the desk phone did not ring"


async def test_a_user_without_a_desk_phone_rings_on_teams_alone(office: Office) -> None:
    await office.user("Ada Lovelace")
    bob = await office.user("Bob Byte")
    teams = office.keep(office.live.teams())
    bob_phone = await office.desk_phone(bob)
    # Bob calls Ada's extension from his desk phone: the call goes to Teams, with Bob's identity.
    assert bob_phone.invite("1000").code == 486
    at_teams = teams.wait_request("INVITE")
    assert at_teams is not None and _request_user(at_teams) == ADA_DDI
    [shown] = header(at_teams, "From")
    assert uri_user(shown) == BOB_DDI and display_name(shown) == "Bob Byte"


async def test_from_teams_a_user_reaches_extensions_and_the_pstn(office: Office) -> None:
    ada = await office.user("Ada Lovelace")
    bob = await office.user("Bob Byte")
    bob_phone = await office.desk_phone(bob)
    carrier = office.keep(office.live.pstn())
    teams = office.keep(office.live.teams())
    ada_on_teams = office.keep(office.live.teams(ADA_DDI))
    assert ada_on_teams.invite("1001").code == 486
    # Bob rings on his desk phone and on Teams.
    at_teams = teams.wait_request("INVITE")
    assert at_teams is not None and _request_user(at_teams) == BOB_DDI
    at_desk = bob_phone.wait_request("INVITE")
    assert at_desk is not None
    assert uri_user(header(at_desk, "From")[0]) == ADA_DDI
    assert ada_on_teams.invite("07700900123").code == 486
    out = carrier.wait_request("INVITE")
    assert out is not None and _request_user(out) == EXTERNAL
    assert uri_user(header(out, "From")[0]) == ADA_DDI
    assert ada.number == ADA_DDI


async def test_an_unknown_or_removed_teams_caller_cannot_call_out(office: Office) -> None:
    ada = await office.user("Ada Lovelace")
    carrier = office.keep(office.live.pstn())
    teams = office.keep(office.live.teams())
    stranger = office.keep(office.live.teams("+442079469999"))
    assert stranger.invite(EXTERNAL).code == 403
    fresh = await office.services.users.get(office.ent, ada.id)
    await office.services.users.remove(admin_of(office.ent), office.ent, ada.id, fresh.version)
    await office.push()
    former = office.keep(office.live.teams(ADA_DDI))
    assert former.invite(EXTERNAL).code == 403
    assert carrier.wait_request("INVITE", timeout=0.5) is None
    # Nor is she reachable: her number and extension ring nothing.
    assert carrier.invite(ADA_DDI).code >= 400
    assert teams.wait_request("INVITE", timeout=0.5) is None


# --- caller ID on the wire ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "from_user", "from_name", "pai", "privacy"),
    [
        (CallerIdChange(CallerIdMode.OWN_DDI), ADA_DDI, "Ada Lovelace", None, False),
        (
            CallerIdChange(CallerIdMode.COMPANY_MAIN, caller_name="Contoso"),
            MAIN,
            "Contoso",
            None,
            False,
        ),
        (
            CallerIdChange(CallerIdMode.OTHER, number_digits="0042"),
            "+442079460042",
            "Ada Lovelace",
            None,
            False,
        ),
        (CallerIdChange(CallerIdMode.ANONYMOUS), "anonymous", "Anonymous", None, True),
        (
            CallerIdChange(CallerIdMode.ANONYMOUS, send_pai=True),
            "anonymous",
            "Anonymous",
            ADA_DDI,
            True,
        ),
        (
            CallerIdChange(CallerIdMode.OWN_DDI, send_pai=True),
            ADA_DDI,
            "Ada Lovelace",
            ADA_DDI,
            False,
        ),
        (
            CallerIdChange(CallerIdMode.OWN_DDI, send_pai=True, pai_digits="1000"),
            ADA_DDI,
            "Ada Lovelace",
            MAIN,
            False,
        ),
    ],
    ids=["own", "main", "other", "withheld", "withheld-pai", "own-pai", "pai-main-number"],
)
@pytest.mark.parametrize("device", ["teams", "desk-phone"])
async def test_calls_to_the_pstn_carry_the_users_caller_id(
    office: Office,
    device: str,
    change: CallerIdChange,
    from_user: str,
    from_name: str,
    pai: str | None,
    privacy: bool,
) -> None:
    ada = await office.user("Ada Lovelace")
    await office.caller_id(ada, change)
    carrier = office.keep(office.live.pstn())
    caller = (
        office.keep(office.live.teams(ADA_DDI))
        if device == "teams"
        else await office.desk_phone(ada)
    )
    assert caller.invite("07700900123").code == 486
    out = carrier.wait_request("INVITE")
    assert out is not None, "nothing reached the PSTN trunk"
    assert _request_user(out) == EXTERNAL
    [shown] = header(out, "From")
    assert (uri_user(shown), display_name(shown)) == (from_user, from_name)
    assert [uri_user(v) for v in header(out, "P-Asserted-Identity")] == ([pai] if pai else [])
    assert header(out, "Privacy") == (["id"] if privacy else [])


async def test_nobody_receives_another_users_withheld_identity(office: Office) -> None:
    ada = await office.user("Ada Lovelace")
    bob = await office.user("Bob Byte")
    await office.caller_id(ada, CallerIdChange(CallerIdMode.ANONYMOUS, send_pai=True))
    await office.caller_id(bob, CallerIdChange(CallerIdMode.OWN_DDI, send_pai=True))
    bob_phone = await office.desk_phone(bob)
    teams = office.keep(office.live.teams())
    # Ada calls Bob from Teams, and from her desk phone: Bob sees no number and no PAI.
    ada_on_teams = office.keep(office.live.teams(ADA_DDI))
    assert ada_on_teams.invite("1001").code == 486
    at_desk = bob_phone.wait_request("INVITE")
    assert at_desk is not None
    assert uri_user(header(at_desk, "From")[0]) == "anonymous"
    assert header(at_desk, "P-Asserted-Identity") == []
    assert header(at_desk, "Remote-Party-ID") == []
    assert ADA_DDI not in at_desk
    ada_phone = await office.desk_phone(ada, ip="127.0.0.6")
    bob_phone.clear()
    assert ada_phone.invite(BOB_DDI).code == 486
    for message in (bob_phone.wait_request("INVITE"), teams.wait_request("INVITE")):
        assert message is not None
        assert ADA_DDI not in message and header(message, "P-Asserted-Identity") == []


# --- hunt groups ------------------------------------------------------------------------------


async def test_a_hunt_groups_number_rings_its_members(office: Office) -> None:
    ada = await office.user("Ada Lovelace")
    bob = await office.user("Bob Byte", LicenceProduct.BASIC)
    cy = await office.user("Cy Caller")
    groups = HuntGroups(office.services.db)
    sales = await groups.create(
        admin_of(office.ent), office.ent, "Sales", extension=1050, number="+442079460050"
    )
    await groups.add_member(admin_of(office.ent), office.ent, sales.id, ada.id)
    await groups.add_member(admin_of(office.ent), office.ent, sales.id, bob.id)
    await office.push()
    bob_phone = await office.desk_phone(bob)
    teams = office.keep(office.live.teams())
    carrier = office.keep(office.live.pstn())
    # From the PSTN, to the group's number: Ada rings on Teams, Bob on his desk phone.
    carrier.invite("02079460050", timeout=3)
    at_teams = teams.wait_request("INVITE")
    assert at_teams is not None and _request_user(at_teams) == ADA_DDI
    assert bob_phone.wait_request("INVITE") is not None
    # From Teams (Cy) and from a desk phone (Cy's), to the group's extension.
    for caller in (
        office.keep(office.live.teams(cy.number)),
        await office.desk_phone(cy, ip="127.0.0.7"),
    ):
        teams.clear()
        bob_phone.clear()
        caller.invite("1050", timeout=3)
        assert teams.wait_request("INVITE") is not None
        assert bob_phone.wait_request("INVITE") is not None


# --- the operator's guide, followed -------------------------------------------------------------


def test_the_operator_guide_connects_an_asterisk(
    tmp_path: Path, asterisk_url: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """docs/PBX_SETUP.md, steps 2-7: Asterisk's schema (made by the fixture with Asterisk's own
    alembic), Switchboard's settings, `switchboard pbx config`, Asterisk started on exactly
    those files, a user provisioned, reconcile clean, and a call from outside reaching Teams."""
    port = harness.free_port("127.0.0.1")
    pstn_port, teams_port = free_udp_port(PSTN_IP), free_udp_port(TEAMS_IP)
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'switchboard.db'}",
        "SWITCHBOARD_SECRET_KEY_FILE": str(tmp_path / "secret.key"),
        "PBX_BACKEND": "asterisk",
        "PBX_DATABASE_URL": asterisk_url.replace("+asyncpg", ""),
        "PBX_SIP_BIND": f"127.0.0.1:{port}",
        "PBX_TEAMS_HOSTS": f"{TEAMS_IP}:{teams_port}",
        "PBX_TEAMS_TRANSPORT": "udp",
        "PBX_TEAMS_MATCH": TEAMS_IP,
        "PBX_TEAMS_MEDIA_ENCRYPTION": "no",
        "PBX_PSTN_HOSTS": f"{PSTN_IP}:{pstn_port}",
        "PBX_PSTN_MATCH": PSTN_IP,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    create = ["enterprise", "create", "--name", "Contoso", "--tenant-id", "t-guide"]
    assert main([*create, "--main-number", "020 7946 1000", "--extensions", "1000-1099"]) == 0
    assert main(["numbers", "import", "--tenant-id", "t-guide", "--range", ADA_DDI, BOB_DDI]) == 0
    assert main(["licences", "set", "--tenant-id", "t-guide", "--essentials", "5"]) == 0
    etc = tmp_path / "etc-switchboard"
    assert main(["pbx", "config", "--out", str(etc)]) == 0
    files = {path.name: path.read_text() for path in etc.iterdir()}
    # Microsoft's peer listens before Asterisk starts qualifying the Teams trunk.
    server = ("127.0.0.1", port)
    teams = sipua.Phone("teams", server=server, ip=TEAMS_IP, port=teams_port)
    carrier = sipua.Phone("carrier", server=server, ip=PSTN_IP, port=pstn_port)
    phones: list[Any] = [teams, carrier]
    ast = harness.Asterisk(asterisk_url, sip_port=port, configs=files)
    ast.start()
    try:
        asyncio.run(_provision_one_user(env, tmp_path))
        capsys.readouterr()
        assert main(["pbx", "reconcile", "--tenant-id", "t-guide"]) == 0
        assert "No drift" in capsys.readouterr().out
        endpoints = ast.cli("pjsip show endpoints")
        assert "sb-teams" in endpoints and "sb-pstn" in endpoints and "sb-e1-u" not in endpoints
        assert carrier.invite("02079460000").code == 486
        at_teams = teams.wait_request("INVITE")
        assert at_teams is not None and _request_user(at_teams) == ADA_DDI
    finally:
        for phone in phones:
            hang_up(phone)
        ast.stop()


async def _provision_one_user(env: dict[str, str], tmp_path: Path) -> None:
    """An admin creates Ada (what the bot does), and the pusher lands her on Asterisk."""
    db = Database(env["DATABASE_URL"])
    vault = PasswordVault.from_settings("", tmp_path / "secret.key")
    services = Services.build(db, Settings.from_env(), vault)
    backend = AsteriskBackend(env["PBX_DATABASE_URL"])
    try:
        enterprise = await services.enterprises.by_tenant("t-guide")
        assert enterprise is not None
        ent = enterprise.id
        await services.users.create(
            admin_of(ent),
            ent,
            NewUser("Ada Lovelace", "ada@contoso.com", LicenceProduct.ESSENTIALS),
        )
        assert (await PbxPusher(db, backend).run_once()).pushed == 1
    finally:
        await backend.close()
        await db.dispose()


def test_calls_reach_teams_over_tls_with_the_sbc_name(
    tmp_path: Path, asterisk_url: str, capsys: Any
) -> None:
    """Direct Routing speaks TLS: with the TLS settings of docs/PBX_SETUP.md step 4, Asterisk
    loads the certificate, reaches the Teams peer over TLS, and names itself by the SBC's FQDN
    in Contact and Via (Microsoft's proxies refuse an IP address there)."""
    ca = trustme.CA()
    sbc = ca.issue_cert("sbc.switchboard.test")
    sbc.cert_chain_pems[0].write_to_path(str(tmp_path / "sbc.crt"))
    sbc.private_key_pem.write_to_path(str(tmp_path / "sbc.key"))
    peer_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("sip.pstnhub.test").configure_cert(peer_context)
    microsoft = TlsSipPeer(TEAMS_IP, peer_context)
    port, tls_port = harness.free_port("127.0.0.1"), harness.free_port("127.0.0.1")
    pstn_port = free_udp_port(PSTN_IP)
    trunks = PbxTrunkSettings(
        sip_bind=f"127.0.0.1:{port}",
        tls_bind=f"127.0.0.1:{tls_port}",
        tls_cert_file=str(tmp_path / "sbc.crt"),
        tls_key_file=str(tmp_path / "sbc.key"),
        sbc_fqdn="sbc.switchboard.test",
        teams_hosts=(f"{TEAMS_IP}:{microsoft.port}",),
        teams_transport="tls",
        teams_match=(TEAMS_IP,),
        teams_media_encryption="no",  # this build has no res_srtp
        pstn_hosts=(f"{PSTN_IP}:{pstn_port}",),
        pstn_match=(PSTN_IP,),
    )
    files = static_files(trunks, "asterisk", asterisk_url, ENTERPRISES)
    ast = harness.Asterisk(asterisk_url, sip_port=port, configs=files)
    ast.start()
    carrier = sipua.Phone(
        "carrier", server=(ast.sip_host, ast.sip_port), ip=PSTN_IP, port=pstn_port
    )
    try:
        assert "sb-tls" in ast.cli("pjsip show transports")
        asyncio.run(_route_a_number_to_teams(asterisk_url))
        assert carrier.invite(ADA_DDI).code == 486
        invite = microsoft.wait_request("INVITE")
        assert invite is not None, "nothing reached the Teams peer over TLS"
        assert _request_user(invite) == ADA_DDI
        [via] = header(invite, "Via")
        assert via.startswith(f"SIP/2.0/TLS sbc.switchboard.test:{tls_port}")
        [contact] = header(invite, "Contact")
        assert f"@sbc.switchboard.test:{tls_port};transport=TLS>" in contact
    finally:
        hang_up(carrier)
        microsoft.close()
        ast.stop()


async def _route_a_number_to_teams(asterisk_url: str) -> None:
    """Ada's line, as the pusher writes it, straight into Asterisk's tables."""
    backend = AsteriskBackend(asterisk_url)
    try:
        await backend.provision(
            PbxLine(
                endpoint="sb-e1-u1",
                enterprise_id=1,
                user_id=1,
                extension="1000",
                ddi=ADA_DDI,
                caller_id=CallerIdLine("Ada Lovelace", ADA_DDI, False, False, None),
                sip=None,
                hunt_groups=(),
            )
        )
    finally:
        await backend.close()

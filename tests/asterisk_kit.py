"""A real Asterisk for the PBX tests: Asterisk's own realtime schema in a database of this run,
and one Asterisk process per run that loads the static configuration `switchboard pbx config`
writes, with SIP peers on loopback standing in for the carrier and for Microsoft's proxies.

The kit (build, schema, harness, SIP user agent) lives in ../shared/asterisk; the build is
cached per machine. Nothing here skips: without Asterisk or PostgreSQL the tests fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from services.config import PbxTrunkSettings
from services.pbx.asterisk import AsteriskBackend
from services.pbx.staticconf import EnterpriseDialplan, static_files
from tests.conftest import SERVER_URL, extra_run_database

ROOT = Path(__file__).resolve().parent.parent
KIT = Path(os.environ.get("SWITCHBOARD_ASTERISK_KIT") or ROOT.parent / "shared" / "asterisk")
sys.dont_write_bytecode = True  # the kit may be read-only
sys.path.insert(0, str(KIT))

import harness  # noqa: E402
import sipua  # noqa: E402

Phone = sipua.Phone
header = sipua.header
uri_user = sipua.uri_user
display_name = sipua.display_name

ASTERISK_TABLES = ("ps_endpoints", "ps_aors", "ps_auths", "extensions", "queues", "queue_members")
# The static dialplan is written for these enterprise ids: every test's directory starts its
# ids at 1 (a fresh SQLite file, or PostgreSQL's tables restarted).
ENTERPRISES = tuple(EnterpriseDialplan(i, f"Enterprise {i}", "GB") for i in (1, 2, 3))
PSTN_IP = "127.0.0.2"
TEAMS_IP = "127.0.0.3"
STRANGER_IP = "127.0.0.9"


def free_udp_port(ip: str) -> int:
    """A UDP port free on that loopback address."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind((ip, 0))
        return int(probe.getsockname()[1])
    finally:
        probe.close()


def hang_up(phone: Any) -> None:
    """Close a SIP user agent so its port is free at once: its listening thread is woken by a
    datagram and ends (a socket closed under a blocked recvfrom keeps its port on Linux)."""
    phone._closed = True
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as waker:
        waker.sendto(b"SIP/2.0 200 OK\r\n\r\n", (phone.ip, phone.port))
    phone._thread.join(timeout=2)
    phone.close()


@pytest.fixture(scope="session")
def asterisk_database() -> str:
    """A database of this run holding Asterisk's realtime schema, made by Asterisk's alembic."""
    if not SERVER_URL:
        pytest.fail("The PBX tests need TEST_DATABASE_URL (PostgreSQL): Asterisk reads it.")
    url = asyncio.run(extra_run_database("asterisk"))
    harness.realtime_schema(url)
    return url


@pytest.fixture
async def asterisk_url(asterisk_database: str) -> str:
    """Asterisk's realtime tables, emptied for this test."""
    backend = AsteriskBackend(asterisk_database)
    async with backend.engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {', '.join(ASTERISK_TABLES)} RESTART IDENTITY"))
    await backend.close()
    return asterisk_database


@pytest.fixture
async def asterisk(asterisk_url: str) -> AsyncIterator[AsteriskBackend]:
    """The Asterisk backend over the real schema, quick to give up when it gets no answer."""
    backend = AsteriskBackend(asterisk_url, connect_timeout=2.0)
    yield backend
    await backend.close()


@dataclass
class LivePbx:
    """A running Asterisk and where its trunk peers must listen."""

    ast: Any
    trunks: PbxTrunkSettings
    pstn_port: int
    teams_port: int

    @property
    def server(self) -> tuple[str, int]:
        """Where phones and trunk peers send SIP."""
        return (self.ast.sip_host, self.ast.sip_port)

    def phone(self, user: str, **options: Any) -> Any:
        """A SIP user agent talking to this Asterisk (a desk phone, or a stranger)."""
        return Phone(user, server=self.server, **options)

    def pstn(self) -> Any:
        """The carrier's side of the PSTN trunk: receives calls to the PSTN, places DDI calls."""
        return Phone("carrier", server=self.server, ip=PSTN_IP, port=self.pstn_port)

    def teams(self, caller: str = "teams", port: int | None = None) -> Any:
        """Microsoft's side of the Teams trunk; `caller` is the From user of its calls."""
        return Phone(
            caller,
            server=self.server,
            ip=TEAMS_IP,
            port=self.teams_port if port is None else port,
            password=None,
        )


@pytest.fixture(scope="session")
def live_pbx(asterisk_database: str) -> Iterator[LivePbx]:
    """One Asterisk for the run, configured by the files `switchboard pbx config` writes."""
    port = harness.free_port("127.0.0.1")
    pstn_port, teams_port = free_udp_port(PSTN_IP), free_udp_port(TEAMS_IP)
    trunks = PbxTrunkSettings(
        sip_bind=f"127.0.0.1:{port}",
        teams_hosts=(f"{TEAMS_IP}:{teams_port}",),
        teams_transport="udp",
        teams_match=(TEAMS_IP,),
        pstn_hosts=(f"{PSTN_IP}:{pstn_port}",),
        pstn_match=(PSTN_IP,),
    )
    files = static_files(trunks, "asterisk", asterisk_database, ENTERPRISES)
    try:
        ast = harness.Asterisk(asterisk_database, sip_port=port, configs=files)
        ast.start()
    except harness.AsteriskError as error:
        pytest.fail(f"Asterisk did not start: {error}")
    try:
        yield LivePbx(ast, trunks, pstn_port, teams_port)
    finally:
        ast.stop()

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
import ssl
import sys
import threading
import time
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


class TlsSipPeer:
    """A SIP peer over TLS (Microsoft's proxies speak TLS on 5061): accepts Asterisk's
    connections, records each request and answers INVITEs 486 Busy Here."""

    def __init__(self, ip: str, context: ssl.SSLContext) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((ip, 0))
        self.listener.listen(8)
        self.port = int(self.listener.getsockname()[1])
        self.context = context
        self.received: list[str] = []
        self._closed = False
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            connection = self.context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        buffer = b""
        with connection:
            while not self._closed:
                try:
                    data = connection.recv(65535)
                except (OSError, ssl.SSLError):
                    return
                if not data:
                    return
                buffer += data
                while b"\r\n\r\n" in buffer:
                    head, _, rest = buffer.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n"):
                        name, _, value = line.partition(b":")
                        if name.strip().lower() in (b"content-length", b"l"):
                            length = int(value.strip() or 0)
                    if len(rest) < length:
                        break
                    message = (head + b"\r\n\r\n" + rest[:length]).decode(errors="replace")
                    buffer = rest[length:]
                    self._answer(connection, message)

    def _answer(self, connection: ssl.SSLSocket, message: str) -> None:
        if message.startswith("SIP/2.0") or message.startswith("ACK "):
            return
        with self._lock:
            self.received.append(message)
        first, headers, _ = sipua.parse(message)
        status = "486 Busy Here" if first.startswith("INVITE ") else "200 OK"
        to = headers["to"][0] + ("" if ";tag=" in headers["to"][0] else ";tag=tlspeer")
        lines = [f"SIP/2.0 {status}", *(f"Via: {via}" for via in headers["via"])]
        lines += [
            f"From: {headers['from'][0]}",
            f"To: {to}",
            f"Call-ID: {headers['call-id'][0]}",
            f"CSeq: {headers['cseq'][0]}",
            "Content-Length: 0",
            "",
            "",
        ]
        connection.sendall("\r\n".join(lines).encode())

    def wait_request(self, method: str = "INVITE", timeout: float = 5.0) -> str | None:
        """The first request of that method received (waiting up to timeout), or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = [m for m in self.received if m.startswith(method + " ")]
            if found:
                return found[0]
            time.sleep(0.05)
        return None

    def close(self) -> None:
        self._closed = True
        self.listener.close()


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
    # Microsoft's side of the Teams trunk, listening for the whole run: Asterisk qualifies
    # the trunk (OPTIONS every 60 s, as Direct Routing expects) and marks it unavailable if
    # nobody answers, after which calls to Teams are not even tried.
    microsoft: Any = None

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

    def teams(self, caller: str | None = None) -> Any:
        """Microsoft's side of the Teams trunk: without a caller, the peer that receives the
        calls to Teams (cleared); with one, a peer placing calls from that Teams user."""
        if caller is None:
            self.microsoft.clear()
            return self.microsoft
        return Phone(caller, server=self.server, ip=TEAMS_IP, password=None)


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
        # This build has no res_srtp: plain RTP on the lab trunk (production: sdes).
        teams_media_encryption="no",
        pstn_hosts=(f"{PSTN_IP}:{pstn_port}",),
        pstn_match=(PSTN_IP,),
    )
    files = static_files(trunks, "asterisk", asterisk_database, ENTERPRISES)
    microsoft = Phone("teams", server=("127.0.0.1", port), ip=TEAMS_IP, port=teams_port)
    try:
        ast = harness.Asterisk(asterisk_database, sip_port=port, configs=files)
        ast.start()
    except harness.AsteriskError as error:
        hang_up(microsoft)
        pytest.fail(f"Asterisk did not start: {error}")
    try:
        yield LivePbx(ast, trunks, pstn_port, teams_port, microsoft)
    finally:
        hang_up(microsoft)
        ast.stop()

"""`SandboxServer`: Graph (http) and Entra (https) stand-ins on loopback, on their own thread.

The servers run on a private event loop in a background thread, so blocking clients
(msal and its `requests`) can call them from any thread, including the test's own loop.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import trustme
from aiohttp import web

from sandbox.admin import AdminApi
from sandbox.cloud import Sandbox
from sandbox.config import FaultConfig, SandboxConfig, ThrottleLimits
from sandbox.entra import build_entra_app
from sandbox.faults import FaultInjector
from sandbox.graph.service import VERSION_ROOT, GraphService
from sandbox.state import SandboxState
from sandbox.stats import Stats, TenantStats
from sandbox.throttle import Throttle

CA_FILE_NAME = "sandbox-ca.pem"
ACCESS_LOG_FORMAT = '%a "%r" %s %Tfs'
_START_TIMEOUT_SECONDS = 30


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class SandboxServer:
    """Local Microsoft Graph and Entra token endpoint; use `async with` (or `with`)."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        host: str = "127.0.0.1",
        graph_port: int = 0,
        token_port: int = 0,
        state_dir: str | Path | None = None,
        seed: dict[str, Any] | None = None,
        access_log: bool = False,
    ) -> None:
        self.sandbox = Sandbox(config)
        if seed is not None:
            self.sandbox.state.seed(seed)
        self.host = host
        self._requested_ports = (graph_port, token_port)
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._own_state_dir = False
        self._access_log = access_log
        self._ca = trustme.CA()
        self._graph_port = 0
        self._token_port = 0
        self._ca_path: Path | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # What clients need

    @property
    def state(self) -> SandboxState:
        """The live state: seed and inspect tenants, users, numbers and mail directly."""
        return self.sandbox.state

    @property
    def config(self) -> SandboxConfig:
        """The settings in force (token lifetime, operation delay, throttle, faults)."""
        return self.sandbox.config

    @property
    def stats(self) -> Stats:
        """Counters of what reached the sandbox, per tenant."""
        return self.sandbox.stats

    @property
    def throttle(self) -> Throttle:
        """The write throttle."""
        return self.sandbox.throttle

    @property
    def faults(self) -> FaultInjector:
        """The fault injector."""
        return self.sandbox.faults

    @property
    def graph_root(self) -> str:
        """`http://host:port` of the Graph server (the admin API lives under `/_sandbox`)."""
        return f"http://{_url_host(self.host)}:{self._graph_port}"

    @property
    def graph_url(self) -> str:
        """The Graph base URL, e.g. `http://127.0.0.1:PORT/v1.0`."""
        return self.graph_root + VERSION_ROOT

    @property
    def admin_url(self) -> str:
        """The admin API's base URL."""
        return self.graph_root + "/_sandbox"

    @property
    def authority_host(self) -> str:
        """`https://host:port` of the Entra stand-in."""
        return f"https://{_url_host(self.host)}:{self._token_port}"

    def authority_for(self, tenant_id: str) -> str:
        """The msal authority for a tenant."""
        return f"{self.authority_host}/{tenant_id}"

    def token_endpoint_for(self, tenant_id: str) -> str:
        """The OAuth 2.0 token endpoint for a tenant."""
        return f"{self.authority_for(tenant_id)}/oauth2/v2.0/token"

    @property
    def ca_path(self) -> Path:
        """PEM file of the CA that signed the https certificate (for REQUESTS_CA_BUNDLE)."""
        if self._ca_path is None:
            raise RuntimeError("the sandbox is not running")
        return self._ca_path

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts the sandbox's CA, for aiohttp or httpx clients."""
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context

    # Shortcuts to the sandbox

    def seed(self, document: dict[str, Any]) -> None:
        """Load a seed document (see `SandboxState.seed`)."""
        self.sandbox.state.seed(document)

    def set_faults(self, config: FaultConfig | None = None, **changes: Any) -> FaultConfig:
        """Replace or change fault settings at runtime."""
        return self.sandbox.set_faults(config, **changes)

    def set_throttle(self, limits: ThrottleLimits | None = None, **changes: Any) -> ThrottleLimits:
        """Replace or change throttle limits at runtime."""
        return self.sandbox.set_throttle(limits, **changes)

    def tenant_stats(self, tenant_id: str) -> TenantStats:
        """A copy of one tenant's counters."""
        return self.sandbox.stats.tenant(tenant_id)

    def reset(self) -> None:
        """Forget all state and counters."""
        self.sandbox.reset()

    # Lifecycle

    def start(self) -> None:
        """Bind both ports, write the CA file and serve on a background thread."""
        if self._thread is not None:
            raise RuntimeError("the sandbox is already running")
        if self._state_dir is None:
            self._state_dir = Path(tempfile.mkdtemp(prefix="switchboard-sandbox-"))
            self._own_state_dir = True
        self._state_dir.mkdir(parents=True, exist_ok=True)
        self._ca_path = self._state_dir / CA_FILE_NAME
        self._ca.cert_pem.write_to_path(str(self._ca_path))
        graph_socket = _bind(self.host, self._requested_ports[0])
        token_socket = _bind(self.host, self._requested_ports[1])
        self._graph_port = graph_socket.getsockname()[1]
        self._token_port = token_socket.getsockname()[1]
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(
            target=self._serve, args=(graph_socket, token_socket), name="sandbox", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT_SECONDS):
            raise RuntimeError("the sandbox did not start in time")
        if self._startup_error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("the sandbox failed to start") from self._startup_error

    def stop(self) -> None:
        """Stop serving and remove the CA file's folder if the sandbox made it."""
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = None
        self._loop = None
        if self._own_state_dir and self._state_dir is not None:
            shutil.rmtree(self._state_dir, ignore_errors=True)
            self._state_dir = None
            self._own_state_dir = False
            self._ca_path = None

    def _server_ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        names = ["127.0.0.1", "localhost", "::1"]
        if self.host not in names:
            names.append(self.host)
        self._ca.issue_cert(*names).configure_cert(context)
        return context

    def _serve(self, graph_socket: socket.socket, token_socket: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        runners: list[web.AppRunner] = []
        try:
            runners = loop.run_until_complete(self._start_sites(graph_socket, token_socket))
        except BaseException as exc:  # reported to the starting thread
            self._startup_error = exc
            graph_socket.close()
            token_socket.close()
            loop.close()
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            for runner in runners:
                loop.run_until_complete(runner.cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _start_sites(
        self, graph_socket: socket.socket, token_socket: socket.socket
    ) -> list[web.AppRunner]:
        log_options: dict[str, Any] = (
            {"access_log_format": ACCESS_LOG_FORMAT} if self._access_log else {"access_log": None}
        )
        graph_app = web.Application(client_max_size=8 * 1024 * 1024)
        graph_app.add_routes(GraphService(self.sandbox).routes())
        graph_app.add_routes(AdminApi(self.sandbox).routes())
        graph_runner = web.AppRunner(graph_app, **log_options)
        await graph_runner.setup()
        await web.SockSite(graph_runner, graph_socket).start()

        sandbox = self.sandbox
        entra_app = build_entra_app(sandbox.state, sandbox.issuer, sandbox.config, sandbox.stats)
        entra_runner = web.AppRunner(entra_app, **log_options)
        await entra_runner.setup()
        await web.SockSite(
            entra_runner, token_socket, ssl_context=self._server_ssl_context()
        ).start()
        return [graph_runner, entra_runner]

    def __enter__(self) -> SandboxServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> SandboxServer:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

"""`python -m bot.demo` (`make demo`): Switchboard, a Graph sandbox and the Microsoft 365
Agents Playground on this machine, with a demo enterprise to try every task on.

Three processes, each started in its own session and stopped in reverse order:

1. the Graph sandbox (`python -m sandbox`), seeded with sandbox/demo_seed.json;
2. the bot (`python -m bot`) on a fresh SQLite database (var/demo.db), with an empty app id,
   because the Playground sends no token;
3. the Playground (npm `@microsoft/m365agentsplayground`), whose mock tenant and people
   come from .m365agentsplayground.yml; the database is seeded to match them.

The end-to-end tests (tests/e2e/) start the same stack on free ports through `DemoStack`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from services.config import Settings
from services.container import Services, open_services
from services.domain import AdminRole, LicenceProduct
from services.users import NewUser
from services.views import Actor

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PLAYGROUND_CONFIG = PROJECT_ROOT / ".m365agentsplayground.yml"
SANDBOX_SEED = PROJECT_ROOT / "sandbox" / "demo_seed.json"
PLAYGROUND_CLI = PROJECT_ROOT / "node_modules" / "@microsoft" / "m365agentsplayground" / "cli.js"
HOST = "127.0.0.1"

DEMO_ACTOR = Actor("demo-seed", "Demo set-up", AdminRole.SERVICE_PROVIDER, None)
ENTERPRISE_NAME = "Contoso Ltd"
MAIN_NUMBER = "+442071234000"
EXTENSIONS = (1000, 1999)
ESSENTIALS_LICENCES = 15
BASIC_LICENCES = 5
# 300 numbers in one block and 100 in another; the second holds the one ending in 1111.
NUMBER_RANGES = (("+442071230001", "+442071230300"), ("+442071231100", "+442071231199"))
# A reception line and a sales line: numbers to present as caller ID by their last digits.
SINGLE_NUMBERS = ("+442071232222", "+442071233333")


@dataclass(frozen=True)
class ExistingUser:
    """A telephony user the demo enterprise already has."""

    display_name: str
    email: str
    licence: LicenceProduct | None
    number: str | None = None


EXISTING_USERS = (
    # Erin holds the number the Graph sandbox already shows assigned to her.
    ExistingUser(
        "Erin Enterprise",
        "erin.enterprise@contoso.example",
        LicenceProduct.ESSENTIALS,
        "+442071230001",
    ),
    ExistingUser("Priya Shah", "priya.shah@contoso.example", LicenceProduct.ESSENTIALS),
    ExistingUser("Tom Okafor", "tom.okafor@contoso.example", LicenceProduct.BASIC),
    ExistingUser("Sam Nolicence", "sam.nolicence@contoso.example", None),
    ExistingUser("Mia Laurent", "mia.laurent@contoso.example", None),
)


class DemoError(Exception):
    """Something that stops the demo, told in one line."""


# --- the Playground's people -------------------------------------------------------------


@dataclass(frozen=True)
class PlaygroundPerson:
    """A mock Teams user of the Playground."""

    name: str
    aad_object_id: str
    email: str


@dataclass(frozen=True)
class PlaygroundTenant:
    """The Playground's mock tenant: the person at the keyboard and five others."""

    tenant_id: str
    current_user: PlaygroundPerson
    users: tuple[PlaygroundPerson, ...]

    @property
    def people(self) -> tuple[PlaygroundPerson, ...]:
        """Everyone, the current user first."""
        return (self.current_user, *self.users)


def _person(entry: Mapping[str, Any]) -> PlaygroundPerson:
    return PlaygroundPerson(
        name=str(entry["name"]),
        aad_object_id=str(entry["aadObjectId"]).lower(),
        email=str(entry.get("email") or entry.get("userPrincipleName") or ""),
    )


def read_playground_tenant(path: Path = PLAYGROUND_CONFIG) -> PlaygroundTenant:
    """The tenant and people of a Playground config file (.m365agentsplayground.yml)."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        return PlaygroundTenant(
            tenant_id=str(document["tenantId"]).lower(),
            current_user=_person(document["currentUser"]),
            users=tuple(_person(entry) for entry in document["users"]),
        )
    except OSError as error:
        raise DemoError(f"cannot read {path}: {error.strerror}") from None
    except (yaml.YAMLError, KeyError, TypeError) as error:
        raise DemoError(f"{path} is not a Playground config file ({error!r})") from None


# --- seeding ---------------------------------------------------------------------------------


async def seed_directory(services: Services, tenant: PlaygroundTenant) -> int:
    """Create the demo enterprise for the Playground's tenant; return its id."""
    enterprise = await services.enterprises.create(
        DEMO_ACTOR,
        name=ENTERPRISE_NAME,
        tenant_id=tenant.tenant_id,
        main_number=MAIN_NUMBER,
        extensions=EXTENSIONS,
        region="GB",
        # No consent and no first sync yet: the Global Admin starts the sync by hand.
        consent=False,
    )
    for first, last in NUMBER_RANGES:
        await services.inventory.import_range(DEMO_ACTOR, enterprise.id, first, last)
    await services.inventory.import_csv(DEMO_ACTOR, enterprise.id, "\n".join(SINGLE_NUMBERS))
    await services.licences.set_pool(
        DEMO_ACTOR, enterprise.id, LicenceProduct.ESSENTIALS, ESSENTIALS_LICENCES
    )
    await services.licences.set_pool(
        DEMO_ACTOR, enterprise.id, LicenceProduct.BASIC, BASIC_LICENCES
    )
    for index, person in enumerate(tenant.people):
        await services.enterprises.grant(
            DEMO_ACTOR,
            aad_object_id=person.aad_object_id,
            role=AdminRole.GLOBAL_ADMIN if index == 0 else AdminRole.ENTERPRISE_ADMIN,
            enterprise_id=enterprise.id,
            display_name=person.name,
        )
    for user in EXISTING_USERS:
        await services.users.create(
            DEMO_ACTOR,
            enterprise.id,
            NewUser(
                display_name=user.display_name,
                email=user.email,
                licence=user.licence,
                number=user.number,
            ),
        )
    return enterprise.id


async def _seed(settings: Settings, tenant: PlaygroundTenant) -> None:
    services = await open_services(settings)
    try:
        await seed_directory(services, tenant)
    finally:
        await services.close()


# --- processes -------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM the child if the demo dies without stopping it (kill -9)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class ManagedProcess:
    """A child process with its log file and the URL that says it is up."""

    name: str
    command: Sequence[str]
    env: Mapping[str, str]
    log_path: Path
    health_url: str
    expect_body: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start the process in its own session, its output going to the log file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            # Own session: Ctrl-C reaches the demo only, which stops the children in order.
            # Called from the main thread: the death signal follows the thread that forked.
            self.process = subprocess.Popen(  # noqa: S603 - fixed commands, no shell
                list(self.command),
                cwd=PROJECT_ROOT,
                env=dict(self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )

    @property
    def running(self) -> bool:
        """True while the process has not exited."""
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the process's output."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_healthy(self, timeout: float, stop: threading.Event | None = None) -> None:
        """Poll the health URL until it answers; raise DemoError if the process dies first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if stop is not None and stop.is_set():
                raise DemoError("interrupted while starting")
            if not self.running:
                code = self.process.returncode if self.process else None
                raise DemoError(
                    f"the {self.name} exited while starting (exit code {code}); "
                    f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            if _answers(self.health_url, self.expect_body):
                return
            time.sleep(0.2)
        raise DemoError(
            f"the {self.name} did not answer {self.health_url} within {timeout:.0f} s; "
            f"its log ({self.log_path}) ends with:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process's whole session, then SIGKILL what is left after `timeout`."""
        if self.process is None:
            return
        pgid = self.process.pid  # start_new_session made the child its group's leader
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                self.process.wait(5)
        # Whatever the child left in its group (a grandchild) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def _answers(url: str, expect_body: str | None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback URL
            if response.status != 200:
                return False
            return expect_body is None or response.read().decode().strip() == expect_body
    except (OSError, urllib.error.URLError, ValueError):
        return False


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when nothing listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers themselves do: connections still in TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST) -> int:
    """A port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


# --- the stack -------------------------------------------------------------------------------


def _env_port(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise DemoError(f"{name}={raw} is not a port number")
    return int(raw)


@dataclass(frozen=True)
class DemoSettings:
    """Where the demo's pieces listen and keep their files."""

    bot_port: int = 3978
    playground_port: int = 56150
    graph_port: int = 7440
    token_port: int = 7441
    state_dir: Path = PROJECT_ROOT / "var"
    playground_config: Path = PLAYGROUND_CONFIG
    sandbox_seed: Path = SANDBOX_SEED
    # How long the sandbox takes to carry out a number order, in seconds.
    operation_delay: float = 1.0
    # How often the bot's sync workers and notifier look for work, in seconds.
    sync_poll_seconds: float = 1.0
    startup_timeout: float = 60.0

    @classmethod
    def from_env(cls) -> DemoSettings:
        """Ports from BOT_PORT, PLAYGROUND_PORT, SANDBOX_GRAPH_PORT and SANDBOX_TOKEN_PORT."""
        return cls(
            bot_port=_env_port("BOT_PORT", 3978),
            playground_port=_env_port("PLAYGROUND_PORT", 56150),
            graph_port=_env_port("SANDBOX_GRAPH_PORT", 7440),
            token_port=_env_port("SANDBOX_TOKEN_PORT", 7441),
        )

    @classmethod
    def on_free_ports(cls, state_dir: Path, **overrides: Any) -> DemoSettings:
        """Settings on ports free right now, with files under `state_dir` (for tests)."""
        return cls(
            bot_port=free_port(),
            playground_port=free_port(),
            graph_port=free_port(),
            token_port=free_port(),
            state_dir=state_dir,
            **overrides,
        )

    @property
    def database_path(self) -> Path:
        """The demo's SQLite database, recreated on every start."""
        return self.state_dir / "demo.db"

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL of the demo database."""
        return f"sqlite+aiosqlite:///{self.database_path}"

    @property
    def log_dir(self) -> Path:
        """Where each process's output goes."""
        return self.state_dir / "demo-logs"

    @property
    def secret_key_file(self) -> Path:
        """The key that seals generated passwords in the demo database."""
        return self.state_dir / "demo-secret.key"

    @property
    def sandbox_dir(self) -> Path:
        """Where the sandbox writes its CA certificate."""
        return self.state_dir / "sandbox"

    @property
    def bot_url(self) -> str:
        """The bot's messaging endpoint."""
        return f"http://{HOST}:{self.bot_port}/api/messages"

    @property
    def playground_url(self) -> str:
        """The page to open in a browser."""
        return f"http://{HOST}:{self.playground_port}"

    @property
    def graph_url(self) -> str:
        """The sandbox's Graph base URL."""
        return f"http://{HOST}:{self.graph_port}/v1.0"

    @property
    def sandbox_admin_url(self) -> str:
        """The sandbox's admin API (state, mailbox, statistics)."""
        return f"http://{HOST}:{self.graph_port}/_sandbox"

    @property
    def authority_host(self) -> str:
        """The sandbox's Entra token endpoint host."""
        return f"https://{HOST}:{self.token_port}"


@dataclass(frozen=True)
class SandboxApp:
    """The app registration the bot signs in to the sandbox's tenant with."""

    client_id: str
    client_secret: str = field(repr=False)
    mail_sender: str


def sandbox_app_for(seed_path: Path, tenant_id: str) -> SandboxApp | None:
    """The app registered in the sandbox seed for `tenant_id` (or consented there), if any."""
    try:
        seed = json.loads(seed_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DemoError(f"cannot read the sandbox seed {seed_path}: {error}") from None
    tenants = seed.get("tenants", [])
    apps = {app["clientId"]: app for t in tenants for app in t.get("apps", [])}
    for tenant in tenants:
        if str(tenant.get("id", "")).lower() != tenant_id:
            continue
        candidates = [a["clientId"] for a in tenant.get("apps", [])]
        candidates += list(tenant.get("consentedApps", []))
        sender = next(iter(tenant.get("globalAdmins", [])), "")
        for client_id in candidates:
            if client_id in apps:
                app = apps[client_id]
                return SandboxApp(client_id, str(app["secret"]), sender)
    return None


class DemoStack:
    """The sandbox, the seeded bot and the Playground; `with DemoStack(settings) as stack:`."""

    def __init__(self, settings: DemoSettings, *, stop: threading.Event | None = None) -> None:
        self.settings = settings
        self.tenant = read_playground_tenant(settings.playground_config)
        self.sandbox_app = sandbox_app_for(settings.sandbox_seed, self.tenant.tenant_id)
        self.stop_requested = stop or threading.Event()
        self.processes: list[ManagedProcess] = []

    # The pieces, in start order.

    def _sandbox(self) -> ManagedProcess:
        s = self.settings
        return ManagedProcess(
            name="Graph sandbox",
            command=[
                sys.executable,
                "-m",
                "sandbox",
                "--seed",
                str(s.sandbox_seed),
                "--host",
                HOST,
                "--graph-port",
                str(s.graph_port),
                "--token-port",
                str(s.token_port),
                "--state-dir",
                str(s.sandbox_dir),
                "--operation-delay",
                str(s.operation_delay),
                "--quiet",
            ],
            env=_child_env({}),
            log_path=s.log_dir / "sandbox.log",
            health_url=f"{s.sandbox_admin_url}/state",
        )

    def bot_environment(self) -> dict[str, str]:
        """The bot's settings: the demo database, no app id, and the sandbox as Microsoft."""
        s = self.settings
        env = {
            "BOT_HOST": HOST,
            "BOT_PORT": str(s.bot_port),
            "DATABASE_URL": s.database_url,
            "SWITCHBOARD_SECRET_KEY_FILE": str(s.secret_key_file),
            # The Playground sends no token: the bot runs unauthenticated, and says so.
            "MicrosoftAppId": "",
            "MicrosoftAppPassword": "",
            "LOG_LEVEL": "INFO",
            "GRAPH_BASE_URL": s.graph_url,
            "GRAPH_AUTHORITY_HOST": s.authority_host,
            "GRAPH_AUTHORITY_CA_BUNDLE": str(s.sandbox_dir / "sandbox-ca.pem"),
            "GRAPH_OPERATION_POLL_SECONDS": str(min(1.0, s.operation_delay)),
            "SYNC_POLL_SECONDS": str(s.sync_poll_seconds),
            "SYNC_NOTIFIER_POLL_SECONDS": str(s.sync_poll_seconds),
            "SYNC_VERIFY_DELAY_SECONDS": str(s.sync_poll_seconds),
            "SYNC_NOTIFICATION_SERVICE_URL": f"{s.playground_url}/_connector",
        }
        if self.sandbox_app is not None:
            env["GRAPH_CLIENT_ID"] = self.sandbox_app.client_id
            env["GRAPH_CLIENT_SECRET"] = self.sandbox_app.client_secret
            env["MAIL_SENDER"] = self.sandbox_app.mail_sender
        return env

    def _bot(self) -> ManagedProcess:
        s = self.settings
        return ManagedProcess(
            name="bot",
            command=[sys.executable, "-m", "bot"],
            env=_child_env(self.bot_environment()),
            log_path=s.log_dir / "bot.log",
            health_url=f"http://{HOST}:{s.bot_port}/healthz",
        )

    def _playground(self) -> ManagedProcess:
        s = self.settings
        node = shutil.which("node")
        if node is None:
            raise DemoError("`node` is not installed; the Agents Playground needs Node.js 18+")
        if not PLAYGROUND_CLI.is_file():
            raise DemoError(
                "the Agents Playground is not installed: run `npm install` (or `make demo`)"
            )
        return ManagedProcess(
            name="Agents Playground",
            command=[
                node,
                str(PLAYGROUND_CLI),
                "--app-endpoint",
                s.bot_url,
                "--channel-id",
                "msteams",
                "--port",
                str(s.playground_port),
                "--disable-telemetry",
            ],
            env=_child_env(
                {
                    "TEAMSAPPTESTER_BROWSER": "none",
                    "M365_AGENTS_PLAYGROUND_CONFIG_PATH": str(s.playground_config),
                    "M365_AGENTS_PLAYGROUND_LOGFILE": str(s.log_dir / "playground-events.log"),
                }
            ),
            log_path=s.log_dir / "playground.log",
            health_url=f"{s.playground_url}/_debug/ping",
            expect_body="pong",
        )

    # Starting and stopping.

    def check_ports(self) -> None:
        """Refuse to start when a port is taken (the Playground would silently pick another)."""
        s = self.settings
        wanted = [
            ("bot", s.bot_port, "BOT_PORT"),
            ("Agents Playground", s.playground_port, "PLAYGROUND_PORT"),
            ("Graph sandbox", s.graph_port, "SANDBOX_GRAPH_PORT"),
            ("sandbox token endpoint", s.token_port, "SANDBOX_TOKEN_PORT"),
        ]
        for name, port, variable in wanted:
            if not port_is_free(port):
                raise DemoError(
                    f"port {port} (the {name}) is already in use: stop what listens there "
                    f"or choose another with {variable}=..."
                )

    def reset_database(self) -> None:
        """Delete the demo database and seed a fresh one for the Playground's tenant."""
        s = self.settings
        s.state_dir.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{s.database_path}{suffix}").unlink(missing_ok=True)
        settings = Settings(database_url=s.database_url, secret_key_file=s.secret_key_file)
        asyncio.run(_seed(settings, self.tenant))

    def _launch(self, process: ManagedProcess) -> None:
        if self.stop_requested.is_set():
            raise DemoError("interrupted while starting")
        self.processes.append(process)
        process.start()
        process.wait_healthy(self.settings.startup_timeout, self.stop_requested)

    def start(self) -> None:
        """Start everything and wait until each piece answers; stop it all on failure."""
        self.check_ports()
        try:
            self._launch(self._sandbox())
            self.reset_database()
            self._launch(self._bot())
            self._launch(self._playground())
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every process, the last started first."""
        while self.processes:
            self.processes.pop().stop()

    def dead_process(self) -> ManagedProcess | None:
        """A process that exited while the demo runs, if any."""
        return next((p for p in self.processes if not p.running), None)

    def __enter__(self) -> DemoStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def graph_preflight(stack: DemoStack, timeout: float = 60.0) -> str:
    """`switchboard graph check` for the demo tenant against the sandbox: what an operator
    runs before a customer's first sync, shown with the demo (it never stops it)."""
    if stack.sandbox_app is None:
        return "  no app of the Graph sandbox serves this tenant: nothing to check"
    try:
        command = [sys.executable, "-m", "services.cli", "graph", "check", "--tenant-id"]
        done = subprocess.run(  # noqa: S603 (our own interpreter and module)
            [*command, stack.tenant.tenant_id],
            cwd=PROJECT_ROOT,
            env=_child_env(stack.bot_environment()),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return f"  the check did not finish in {timeout:.0f} s"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return "\n".join(f"  {line}" for line in lines)


def _child_env(overrides: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --- the command -----------------------------------------------------------------------------


def welcome_text(stack: DemoStack) -> str:
    """What to open and what to try, printed once everything is up."""
    s = stack.settings
    tenant = stack.tenant
    others = ", ".join(person.name for person in tenant.users)
    sync_line = (
        f"  Sandbox:     {s.sandbox_admin_url}/   (mailbox: {s.sandbox_admin_url}/mail)"
        if stack.sandbox_app
        else "  Sandbox:     no app of the Graph sandbox serves this tenant: the sync stays local"
    )
    return f"""
Switchboard demo is running.

  Open:        {s.playground_url}
  You are:     {tenant.current_user.name}, Global Admin of {ENTERPRISE_NAME}
               (enterprise admins: {others})
  Bot:         {s.bot_url}   (no authentication: local demo only)
{sync_line}
  Logs:        {s.log_dir}

Try this in the Playground's chat:
  1. Type "help": the home card lists what you can do.
  2. Press "Create user": name "Ada Lovelace", e-mail ada.lovelace@contoso.example,
     Essentials, "Choose a number", and type 1111 in the last-digits box.
  3. On the result, press "Caller ID", choose "Another company number", type 2222 (the
     reception line) and press "Save caller ID".
  4. Type "directory": Ada is there with her number and extension.
  5. Type "sync" and press "Sync Teams Users": a card tells you when the sync is done.
  Also: "unlicensed" (enable Sam and Mia), "numbers 111", "find priya"; tick "Tell the
  user" when creating someone, sync, and read their e-mail in the sandbox's mailbox.

Press Ctrl-C to stop everything.
"""


def main() -> int:
    """Start the demo, print where to go, and run until Ctrl-C or SIGTERM."""
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        stack = DemoStack(DemoSettings.from_env(), stop=stop)
        print("Starting the Graph sandbox, the bot and the Agents Playground...", flush=True)
        stack.start()
    except DemoError as error:
        if stop.is_set():
            print("demo: stopped.", file=sys.stderr)
            return 130
        print(f"demo: {error}", file=sys.stderr)
        return 1
    print(welcome_text(stack), flush=True)
    print(
        "Microsoft Graph preflight against the sandbox (switchboard graph check):\n"
        + graph_preflight(stack)
        + "\n",
        flush=True,
    )
    exit_code = 0
    while not stop.wait(0.5):
        dead = stack.dead_process()
        if dead is not None:
            print(
                f"demo: the {dead.name} stopped unexpectedly; its log ({dead.log_path}) "
                f"ends with:\n{dead.log_tail()}",
                file=sys.stderr,
            )
            exit_code = 1
            break
    print("Stopping...", flush=True)
    stack.stop()
    print("Stopped.", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())

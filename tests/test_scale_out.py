"""Scale-out, shown: two bot processes (`python -m bot`, each with its own background work) and
two worker processes (`switchboard worker`) on one PostgreSQL database, Microsoft played by the
Graph sandbox and Teams by the fake Bot Connector.

Turns go round-robin to the two bots, a redelivered create goes to both at once, and while the
sync runs one bot and one worker are killed with SIGKILL. Every create, edit and sync happens
once, no number or extension is given twice, the sync's completion notice is sent once, and
the run finishes on the processes left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from cards.actions import Verb
from sandbox import SandboxServer
from services.config import Settings, as_environment
from services.container import Services
from services.db import Database
from services.domain import OutboxStatus, ProvisioningStatus
from services.models import SyncRun, User
from services.passwords import PasswordVault
from tests.conftest import PG_URL, extra_run_database
from tests.provisioning_kit import (
    admin_object_id,
    cloud_fixture,  # noqa: F401
    domain,
    graph_settings,
    item_counts,
    make_enterprise,
    sandbox_server_fixture,  # noqa: F401
    seed_tenant,
    sync_settings,
    wait_for,
    wait_for_run,
)
from tests.support.activities import TeamsActivities, TeamsUser
from tests.support.connector import FakeConnector

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not PG_URL, reason="TEST_DATABASE_URL is not set"),
]

ROOT = Path(__file__).resolve().parent.parent
N = 81  # the enterprise's number in the provisioning kit's naming
SEEDED_USERS = 30  # waiting for the sync when the test starts
CREATES = 8  # through the bots, round-robin
EDITS = 4  # renames of seeded users, round-robin
# One key for every instance: a password one process sealed is opened by another.
SHARED_KEY = "ZmFrZS1zY2FsZS1vdXQta2V5LWZvci10ZXN0cy0wMDA="


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Instance:
    """One Switchboard process: a bot (with its port) or a worker."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.command,
                cwd=ROOT,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL: no cleanup, leases left held, nothing flushed."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


@dataclass
class Cluster:
    """Two bots and two workers, and where to send turns next."""

    bots: list[Instance]
    workers: list[Instance]
    session: aiohttp.ClientSession
    turn: int = 0

    async def post(self, activity: dict[str, Any], bot: Instance | None = None) -> Any:
        """Send a turn to the next bot in turn (or to `bot`); the invoke's answer."""
        if bot is None:
            live = [b for b in self.bots if b.process and b.process.returncode is None]
            bot = live[self.turn % len(live)]
            self.turn += 1
        async with self.session.post(f"{bot.url}/api/messages", json=activity) as response:
            assert response.status in (200, 201, 202), (response.status, await response.text())
            return await response.json() if response.content_length else None

    def logs(self) -> str:
        return "\n\n".join(f"--- {i.name} ---\n{i.tail()}" for i in (*self.bots, *self.workers))


async def _ready(bot: Instance) -> None:
    async def answers() -> bool:
        assert bot.process is not None
        if bot.process.returncode is not None:
            raise AssertionError(f"{bot.name} exited while starting:\n{bot.tail()}")
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{bot.url}/healthz/ready") as response,
            ):
                return response.status == 200
        except aiohttp.ClientError:
            return False

    await wait_for(answers, timeout=60, interval=0.2)


@contextlib.asynccontextmanager
async def cluster(settings: Settings, logs: Path) -> AsyncIterator[Cluster]:
    """Start two bots and two workers with the one settings object, as their environment."""
    base = {
        **{k: v for k, v in os.environ.items() if k not in as_environment(settings)},
        **as_environment(settings),
        "MicrosoftAppId": "",  # the fake connector takes replies without a token
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "INFO",
    }
    bots = []
    for index in range(2):
        port = _free_port()
        bots.append(
            Instance(
                f"bot-{index}",
                [sys.executable, "-m", "bot"],
                base | {"BOT_PORT": str(port)},
                logs / f"bot-{index}.log",
                port,
            )
        )
    workers = [
        Instance(
            f"worker-{index}",
            [sys.executable, "-m", "services.cli", "worker"],
            dict(base),
            logs / f"worker-{index}.log",
        )
        for index in range(2)
    ]
    instances = [*bots, *workers]
    async with aiohttp.ClientSession() as session:
        try:
            await asyncio.gather(*(instance.start() for instance in instances))
            await asyncio.gather(*(_ready(bot) for bot in bots))
            yield Cluster(bots, workers, session)
        finally:
            await asyncio.gather(*(instance.stop() for instance in instances))


@pytest.fixture
def scale_logs(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "logs"
    folder.mkdir()
    yield folder


async def _count(services: Services, statement: Any) -> int:
    async with services.db.unit_of_work(readonly=True) as uow:
        return int((await uow.session.execute(statement)).scalar_one())


async def test_two_bots_and_two_workers_do_everything_once_and_survive_a_kill(
    cloud: SandboxServer, tmp_path: Path, scale_logs: Path
) -> None:
    url = await extra_run_database("scale")
    settings = Settings(
        database_url=url,
        secret_key=SHARED_KEY,
        quarantine_days=30,
        graph=graph_settings(cloud),
        # Short leases: a killed process's users are taken over within seconds.
        sync=sync_settings(lease_seconds=2.0, poll_seconds=0.1, notifier_poll_seconds=0.2),
    )
    db = Database(url)
    await db.migrate()
    # The test's own view of the database: no Graph, so seeding asks Microsoft nothing.
    services = Services.build(
        db, replace(settings, graph=replace(settings.graph, client_id="", client_secret="")),
        PasswordVault.from_settings(SHARED_KEY, tmp_path / "unused.key"),
    )  # fmt: skip
    fake_connector = await FakeConnector().start()
    try:
        tid = seed_tenant(cloud, N)
        ent = await make_enterprise(services, N, users=SEEDED_USERS)
        # Microsoft takes a moment per user: the sync is still running when the kills come.
        cloud.config.teams_setup_delay_seconds = 0.05
        gloria = (
            TeamsActivities(service_url=fake_connector.url, bot_app_id="")
            .with_tenant(tid)
            .with_user(TeamsUser(admin_object_id(N), "Gloria Global"))
        )

        async with cluster(settings, scale_logs) as running:
            try:
                await _drive(running, services, gloria, fake_connector, cloud, ent, tid)
            except BaseException:
                print(running.logs())
                raise
    finally:
        await fake_connector.close()
        await services.close()


async def _drive(
    running: Cluster,
    services: Services,
    gloria: TeamsActivities,
    fake_connector: FakeConnector,
    cloud: SandboxServer,
    ent: int,
    tid: str,
) -> None:
    # Gloria talks to both bots: either may be the one that tells her the sync finished.
    for bot in running.bots:
        await running.post(gloria.message("help"), bot)
        await fake_connector.next_message(timeout=15)

    # Creates, round-robin; the last one is delivered twice, to both bots at once.
    creates = [
        gloria.card_action(
            Verb.USER_CREATE_SUBMIT.value,
            {
                "verb": Verb.USER_CREATE_SUBMIT.value,
                "display_name": f"New {i:02d}",
                "email": f"new{i:02d}@{domain(N)}",
                "licence": "basic" if i % 2 else "essentials",
                "number_mode": "none" if i % 2 else "auto",
                "extension_mode": "auto",
            },
        )
        for i in range(CREATES)
    ]
    for activity in creates[:-1]:
        answer = await running.post(activity)
        assert "New" in str(answer) and "Nothing was saved" not in str(answer), answer
    twice = await asyncio.gather(*(running.post(creates[-1], bot) for bot in running.bots))
    # Both answers show the one user (the second waited for the first's outcome).
    for answer in twice:
        assert "New 07" in str(answer) and "Nothing was saved" not in str(answer), answer

    # Edits, round-robin: each renames a seeded user once, at the version the admin saw.
    seeded = (await services.directory.page(ent, page_size=EDITS, search="User 00")).items
    versions = {}
    for user in seeded:
        current = await services.users.get(ent, user.id)
        versions[user.id] = current.version
        await running.post(
            gloria.card_action(
                Verb.USER_EDIT_SUBMIT.value,
                {
                    "verb": Verb.USER_EDIT_SUBMIT.value,
                    "user_id": user.id,
                    "version": current.version,
                    "display_name": f"Renamed {user.id}",
                    "email": current.email,
                    "licence": current.licence.value if current.licence else "",
                },
            )
        )

    # The sync, asked on both bots: one run.
    start = gloria.card_action(Verb.SYNC_START.value, {"ent": ent})
    await running.post(start, running.bots[0])
    await running.post(gloria.card_action(Verb.SYNC_START.value, {"ent": ent}), running.bots[1])
    runs = await _count(services, select(func.count()).select_from(SyncRun))
    assert runs == 1
    async with services.db.unit_of_work(readonly=True) as uow:
        run_id = (await uow.session.execute(select(SyncRun.id))).scalar_one()

    # Mid-run: some users done, not all. Then one bot and one worker die without a word.
    async def some_done() -> bool:
        counts = await item_counts(services, run_id)
        done = counts.get(OutboxStatus.DONE, 0)
        return 0 < done < sum(counts.values())

    await wait_for(some_done, timeout=60, interval=0.05)
    running.bots[0].kill()
    running.workers[0].kill()

    run = await wait_for_run(services, run_id, timeout=180)
    total = SEEDED_USERS + CREATES
    assert run.status.name == "SUCCEEDED", run.status

    # Every create once: the redelivered one made one user; numbers and extensions unique.
    users = (await services.directory.page(ent, page_size=100)).items
    assert len(users) == total
    assert len({u.email for u in users}) == total
    numbers = [u.number for u in users if u.number is not None]
    extensions = [u.extension for u in users if u.extension is not None]
    assert len(numbers) == len(set(numbers)) and len(extensions) == len(set(extensions))
    assert len(extensions) == total
    # Every edit once: the rename landed and the version moved by exactly one.
    for user_id, version in versions.items():
        after = await services.users.get(ent, user_id)
        assert after.display_name == f"Renamed {user_id}"
        assert after.version == version + 1
    # Every user reached Microsoft once: one Entra account each, all provisioned.
    async with services.db.unit_of_work(readonly=True) as uow:
        statuses = (
            (
                await uow.session.execute(
                    select(User.provisioning_status).where(User.enterprise_id == ent)
                )
            )
            .scalars()
            .all()
        )
    assert set(statuses) == {ProvisioningStatus.PROVISIONED}
    entra = sorted(
        u.props["userPrincipalName"] for u in cloud.state.require_tenant(tid).users.values()
    )
    assert entra == sorted([f"admin@{domain(N)}", *(u.email for u in users)])
    # One run, one completion notice, from whichever bot is left.
    assert await _count(services, select(func.count()).select_from(SyncRun)) == 1

    def finished_notices() -> int:
        return sum(
            any("Sync Teams Users finished" in str(card) for card in activity.adaptive_cards)
            for activity in fake_connector.activities
        )

    async def noticed() -> bool:
        return finished_notices() >= 1

    await wait_for(noticed, timeout=30)
    await asyncio.sleep(3)  # time for a second copy to arrive, were one sent
    assert finished_notices() == 1

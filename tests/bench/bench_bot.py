"""Card-submit turns over real HTTP at 50 concurrent admins, beside a bare botbuilder echo bot
served the stock way in the same run. All check real Bot Framework tokens. Each server runs
in its own process; the load comes from this one. Prints figures; asserts nothing about time.

The target compares with the stock echo bot. A second echo bot keeps botbuilder's connector
and user-token clients from turn to turn, as Switchboard does: the ratio against it shows
what is left once that saving is set aside.

Shared machines speed up and slow down by tens of percent from one minute to the next, so the
servers take turns: each round loads the echo bot, then each Switchboard turn, and a ratio
compares runs seconds apart. The figure reported is the median of the rounds' ratios. Each
round then paces the admins at about one submit a second, as people work, and prints each
round's p99 beside the p99 over all rounds."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bot.auth import BotSettings
from cards.actions import Verb
from services.domain import AdminRole, LicenceProduct
from tests.bench.bench_directory import fresh_postgres_url
from tests.support.activities import DEFAULT_TENANT_ID, TeamsActivities, TeamsUser
from tests.support.connector import FakeConnector
from tests.support.fixtures import bot_settings_for
from tests.support.identity import ChannelTokenMinter, IdentityStandIns

ADMINS = 50
TURNS_PER_ADMIN = int(os.environ.get("BENCH_TURNS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
WARMUP_PER_ADMIN = 3
PACED_TURNS = 6


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve_switchboard(database_url: str, key_file: str, settings: BotSettings, port: int) -> None:
    from bot.app import build_app
    from services.config import Settings
    from services.container import open_services

    async def main() -> None:
        services = await open_services(
            Settings(database_url=database_url, secret_key_file=Path(key_file))
        )
        runner = web.AppRunner(build_app(services, settings), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    asyncio.run(main())


def _serve_echo(settings: BotSettings, port: int, reuse_clients: bool) -> None:
    from tests.bench.echo_baseline import create_echo_app

    web.run_app(
        create_echo_app(settings, reuse_clients=reuse_clients),
        host="127.0.0.1",
        port=port,
        print=None,
        access_log=None,
    )


async def _seed(database_url: str, key_file: str, admins: list[TeamsUser]) -> None:
    from services.config import Settings
    from services.container import open_services
    from services.users import NewUser
    from services.views import Actor

    services = await open_services(
        Settings(database_url=database_url, secret_key_file=Path(key_file))
    )
    operator = Actor("bench", "Bench", AdminRole.SERVICE_PROVIDER, None)
    try:
        enterprise = await services.enterprises.create(
            operator,
            name="Bench",
            tenant_id=DEFAULT_TENANT_ID,
            main_number="+442071110000",
            extensions=(10000, 19999),
        )
        await services.inventory.import_range(
            operator, enterprise.id, "+442080000000", "+442080009999"
        )
        for product in LicenceProduct:
            await services.licences.set_pool(operator, enterprise.id, product, 10000)
        for admin in admins:
            await services.enterprises.grant(
                operator,
                aad_object_id=admin.aad_object_id,
                role=AdminRole.ENTERPRISE_ADMIN,
                enterprise_id=enterprise.id,
                display_name=admin.name,
            )
        for i in range(200):
            await services.users.create(
                operator, enterprise.id, NewUser(f"Existing {i}", f"e{i}@bench.example")
            )
    finally:
        await services.db.dispose()


async def _wait_until_up(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(url) as response:
                    await response.read()
                    return  # any HTTP answer means the server is up
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not start")


async def _load(
    url: str,
    admins: list[TeamsActivities],
    minter: ChannelTokenMinter,
    activity_for: Callable[[TeamsActivities, int, int], dict[str, Any]],
    *,
    turns: int = TURNS_PER_ADMIN,
    think: float = 0.0,
    offset: int = 0,
) -> tuple[float, list[float], int]:
    """Every admin sends its turns one after another, all admins at once; with `think`, each
    admin pauses about that many seconds between submits, as people do."""
    rng = random.Random(11)
    latencies: list[float] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=ADMINS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def admin_loop(index: int, teams: TeamsActivities, turns: int, record: bool) -> None:
            nonlocal failures
            auth = minter.authorization(service_url=teams.service_url)
            if think and record:
                await asyncio.sleep(rng.uniform(0, think))  # people don't all start at once
            for turn in range(turns):
                activity = activity_for(
                    teams, index, offset + turn if record else -(offset + turn) - 1
                )
                started = time.perf_counter()
                async with session.post(
                    url, json=activity, headers={"Authorization": auth}
                ) as response:
                    body = await response.read()
                    ok = response.status == 200 and _answered(activity_for, activity, body)
                if record:
                    latencies.append((time.perf_counter() - started) * 1000)
                    failures += 0 if ok else 1
                if think:
                    await asyncio.sleep(rng.uniform(0.5 * think, 1.5 * think))

        await asyncio.gather(
            *(admin_loop(i, t, WARMUP_PER_ADMIN, False) for i, t in enumerate(admins))
        )
        started = time.perf_counter()
        await asyncio.gather(*(admin_loop(i, t, turns, True) for i, t in enumerate(admins)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, failures


@dataclass
class Series:
    """One kind of turn measured over several rounds."""

    label: str
    rates: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)
    failures: int = 0

    def add(self, elapsed: float, latencies: list[float], failures: int) -> float:
        """Record one round; returns its turns per second."""
        rate = len(latencies) / elapsed
        self.rates.append(rate)
        self.latencies += latencies
        self.p99s.append(_p99(latencies))
        self.failures += failures
        return rate

    def line(self) -> str:
        """Turns per second (median of the rounds) and latency over every round."""
        latencies = self.latencies
        return (
            f"{self.label}: {len(latencies)} turns, {statistics.median(self.rates):,.0f} turns/s, "
            f"p50 {statistics.median(latencies):.1f} ms, p99 {_p99(latencies):.1f} ms, "
            f"{self.failures} failed"
        )

    def rounds_p99(self) -> str:
        """The median of the rounds' p99, and each round's."""
        spread = ", ".join(f"{p99:.0f}" for p99 in self.p99s)
        return f"p99 by round {spread} ms (median {statistics.median(self.p99s):.0f} ms)"


def _p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _create_user(teams: TeamsActivities, admin: int, turn: int) -> dict[str, Any]:
    data = {
        "verb": Verb.USER_CREATE_SUBMIT.value,
        "display_name": f"Bench {admin}-{turn}",
        "email": f"b{admin}.{turn}@bench.example".replace("-", "w"),
        "licence": "essentials",
        "number_mode": "auto",
        "extension_mode": "auto",
        "send_password_email": "false",
        "notify_user": "false",
    }
    return teams.card_action(data["verb"], data)


def _open_directory(teams: TeamsActivities, admin: int, turn: int) -> dict[str, Any]:
    data = {"verb": Verb.DIRECTORY_OPEN.value, "sort": "name", "page": 1 + abs(turn) % 5}
    return teams.card_action(data["verb"], data)


def _echo(teams: TeamsActivities, admin: int, turn: int) -> dict[str, Any]:
    return teams.card_action(Verb.USER_CREATE_SUBMIT.value, {"n": turn})


def _answered(
    activity_for: Callable[[TeamsActivities, int, int], dict[str, Any]],
    activity: dict[str, Any],
    body: bytes,
) -> bool:
    """Whether the answer is the card the turn is for: an apology, or a form sent back with
    an error, also comes with status 200, and counts as a failure."""
    if activity_for is _create_user:
        # The new user's card names them; a refused form would carry an error message.
        email = str(activity["value"]["action"]["data"]["email"]).encode()
        return email in body and b"is already" not in body and b"Sorry" not in body
    if activity_for is _open_directory:
        return b'"type":"Table"' in body
    return b"echo: " in body


async def run() -> list[str]:
    """The card-submit benchmark: Switchboard's create-user and directory turns vs the echo bot."""
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        identity = IdentityStandIns.start(workdir)
        connector = await FakeConnector().start()
        processes: list[Any] = []
        try:
            settings = bot_settings_for(identity)
            minter = ChannelTokenMinter(identity.keys, settings.app_id, connector.url)
            people = [TeamsUser.random(f"Admin {i}") for i in range(ADMINS)]
            admins = [
                TeamsActivities(service_url=connector.url, bot_app_id=settings.app_id, user=p)
                for p in people
            ]
            key_file = str(workdir / "secret.key")
            echo_urls: list[str] = []
            for reuse_clients in (False, True):
                echo_port = _free_port()
                echo_server = context.Process(
                    target=_serve_echo, args=(settings, echo_port, reuse_clients), daemon=True
                )
                processes.append(echo_server)
                echo_server.start()
                echo_urls.append(f"http://127.0.0.1:{echo_port}/api/messages")
                await _wait_until_up(echo_urls[-1])
            echo_url, reusing_echo_url = echo_urls
            databases = [("SQLite", f"sqlite+aiosqlite:///{workdir / 'bench.db'}")]
            postgres = await fresh_postgres_url()
            if postgres:
                databases.append(("PostgreSQL", postgres))
            servers: dict[str, str] = {}
            for label, database_url in databases:
                await _seed(database_url, key_file, people)
                port = _free_port()
                server = context.Process(
                    target=_serve_switchboard,
                    args=(database_url, key_file, settings, port),
                    daemon=True,
                )
                processes.append(server)
                server.start()
                servers[label] = f"http://127.0.0.1:{port}/api/messages"
                await _wait_until_up(servers[label])
            turns = {"directory page": _open_directory, "create user": _create_user}
            echo = Series("echo bot (stock botbuilder)")
            reusing_echo = Series("echo bot, clients kept across turns as Switchboard keeps them")
            series = {
                (label, name): Series(f"switchboard {name} ({label})")
                for label in servers
                for name in turns
            }
            paced_echo = Series("paced, each admin about 1 submit/s: echo bot (stock botbuilder)")
            paced = {
                (label, name): Series(f"paced, each admin about 1 submit/s: {name} ({label})")
                for label, name in series
            }
            ratios: dict[tuple[str, str], list[float]] = {key: [] for key in series}
            reusing_ratios: dict[tuple[str, str], list[float]] = {key: [] for key in series}
            for round_number in range(ROUNDS):
                offset = round_number * TURNS_PER_ADMIN
                echo_rate = echo.add(*await _load(echo_url, admins, minter, _echo, offset=offset))
                reusing_rate = reusing_echo.add(
                    *await _load(reusing_echo_url, admins, minter, _echo, offset=offset)
                )
                for (label, name), measured in series.items():
                    rate = measured.add(
                        *await _load(servers[label], admins, minter, turns[name], offset=offset)
                    )
                    ratios[(label, name)].append(rate / echo_rate)
                    reusing_ratios[(label, name)].append(rate / reusing_rate)
                paced_offset = 100_000 + round_number * PACED_TURNS
                paced_load = {"turns": PACED_TURNS, "think": 1.0, "offset": paced_offset}
                paced_echo.add(*await _load(echo_url, admins, minter, _echo, **paced_load))
                for (label, name), measured in paced.items():
                    measured.add(
                        *await _load(servers[label], admins, minter, turns[name], **paced_load)
                    )
            lines = [
                f"{ADMINS} concurrent admins submitting cards back to back (saturation), "
                f"{ROUNDS} rounds of {TURNS_PER_ADMIN} submits each, the servers taking turns; "
                f"in each round, then {PACED_TURNS} each at about one a second (paced); "
                "tokens checked",
                echo.line(),
                reusing_echo.line(),
            ]
            for key, measured in series.items():
                spread = ", ".join(f"{r:.2f}" for r in ratios[key])
                lines.append(
                    f"{measured.line()} -> {statistics.median(ratios[key]):.2f}x echo "
                    f"(rounds: {spread}); "
                    f"{statistics.median(reusing_ratios[key]):.2f}x the echo keeping its clients"
                )
            for measured in (paced_echo, *paced.values()):
                lines.append(f"{measured.line()}; {measured.rounds_p99()}")
            lines.append("targets: at least 0.7x the echo bot's throughput, p99 under 150 ms")
            return lines
        finally:
            for process in processes:
                process.kill()
                process.join(timeout=5)
            await connector.close()
            identity.close()

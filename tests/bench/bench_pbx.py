"""PBX benchmarks on a real Asterisk: how soon a committed directory change carries calls, and
how long a reconcile of 10,000 users takes on PostgreSQL. Prints figures; asserts nothing
about time.

- change to live: a running pusher; every 100 ms an admin moves a user to another direct
  number; a carrier peer calls the new number until the call reaches the Teams trunk with it.
  The latency is from the commit to that INVITE.
- reconcile: 10,000 licensed users in the directory and on Asterisk; `Reconciler.check`
  against a baseline of reading the same rows alone.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select, text, update

from services.config import PbxTrunkSettings
from services.container import Services
from services.domain import AdminRole, LicenceProduct
from services.enterprises import load_enterprise
from services.models import LicencePool, User
from services.pbx.asterisk import AsteriskBackend, extensions, line_dialplan
from services.pbx.lines import desired_lines
from services.pbx.pusher import PbxPusher
from services.pbx.reconcile import Reconciler
from services.pbx.staticconf import EnterpriseDialplan, static_files
from services.users import NewUser, UserChanges
from services.views import Actor
from tests.asterisk_kit import ASTERISK_TABLES, free_udp_port, hang_up, harness, sipua
from tests.bench.bench_directory import fresh_postgres_url, percentile, services_at

OPERATOR = Actor("bench", "Benchmark", AdminRole.SERVICE_PROVIDER, None)
RECONCILE_USERS = int(os.environ.get("BENCH_PBX_USERS", "10000"))
CHANGES = int(os.environ.get("BENCH_PBX_CHANGES", "100"))
CHANGE_INTERVAL = 0.1  # 10 changes a second


async def _fresh(name: str) -> str:
    url = await fresh_postgres_url(name)
    if url is None:
        raise RuntimeError("the PBX benchmarks need TEST_DATABASE_URL")
    return url


async def _empty_asterisk(url: str) -> AsteriskBackend:
    """The Asterisk backend over realtime tables emptied for one benchmark."""
    backend = AsteriskBackend(url)
    async with backend.engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {', '.join(ASTERISK_TABLES)} RESTART IDENTITY"))
    return backend


async def _enterprise(services: Services, users: int) -> int:
    view = await services.enterprises.create(
        OPERATOR,
        name="Bench Ltd",
        tenant_id="t-bench",
        main_number="+442079999999",
        extensions=(10000, 10000 + users + 99),
        region="GB",
        consent=False,
    )
    last = 442079400000 + users + 99
    await services.inventory.import_range(OPERATOR, view.id, "+442079400000", f"+{last}")
    await services.licences.set_pool(OPERATOR, view.id, LicenceProduct.ESSENTIALS, users + 10)
    return view.id


async def _bulk_users(services: Services, ent: int, count: int) -> None:
    """Licensed users with a number and an extension each, written in bulk (setup only)."""
    async with services.db.unit_of_work() as uow:
        session = uow.session
        await session.execute(
            User.__table__.insert(),
            [
                {
                    "enterprise_id": ent,
                    "display_name": f"User {i:05d}",
                    "email": f"user{i}@bench.example",
                    "licence": LicenceProduct.ESSENTIALS,
                }
                for i in range(count)
            ],
        )
        for table, order in (("phone_numbers", "e164"), ("extensions", "number")):
            status = ", status = 'assigned'" if table == "phone_numbers" else ""
            await session.execute(
                text(
                    f"WITH u AS (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM users "
                    f"WHERE enterprise_id = :e), t AS (SELECT id, row_number() OVER "
                    f"(ORDER BY {order}) AS rn FROM {table} WHERE enterprise_id = :e) "
                    f"UPDATE {table} SET user_id = u.id{status} FROM u JOIN t ON u.rn = t.rn "
                    f"WHERE {table}.id = t.id"
                ),
                {"e": ent},
            )
        await session.execute(
            update(LicencePool)
            .where(
                LicencePool.enterprise_id == ent,
                LicencePool.product == LicenceProduct.ESSENTIALS,
            )
            .values(used=count)
        )
        await uow.commit()


async def bench_reconcile(scratch: Path, asterisk_url: str) -> list[str]:
    """Reconcile of RECONCILE_USERS users on PostgreSQL, against reading the rows alone."""
    services = await services_at(await _fresh("switchboard_bench_pbx"), scratch)
    backend = await _empty_asterisk(asterisk_url)
    try:
        ent = await _enterprise(services, RECONCILE_USERS)
        await _bulk_users(services, ent, RECONCILE_USERS)
        async with services.db.unit_of_work(readonly=True) as uow:
            enterprise = await load_enterprise(uow.session, ent)
            lines = list((await desired_lines(uow.session, enterprise)).values())
        rows = [row for line in lines for row in line_dialplan(line)]
        async with backend.engine.begin() as connection:
            await connection.execute(
                extensions.insert(),
                [
                    {"context": c, "exten": e, "priority": p, "app": a, "appdata": d}
                    for c, e, p, a, d in rows
                ],
            )
        reconciler = Reconciler(services.db, backend)
        figures = []
        for _ in range(3):
            started = time.perf_counter()
            async with backend.engine.connect() as connection:
                held = len((await connection.execute(select(extensions))).all())
            baseline = time.perf_counter() - started
            started = time.perf_counter()
            report = await reconciler.check(ent)
            took = time.perf_counter() - started
            figures.append((took, baseline, len(report.drift)))
        took, baseline, drift = min(figures)
        return [
            f"reconcile {len(lines):,} users ({held:,} dialplan rows) on PostgreSQL: "
            f"{took:.2f} s (best of 3; target < 10 s), {drift} drift; reading the rows alone "
            f"{baseline:.2f} s, ratio {took / baseline:.1f}x"
        ]
    finally:
        await backend.close()
        await services.db.dispose()


async def bench_change_to_live(scratch: Path, asterisk_url: str) -> list[str]:
    """Commit-to-call latency of a directory change on a real Asterisk, 10 changes a second."""
    services = await services_at(await _fresh("switchboard_bench_live"), scratch)
    backend = await _empty_asterisk(asterisk_url)
    port = harness.free_port("127.0.0.1")
    ports = {ip: free_udp_port(ip) for ip in ("127.0.0.2", "127.0.0.3")}
    trunks = PbxTrunkSettings(
        sip_bind=f"127.0.0.1:{port}",
        teams_hosts=(f"127.0.0.3:{ports['127.0.0.3']}",),
        teams_transport="udp",
        teams_match=("127.0.0.3",),
        teams_media_encryption="no",
        pstn_hosts=(f"127.0.0.2:{ports['127.0.0.2']}",),
        pstn_match=("127.0.0.2",),
    )
    files = static_files(trunks, "asterisk", asterisk_url, [EnterpriseDialplan(1, "Bench", "GB")])
    # The peers listen before Asterisk starts qualifying the Teams trunk.
    server = ("127.0.0.1", port)
    teams = sipua.Phone("teams", server=server, ip="127.0.0.3", port=ports["127.0.0.3"])
    carrier = sipua.Phone("carrier", server=server, ip="127.0.0.2", port=ports["127.0.0.2"])
    ast = harness.Asterisk(asterisk_url, sip_port=port, configs=files)
    ast.start()
    stop = asyncio.Event()
    pusher = PbxPusher(services.db, backend)
    worker = asyncio.create_task(pusher.run_forever(stop))
    latencies: list[float] = []
    probes = 0
    try:
        ent = await _enterprise(services, 10)
        user: Any = await services.users.create(
            OPERATOR, ent, NewUser("Ada Lovelace", "ada@bench.example", LicenceProduct.ESSENTIALS)
        )
        numbers = ["+442079400050", "+442079400051"]
        services.users.quarantine_days = 0  # the two numbers take turns
        for i in range(CHANGES):
            target = numbers[i % 2]
            began = time.perf_counter()
            user = await services.users.update(
                OPERATOR, ent, user.id, user.version, UserChanges(number=target)
            )
            committed = time.perf_counter()
            teams.clear()
            while True:
                probes += 1
                await asyncio.to_thread(carrier.invite, target, None, None, 2.0)
                found = teams.requests("INVITE")
                if found and target in found[0].split(" ", 2)[1]:
                    break
                if time.perf_counter() - committed > 10:
                    raise RuntimeError(f"change {i} was not live after 10 s")
            latencies.append(time.perf_counter() - committed)
            await asyncio.sleep(max(0.0, CHANGE_INTERVAL - (time.perf_counter() - began)))
    finally:
        stop.set()
        await worker
        for phone in (teams, carrier):
            hang_up(phone)
        ast.stop()
        await backend.close()
        await services.db.dispose()
    return [
        f"change to live on Asterisk ({len(latencies)} number moves at 10/s, a call follows "
        f"each): p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms (target < 1000 ms), "
        f"{probes / len(latencies):.1f} calls per change"
    ]


async def run() -> list[str]:
    """Both PBX benchmarks; they need PostgreSQL (TEST_DATABASE_URL) and the Asterisk build."""
    if not os.environ.get("TEST_DATABASE_URL"):
        return ["pbx: skipped (TEST_DATABASE_URL is not set)"]
    asterisk_url = await _fresh("switchboard_bench_asterisk")
    await asyncio.to_thread(harness.realtime_schema, asterisk_url)
    with tempfile.TemporaryDirectory() as scratch:
        lines = await bench_change_to_live(Path(scratch), asterisk_url)
        lines += await bench_reconcile(Path(scratch), asterisk_url)
    return lines

"""Sync benchmark: a 1,000-user first sync against the Graph sandbox with throttling on.

The sandbox throttles identity writes per tenant and app in a sliding window. The published
limit is 3,000 writes per 150 s (20 a second, which would make this benchmark take several
minutes); the window here is scaled down to BENCH_SYNC_WRITE_LIMIT writes per
BENCH_SYNC_WRITE_WINDOW seconds so the run takes about a minute. The figure that matters is
the achieved Graph write rate divided by the rate the throttle allows (target >= 0.9).
Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from sandbox import SandboxConfig, SandboxServer, ThrottleLimits
from services.config import GraphSettings, Settings, SyncSettings
from services.container import Services
from services.db import Database
from services.domain import AdminRole, LicenceProduct, SyncStatus
from services.graph import GraphService
from services.inventory import AUTO
from services.passwords import PasswordVault
from services.provisioning import ProvisioningEngine, SyncNotices
from services.users import NewUser
from services.views import Actor

USERS = int(os.environ.get("BENCH_SYNC_USERS", "1000"))
WRITE_LIMIT = int(os.environ.get("BENCH_SYNC_WRITE_LIMIT", "200"))
WRITE_WINDOW = float(os.environ.get("BENCH_SYNC_WRITE_WINDOW", "3"))
OPERATION_DELAY = float(os.environ.get("BENCH_SYNC_OPERATION_DELAY", "0.3"))
TWO_WORKER_GUARD = float(os.environ.get("BENCH_SYNC_TWO_WORKER_GUARD", "0.25"))
TENANT = "b0b0b0b0-1111-4222-8333-444444444444"
PROVIDER_TENANT = "b1b1b1b1-1111-4222-8333-444444444444"
DOMAIN = "bench.example"
CLIENT_ID = "bench-switchboard"
CLIENT_SECRET = "bench-secret"
ESSENTIALS_SKU = "e43b5b99-8dfb-405f-9987-dc307f34bcbd"
BASIC_SKU = "0e142028-345e-45da-8d92-8bfd4093bbb9"
ADMIN_ID = "b2b2b2b2-0000-4000-8000-00000000a0a0"
OPERATOR = Actor("bench", "Benchmark", AdminRole.SERVICE_PROVIDER, None)


def seed_sandbox(server: SandboxServer) -> None:
    """The enterprise's tenant with the app consented, licences, and its Global Administrator."""
    state = server.state
    state.add_tenant(PROVIDER_TENANT, "Provider")
    state.register_app(CLIENT_ID, CLIENT_SECRET, PROVIDER_TENANT, multi_tenant=True)
    state.add_tenant(TENANT, "Bench Ltd", [DOMAIN])
    state.consent_app(TENANT, CLIENT_ID)
    state.add_sku(TENANT, ESSENTIALS_SKU, "MCOEV", USERS)
    state.add_sku(TENANT, BASIC_SKU, "MCOEV_BASIC", USERS)
    state.add_user(TENANT, f"admin@{DOMAIN}", "Admin", user_id=ADMIN_ID, usage_location="GB")
    state.add_global_admin(TENANT, ADMIN_ID)
    # The policy is named in the settings; the sync finds its id in the tenant by that name.
    state.add_policy(TENANT, "OnlineVoiceRoutingPolicy", "Bench-PBX")


async def seed_directory(services: Services) -> int:
    """An enterprise with USERS users, one in four on Basic; returns its id."""
    enterprise = await services.enterprises.create(
        OPERATOR,
        name="Bench Ltd",
        tenant_id=TENANT,
        main_number="+442070000000",
        extensions=(10000, 10000 + USERS + 10),
    )
    await services.inventory.import_range(
        OPERATOR, enterprise.id, "+442071000000", f"+44207100{USERS:04d}"
    )
    for product in LicenceProduct:
        await services.licences.set_pool(OPERATOR, enterprise.id, product, USERS)
    await services.enterprises.grant(
        OPERATOR,
        aad_object_id=ADMIN_ID,
        role=AdminRole.GLOBAL_ADMIN,
        enterprise_id=enterprise.id,
        display_name="Admin",
    )
    admin = Actor(ADMIN_ID, "Admin", AdminRole.GLOBAL_ADMIN, enterprise.id)
    for i in range(USERS):
        basic = i % 4 == 3
        await services.users.create(
            admin,
            enterprise.id,
            NewUser(
                display_name=f"Bench User {i:04d}",
                email=f"user{i:04d}@{DOMAIN}",
                licence=LicenceProduct.BASIC if basic else LicenceProduct.ESSENTIALS,
                number=None if basic else AUTO,
                extension=AUTO,
            ),
        )
    return enterprise.id


def settings_for(server: SandboxServer, url: str, key_file: Path) -> Settings:
    """The engine paces writes to the same budget the sandbox enforces."""
    return Settings(
        database_url=url,
        secret_key_file=key_file,
        graph=GraphSettings(
            base_url=server.graph_url,
            authority_host=server.authority_host,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            ca_bundle=str(server.ca_path),
            essentials_sku=ESSENTIALS_SKU,
            basic_sku=BASIC_SKU,
            voice_routing_policy="Bench-PBX",
            write_limit=WRITE_LIMIT,
            write_window_seconds=WRITE_WINDOW,
            # Workers on PostgreSQL share the budget: 3% of the window spare, not a whole second.
            write_guard_seconds=WRITE_WINDOW * 0.03,
            operation_poll_seconds=0.1,
        ),
        sync=SyncSettings(poll_seconds=0.1, tenant_concurrency=250, lease_seconds=60),
    )


def sandbox_config() -> SandboxConfig:
    """The sandbox throttling identity writes at the benchmark's scaled-down budget."""
    throttle = ThrottleLimits(
        app_write_limit=WRITE_LIMIT,
        app_write_window=WRITE_WINDOW,
        tenant_write_limit=WRITE_LIMIT * 6,
        tenant_write_window=WRITE_WINDOW * 2,
    )
    return SandboxConfig(operation_delay_seconds=OPERATION_DELAY, throttle=throttle)


async def bench_first_sync(url: str, label: str, scratch: Path) -> list[str]:
    """Seed, sync, and report the write rate against the throttle's."""
    async with SandboxServer(sandbox_config()) as server:
        seed_sandbox(server)
        key_file = scratch / "secret.key"
        settings = settings_for(server, url, key_file)
        db = Database(url)
        await db.migrate()
        services = Services.build(db, settings, PasswordVault.from_settings("", key_file))
        graph = GraphService(settings.graph)
        try:
            started = time.perf_counter()
            enterprise_id = await seed_directory(services)
            seeding = time.perf_counter() - started
            admin = Actor(ADMIN_ID, "Admin", AdminRole.GLOBAL_ADMIN, enterprise_id)
            run, _ = await services.syncs.request(admin, enterprise_id)
            server.stats.reset()
            server.throttle.reset()
            engine = ProvisioningEngine(db, services.users.vault, graph, settings)
            started = time.perf_counter()
            await engine.start()
            notices = SyncNotices(db)
            while True:
                report = await notices.report(run.id)
                if report.run.status in (SyncStatus.SUCCEEDED, SyncStatus.PARTIALLY_FAILED):
                    break
                await asyncio.sleep(0.1)
            wall = time.perf_counter() - started
            await engine.stop()
        finally:
            await graph.close()
            await db.dispose()
        stats = server.tenant_stats(TENANT)
    allowed = WRITE_LIMIT / WRITE_WINDOW
    achieved = stats.writes_accepted / wall
    # A sliding window also lets one full window through at the start: the most it admits.
    ceiling = WRITE_LIMIT * (1 + wall / WRITE_WINDOW) / wall
    requests = sum(stats.requests.values()) - stats.batches
    return [
        f"first-sync/{label}: {USERS} users seeded in {seeding:.1f} s; throttle "
        f"{WRITE_LIMIT} writes per {WRITE_WINDOW:g} s ({allowed:.1f}/s; published 3000 per 150 s "
        f"= 20/s), number orders take {OPERATION_DELAY:g} s",
        f"first-sync/{label}: {report.run.status.value}: {report.provisioned} provisioned, "
        f"{report.failed} failed, wall time {wall:.1f} s ({USERS / wall * 60:,.0f} users/min)",
        f"first-sync/{label}: {stats.writes_accepted} Graph writes accepted "
        f"({stats.writes_accepted / max(1, USERS):.1f} per user), {stats.throttled} throttled "
        f"(429), {requests} requests in {stats.batches} batches",
        f"first-sync/{label}: achieved write rate {achieved:.1f}/s = "
        f"{achieved / allowed:.2f} x the throttle's rate (target >= 0.9: "
        f"{'met' if achieved / allowed >= 0.9 else 'NOT met'}); "
        f"{achieved / ceiling:.2f} x the most its sliding window admits in that time",
    ]


async def bench_two_worker_processes(url: str, scratch: Path) -> list[str]:
    """Two `python -m services.provisioning` processes on one PostgreSQL and one tenant: the
    write budget is shared through the database, so together they pace to it once."""
    async with SandboxServer(sandbox_config()) as server:
        seed_sandbox(server)
        key_file = scratch / "secret.key"
        settings = settings_for(server, url, key_file)
        db = Database(url)
        await db.migrate()
        services = Services.build(db, settings, PasswordVault.from_settings("", key_file))
        graph = settings.graph
        env = {
            **os.environ,
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            "LOG_LEVEL": "WARNING",
            "DATABASE_URL": url,
            "SWITCHBOARD_SECRET_KEY_FILE": str(key_file),
            "GRAPH_BASE_URL": graph.base_url,
            "GRAPH_AUTHORITY_HOST": graph.authority_host,
            "GRAPH_AUTHORITY_CA_BUNDLE": str(graph.ca_bundle),
            "GRAPH_CLIENT_ID": graph.client_id,
            "GRAPH_CLIENT_SECRET": graph.client_secret,
            "LICENCE_SKU_ESSENTIALS": graph.essentials_sku,
            "LICENCE_SKU_BASIC": graph.basic_sku,
            "VOICE_ROUTING_POLICY": graph.voice_routing_policy,
            "GRAPH_WRITE_LIMIT": str(WRITE_LIMIT),
            "GRAPH_WRITE_WINDOW_SECONDS": str(WRITE_WINDOW),
            # The guard covers how much later one process's write can reach Graph than the
            # other's: an absolute lateness (tenths of a second on two busy cores), which the
            # window scaled down from 150 s to a few seconds does not shrink.
            "GRAPH_WRITE_GUARD_SECONDS": str(TWO_WORKER_GUARD),
            "GRAPH_OPERATION_POLL_SECONDS": "0.1",
            "SYNC_POLL_SECONDS": "0.1",
            "SYNC_TENANT_CONCURRENCY": str(settings.sync.tenant_concurrency),
        }
        workers: list[asyncio.subprocess.Process] = []
        try:
            enterprise_id = await seed_directory(services)
            admin = Actor(ADMIN_ID, "Admin", AdminRole.GLOBAL_ADMIN, enterprise_id)
            run, _ = await services.syncs.request(admin, enterprise_id)
            server.stats.reset()
            server.throttle.reset()
            started = time.perf_counter()
            for _ in range(2):
                workers.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "services.provisioning", env=env
                    )
                )
            notices = SyncNotices(db)
            while True:
                report = await notices.report(run.id)
                if report.run.status in (SyncStatus.SUCCEEDED, SyncStatus.PARTIALLY_FAILED):
                    break
                await asyncio.sleep(0.1)
            wall = time.perf_counter() - started
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                await worker.wait()
            await db.dispose()
        stats = server.tenant_stats(TENANT)
    allowed = WRITE_LIMIT / WRITE_WINDOW
    achieved = stats.writes_accepted / wall
    return [
        f"two-workers/postgres: {report.run.status.value}: {report.provisioned} provisioned, "
        f"{report.failed} failed, wall time {wall:.1f} s (including both processes' start)",
        f"two-workers/postgres: {stats.writes_accepted} Graph writes accepted, "
        f"{stats.throttled} throttled (429), guard {TWO_WORKER_GUARD:g} s; achieved "
        f"{achieved:.1f}/s = "
        f"{achieved / allowed:.2f} x the throttle's rate for the app in the tenant "
        f"(target >= 0.9: {'met' if achieved / allowed >= 0.9 else 'NOT met'})",
    ]


async def run() -> list[str]:
    """The first-sync benchmark on SQLite (the in-process worker), and PostgreSQL if asked."""
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        lines += await bench_first_sync(
            f"sqlite+aiosqlite:///{folder / 'bench-sync.db'}", "sqlite", folder
        )
        if os.environ.get("BENCH_SYNC_POSTGRES") and os.environ.get("TEST_DATABASE_URL"):
            from tests.bench.bench_directory import fresh_postgres_url

            url = await fresh_postgres_url()
            assert url is not None
            lines += await bench_first_sync(url, "postgres", folder)
            url = await fresh_postgres_url()
            assert url is not None
            lines += await bench_two_worker_processes(url, folder)
    return lines


if __name__ == "__main__":
    for line in asyncio.run(run()):
        print(line)

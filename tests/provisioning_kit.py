"""Helpers for the sync tests: the Graph sandbox seeded as enterprises' tenants, settings with
short delays, enterprises full of users, and a way to wait for a run to finish."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select

from sandbox import FaultConfig, SandboxConfig, SandboxServer, ThrottleLimits
from services.config import GraphSettings, Settings, SyncSettings
from services.container import Services
from services.domain import AdminRole, LicenceProduct, OutboxStatus, SyncStatus
from services.graph import GraphService
from services.inventory import AUTO
from services.models import ProvisioningItem, SyncRun
from services.provisioning import ProvisioningEngine
from services.users import NewUser
from services.views import Actor
from tests.conftest import PROVIDER
from tests.graph_contract import ExchangeRecorder, contract_problems

PROVIDER_TENANT = "0f0f0f0f-1111-4222-8333-444444444444"
CLIENT_ID = "5d6a7b8c-1e2f-4a3b-9c4d-0e1f2a3b4c5d"
CLIENT_SECRET = "sandbox-test-secret"
ESSENTIALS_SKU = "e43b5b99-8dfb-405f-9987-dc307f34bcbd"
BASIC_SKU = "0e142028-345e-45da-8d92-8bfd4093bbb9"
POLICY = "Switchboard-PBX"
SENDER = "switchboard@provider.example"
OPERATION_DELAY = 0.02
# For tests where the database makes no difference.
SQLITE_ONLY = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


def tenant_id(n: int) -> str:
    """A tenant GUID for enterprise number `n`."""
    return f"{n:08d}-aaaa-4bbb-8ccc-dddddddddddd"


def domain(n: int) -> str:
    """The verified domain of enterprise number `n`."""
    return f"enterprise{n}.example"


def admin_object_id(n: int) -> str:
    """The Entra object id of enterprise `n`'s Global Administrator."""
    return f"{n:08d}-0000-4000-8000-00000000a0a0"


@pytest.fixture(scope="module", name="sandbox_server")
def sandbox_server_fixture() -> Iterator[SandboxServer]:
    """One Graph sandbox per test module."""
    with SandboxServer(SandboxConfig(operation_delay_seconds=OPERATION_DELAY)) as server:
        yield server


# Every Graph client the sync tests build records its exchanges here (at its transport), and
# each test using `cloud` ends by checking them against Microsoft's v1.0 metadata.
RECORDER = ExchangeRecorder()


def graph_service(settings: GraphSettings) -> GraphService:
    """A Graph client whose requests and answers the contract check sees."""
    return GraphService(settings, trace_configs=[RECORDER.trace])


@pytest.fixture(name="cloud")
def cloud_fixture(sandbox_server: SandboxServer) -> Iterator[SandboxServer]:
    """The sandbox, emptied, with Switchboard's multi-tenant app registered at the provider.

    When the test ends, every exchange its Graph clients had must agree with the metadata.
    """
    RECORDER.take()
    yield _fresh_cloud(sandbox_server)
    problems = contract_problems(RECORDER.take())
    assert not problems, "Graph exchanges outside the v1.0 metadata:\n" + "\n".join(problems)


def _fresh_cloud(sandbox_server: SandboxServer) -> SandboxServer:
    server = sandbox_server
    server.reset()
    server.set_faults(FaultConfig())
    server.set_throttle(ThrottleLimits())
    server.config.operation_delay_seconds = OPERATION_DELAY
    server.config.wrap_entities = False
    server.config.teams_setup_delay_seconds = 0.0
    server.config.batch_failed_dependency = False
    server.state.add_tenant(PROVIDER_TENANT, "Provider", ["provider.example"])
    server.state.register_app(
        CLIENT_ID, CLIENT_SECRET, PROVIDER_TENANT, display_name="Switchboard", multi_tenant=True
    )
    server.state.add_user(PROVIDER_TENANT, SENDER, "Switchboard", usage_location="GB")
    return server


def seed_tenant(server: SandboxServer, n: int, *, licences: int = 500) -> str:
    """Enterprise `n`'s tenant: consented to the app, Teams Phone SKUs, a Global Administrator."""
    tid = tenant_id(n)
    server.state.add_tenant(tid, f"Enterprise {n}", [domain(n)])
    server.state.consent_app(tid, CLIENT_ID)
    server.state.add_sku(tid, ESSENTIALS_SKU, "MCOEV", licences)
    server.state.add_sku(tid, BASIC_SKU, "MCOEV_BASIC", licences)
    server.state.add_user(
        tid, f"admin@{domain(n)}", "Gloria Global", user_id=admin_object_id(n), usage_location="GB"
    )
    server.state.add_global_admin(tid, admin_object_id(n))
    server.state.add_policy(tid, "OnlineVoiceRoutingPolicy", POLICY)
    return tid


def voice_policy_id(server: SandboxServer, tid: str) -> str:
    """The tenant's opaque id of the voice routing policy the sync settings name."""
    tenant = server.state.require_tenant(tid)
    return tenant.teams_policies[("onlinevoiceroutingpolicy", POLICY.lower())].policy_id


def graph_settings(server: SandboxServer, **changes: Any) -> GraphSettings:
    """Graph settings pointing at the sandbox, with test-sized waits."""
    base = GraphSettings(
        base_url=server.graph_url,
        authority_host=server.authority_host,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        ca_bundle=str(server.ca_path),
        essentials_sku=ESSENTIALS_SKU,
        basic_sku=BASIC_SKU,
        voice_routing_policy=POLICY,
        mail_sender=SENDER,
        mail_tenant_id=PROVIDER_TENANT,
        max_attempts=8,
        max_retry_seconds=20.0,
        backoff_base_seconds=0.02,
        backoff_max_seconds=0.2,
        operation_poll_seconds=0.01,
        operation_timeout_seconds=10.0,
    )
    return replace(base, **changes)


def sync_settings(**changes: Any) -> SyncSettings:
    """Sync settings with test-sized polls, leases and retries."""
    base = SyncSettings(
        poll_seconds=0.02,
        lease_seconds=2.0,
        tenant_concurrency=20,
        max_attempts=30,
        retry_base_seconds=0.05,
        retry_max_seconds=0.5,
        verify_attempts=3,
        verify_delay_seconds=0.02,
        overdue_check_seconds=0.05,
        notifier_poll_seconds=0.05,
        notifier_backoff_seconds=0.05,
    )
    return replace(base, **changes)


def settings_with(
    services: Services, server: SandboxServer, *, graph: Any = None, sync: Any = None
) -> Settings:
    """Settings for the directory's database and the sandbox."""
    return Settings(
        database_url=services.db.url,
        graph=graph or graph_settings(server),
        sync=sync or sync_settings(),
    )


def composed(
    services: Services, settings: Settings, *, graph: GraphService | None = None
) -> Services:
    """The services as the composition root builds them from `settings` and `graph`, over
    the test's database and key (with Graph: the domain and Global Admin checks)."""
    return Services.build(services.db, settings, services.vault, graph=graph)


def global_admin(enterprise_id: int, n: int) -> Actor:
    """Enterprise `n`'s Global Admin as the directory knows them."""
    return Actor(admin_object_id(n), "Gloria Global", AdminRole.GLOBAL_ADMIN, enterprise_id)


async def make_enterprise(
    services: Services,
    n: int,
    *,
    users: int,
    basic_every: int = 4,
    consent: bool = False,
    notify: bool = False,
    password_mail: bool = False,
) -> int:
    """Enterprise `n` with `users` users (every `basic_every`-th on Basic); returns its id."""
    size = max(users, 1)
    enterprise = await services.enterprises.create(
        PROVIDER,
        name=f"Enterprise {n}",
        tenant_id=tenant_id(n),
        main_number=f"+44207{n:03d}0000",
        extensions=(10000, 10000 + size + 10),
        region="GB",
        consent=consent,
    )
    first = f"+44207{n:03d}{1:04d}"
    last = f"+44207{n:03d}{size + 1:04d}"
    await services.inventory.import_range(PROVIDER, enterprise.id, first, last)
    await services.licences.set_pool(PROVIDER, enterprise.id, LicenceProduct.ESSENTIALS, size)
    await services.licences.set_pool(PROVIDER, enterprise.id, LicenceProduct.BASIC, size)
    await services.enterprises.grant(
        PROVIDER,
        aad_object_id=admin_object_id(n),
        role=AdminRole.GLOBAL_ADMIN,
        enterprise_id=enterprise.id,
        display_name="Gloria Global",
    )
    actor = global_admin(enterprise.id, n)
    for i in range(users):
        basic = basic_every and i % basic_every == basic_every - 1
        await services.users.create(
            actor,
            enterprise.id,
            NewUser(
                display_name=f"User {i:04d}",
                email=f"user{i:04d}@{domain(n)}",
                licence=LicenceProduct.BASIC if basic else LicenceProduct.ESSENTIALS,
                number=None if basic else AUTO,
                extension=AUTO,
                notify_user=notify,
                send_password_email=password_mail,
            ),
        )
    return enterprise.id


async def wait_for(
    check: Callable[[], Any], *, timeout: float = 20.0, interval: float = 0.05
) -> Any:
    """Poll an async predicate until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s")
        await asyncio.sleep(interval)


async def run_state(services: Services, sync_id: int) -> SyncRun:
    """A run as it stands."""
    async with services.db.unit_of_work(readonly=True) as uow:
        run = await uow.session.get(SyncRun, sync_id)
        assert run is not None
        uow.session.expunge(run)
        return run


async def wait_for_run(services: Services, sync_id: int, *, timeout: float = 30.0) -> SyncRun:
    """Wait until a run has finished, and return it."""

    async def finished() -> SyncRun | None:
        run = await run_state(services, sync_id)
        return run if run.status in (SyncStatus.SUCCEEDED, SyncStatus.PARTIALLY_FAILED) else None

    result: SyncRun = await wait_for(finished, timeout=timeout)
    return result


async def item_counts(services: Services, sync_id: int) -> dict[OutboxStatus, int]:
    """The run's items by status."""
    async with services.db.unit_of_work(readonly=True) as uow:
        rows = await uow.session.execute(
            select(ProvisioningItem.status, func.count())
            .where(ProvisioningItem.sync_id == sync_id)
            .group_by(ProvisioningItem.status)
        )
        return {status: int(count) for status, count in rows}


@contextlib.asynccontextmanager
async def running_engines(
    services: Services, settings: Settings, *, count: int = 1
) -> AsyncIterator[list[ProvisioningEngine]]:
    """`count` sync workers, each with its own Graph client and database pool, as processes."""
    from services.db import Database

    engines: list[ProvisioningEngine] = []
    graphs: list[GraphService] = []
    databases: list[Database] = []
    try:
        for index in range(count):
            db = services.db if index == 0 else Database(services.db.url)
            if index:
                databases.append(db)
            graph = graph_service(settings.graph)
            graphs.append(graph)
            engine = ProvisioningEngine(
                db, services.users.vault, graph, settings, worker_id=f"worker-{index + 1}"
            )
            engines.append(engine)
            await engine.start()
        yield engines
    finally:
        for engine in engines:
            await engine.stop()
        for graph in graphs:
            await graph.close()
        for db in databases:
            await db.dispose()

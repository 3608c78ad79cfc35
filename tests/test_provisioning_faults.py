"""The sync under stress: Graph failing 30% of requests, a throttle storm, a worker killed with
SIGKILL in the middle of a run and restarted, and two workers sharing one run on PostgreSQL.
Whatever happens, the run completes, nothing is lost and nobody is set up twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sandbox import SandboxServer
from services.config import Settings
from services.container import Services
from services.domain import OutboxStatus, ProvisioningStatus, SyncStatus
from services.models import ProvisioningItem, User
from tests.provisioning_kit import (
    BASIC_SKU,
    CLIENT_ID,
    CLIENT_SECRET,
    ESSENTIALS_SKU,
    POLICY,
    SQLITE_ONLY,
    cloud_fixture,  # noqa: F401
    global_admin,
    graph_settings,
    item_counts,
    make_enterprise,
    running_engines,
    sandbox_server_fixture,  # noqa: F401
    seed_tenant,
    settings_with,
    sync_settings,
    voice_policy_id,
    wait_for,
    wait_for_run,
)

ROOT = Path(__file__).resolve().parents[1]


def assert_everyone_set_up_once(cloud: SandboxServer, tid: str, users: int) -> None:
    """Each user exists once in Entra, holds one licence and one number, ordered once."""
    tenant = cloud.state.require_tenant(tid)
    people = [u for u in tenant.users.values() if u.upn.startswith("user")]
    assert len(people) == users
    assert sum(tenant.skus[sku].consumed_units for sku in (ESSENTIALS_SKU, BASIC_SKU)) == users
    held = [n for n in tenant.numbers.values() if n.assignment_target_id]
    assert len(held) == users
    assert len({n.assignment_target_id for n in held}) == users
    assigns = [op for op in tenant.operations.values() if op.kind == "assign"]
    assert [op.status for op in assigns].count("failed") == 0
    assert [op.status for op in assigns].count("succeeded") == users
    for person in people:
        assert person.enterprise_voice_enabled
        assert person.policies["onlinevoiceroutingpolicy"].display_name == POLICY
        assert person.policies["onlinevoiceroutingpolicy"].policy_id == voice_policy_id(cloud, tid)
    stats = cloud.tenant_stats(tid)
    # Nothing Graph refused as wrong: every repeat was a look, not a second change.
    assert stats.statuses[400] == 0 and stats.statuses[409] == 0


async def assert_directory_done(services: Services, enterprise_id: int, users: int) -> None:
    """The directory shows everyone provisioned."""
    async with services.db.unit_of_work(readonly=True) as uow:
        statuses = (
            await uow.session.execute(
                select(User.provisioning_status, func.count())
                .where(User.enterprise_id == enterprise_id)
                .group_by(User.provisioning_status)
            )
        ).all()
    assert dict(statuses) == {ProvisioningStatus.PROVISIONED: users}


@SQLITE_ONLY
async def test_a_30_percent_503_rate_loses_nothing(
    services: Services, cloud: SandboxServer
) -> None:
    tid = seed_tenant(cloud, 21)
    ent = await make_enterprise(services, 21, users=14)
    cloud.set_faults(unavailable_rate=0.3, retry_after_seconds=1, seed=7)
    run, _ = await services.syncs.request(global_admin(ent, 21), ent)
    async with running_engines(services, settings_with(services, cloud)):
        finished = await wait_for_run(services, run.id, timeout=40)
    assert finished.status is SyncStatus.SUCCEEDED
    assert await item_counts(services, run.id) == {OutboxStatus.DONE: 14}
    stats = cloud.tenant_stats(tid)
    assert stats.faults["unavailable"] >= 5 and stats.statuses[503] >= 5
    assert_everyone_set_up_once(cloud, tid, 14)
    await assert_directory_done(services, ent, 14)


@SQLITE_ONLY
async def test_a_throttle_storm_is_waited_out(services: Services, cloud: SandboxServer) -> None:
    tid = seed_tenant(cloud, 22)
    ent = await make_enterprise(services, 22, users=12)
    # Graph allows 10 writes a second; the client believes the published 3,000 per 150 s.
    cloud.set_throttle(app_write_limit=10, app_write_window=1.0)
    run, _ = await services.syncs.request(global_admin(ent, 22), ent)
    async with running_engines(services, settings_with(services, cloud)) as [engine]:
        finished = await wait_for_run(services, run.id, timeout=40)
        assert engine.graph is not None
        pacer = engine.graph.tenant(tid).pacer
    assert finished.status is SyncStatus.SUCCEEDED
    stats = cloud.tenant_stats(tid)
    assert stats.throttled > 0 and stats.statuses[429] == stats.throttled
    assert pacer.refused == stats.throttled  # every 429 came back and was tried again
    assert_everyone_set_up_once(cloud, tid, 12)
    await assert_directory_done(services, ent, 12)


def _worker_env(services: Services, cloud: SandboxServer, key_file: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": services.db.url,
        "SWITCHBOARD_SECRET_KEY_FILE": str(key_file),
        "GRAPH_BASE_URL": cloud.graph_url,
        "GRAPH_AUTHORITY_HOST": cloud.authority_host,
        "GRAPH_AUTHORITY_CA_BUNDLE": str(cloud.ca_path),
        "GRAPH_CLIENT_ID": CLIENT_ID,
        "GRAPH_CLIENT_SECRET": CLIENT_SECRET,
        "LICENCE_SKU_ESSENTIALS": ESSENTIALS_SKU,
        "LICENCE_SKU_BASIC": BASIC_SKU,
        "VOICE_ROUTING_POLICY": POLICY,
        "GRAPH_WRITE_LIMIT": "20",
        "GRAPH_WRITE_WINDOW_SECONDS": "1",
        "GRAPH_BACKOFF_BASE_SECONDS": "0.02",
        "GRAPH_BACKOFF_MAX_SECONDS": "0.2",
        "GRAPH_OPERATION_POLL_SECONDS": "0.01",
        "SYNC_POLL_SECONDS": "0.05",
        "SYNC_LEASE_SECONDS": "1.5",
        "SYNC_RETRY_BASE_SECONDS": "0.05",
        "SYNC_RETRY_MAX_SECONDS": "0.5",
        "SYNC_VERIFY_DELAY_SECONDS": "0.02",
        "SYNC_TENANT_CONCURRENCY": "10",
    }
    env.pop("MAIL_SENDER", None)
    return env


def _start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.provisioning"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def _done(services: Services, sync_id: int) -> int:
    return (await item_counts(services, sync_id)).get(OutboxStatus.DONE, 0)


async def test_a_worker_killed_mid_run_is_replaced_and_nothing_is_done_twice(
    services: Services, cloud: SandboxServer, tmp_path: Path
) -> None:
    tid = seed_tenant(cloud, 23)
    ent = await make_enterprise(services, 23, users=24)
    # 20 writes a second: the run takes several seconds, long enough to kill it halfway.
    cloud.set_throttle(app_write_limit=20, app_write_window=1.0)
    run, _ = await services.syncs.request(global_admin(ent, 23), ent)
    env = _worker_env(services, cloud, tmp_path / "secret.key")

    first = _start_worker(env)
    try:
        await wait_for(lambda: _more_than(services, run.id, 6), timeout=30)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert first.returncode == -signal.SIGKILL
    async with services.db.unit_of_work(readonly=True) as uow:
        held = (
            await uow.session.execute(
                select(func.count())
                .select_from(ProvisioningItem)
                .where(
                    ProvisioningItem.sync_id == run.id,
                    ProvisioningItem.status == OutboxStatus.IN_PROGRESS,
                )
            )
        ).scalar_one()
    done_before = await _done(services, run.id)
    assert held > 0 and done_before < 24  # killed with work in hand

    second = _start_worker(env)
    try:
        finished = await wait_for_run(services, run.id, timeout=40)
    finally:
        second.send_signal(signal.SIGTERM)
        _, errors = second.communicate(timeout=10)
    assert second.returncode == 0, errors.decode()[-2000:]
    assert finished.status is SyncStatus.SUCCEEDED
    assert await item_counts(services, run.id) == {OutboxStatus.DONE: 24}
    assert_everyone_set_up_once(cloud, tid, 24)
    await assert_directory_done(services, ent, 24)
    async with services.db.unit_of_work(readonly=True) as uow:
        finishers = set((await uow.session.execute(select(ProvisioningItem.finished_by))).scalars())
    assert len(finishers) == 2  # both processes finished items


async def _more_than(services: Services, sync_id: int, count: int) -> bool:
    return await _done(services, sync_id) > count


@pytest.mark.parametrize("database", ["postgres"], indirect=True)
@pytest.mark.postgres
async def test_two_workers_share_one_run_without_doing_an_item_twice(
    services: Services, cloud: SandboxServer
) -> None:
    tid = seed_tenant(cloud, 24)
    ent = await make_enterprise(services, 24, users=40)
    settings: Settings = settings_with(
        services,
        cloud,
        graph=graph_settings(cloud),
        sync=sync_settings(tenant_concurrency=8),
    )
    run, _ = await services.syncs.request(global_admin(ent, 24), ent)
    async with running_engines(services, settings, count=2) as engines:
        finished = await wait_for_run(services, run.id, timeout=40)
        await asyncio.sleep(0.1)
    assert finished.status is SyncStatus.SUCCEEDED
    handled = [engine.items_handled for engine in engines]
    assert all(handled) and sum(handled) == 40  # each took a share; no item was taken twice
    async with services.db.unit_of_work(readonly=True) as uow:
        by_worker = dict(
            (
                await uow.session.execute(
                    select(ProvisioningItem.finished_by, func.count())
                    .where(ProvisioningItem.sync_id == run.id)
                    .group_by(ProvisioningItem.finished_by)
                )
            ).all()
        )
    assert by_worker == {"worker-1": handled[0], "worker-2": handled[1]}
    stats = cloud.tenant_stats(tid)
    assert stats.count("POST", "/users") == 40
    assert stats.count("POST", "/users/{user}/assignLicense") == 40
    assert (
        stats.count("POST", "/admin/teams/telephoneNumberManagement/numberAssignments/assignNumber")
        == 40
    )
    assert_everyone_set_up_once(cloud, tid, 40)
    await assert_directory_done(services, ent, 40)

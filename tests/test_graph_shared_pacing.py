"""Two worker processes on one tenant share its Graph write budget through PostgreSQL: together
they stay within it (no 429) and keep writing at its pace, each doing part of the run."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from sandbox import SandboxServer
from services.db import Database
from services.directory import Directory
from services.graph.shared_pacing import SharedWriteBudget
from services.models import ProvisioningItem, SyncStatus
from tests.provisioning_kit import (
    cloud_fixture,  # noqa: F401
    global_admin,
    make_enterprise,
    sandbox_server_fixture,  # noqa: F401
    seed_tenant,
    wait_for_run,
)
from tests.test_provisioning_faults import _start_worker, _worker_env

POSTGRES_ONLY = [
    pytest.mark.parametrize("database", ["postgres"], indirect=True),
    pytest.mark.postgres,
]
LIMIT, WINDOW, GUARD = 20, 1.0, 0.1


@POSTGRES_ONLY[0]
@POSTGRES_ONLY[1]
async def test_two_worker_processes_stay_within_one_tenants_budget(
    directory: Directory, cloud: SandboxServer, tmp_path: Path
) -> None:
    tid = seed_tenant(cloud, 95)
    users = 30
    ent = await make_enterprise(directory, 95, users=users)
    # Graph's budget for this app in this tenant, and what each worker is told it is.
    cloud.set_throttle(app_write_limit=LIMIT, app_write_window=WINDOW)
    run, _ = await directory.syncs.request(global_admin(ent, 95), ent)
    env = {
        **_worker_env(directory, cloud, tmp_path / "secret.key"),
        "GRAPH_WRITE_LIMIT": str(LIMIT),
        "GRAPH_WRITE_WINDOW_SECONDS": str(WINDOW),
        "GRAPH_WRITE_GUARD_SECONDS": str(GUARD),
    }

    workers = [_start_worker(env), _start_worker(env)]
    try:
        finished = await wait_for_run(directory, run.id, timeout=90)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=20)[1] for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], [o.decode()[-2000:] for o in outputs]

    assert finished.status is SyncStatus.SUCCEEDED
    stats = cloud.tenant_stats(tid)
    assert stats.throttled == 0 and stats.statuses[429] == 0
    assert stats.writes_accepted >= 3 * users  # user, licence, number (and policy) each
    async with directory.db.unit_of_work(readonly=True) as uow:
        finishers = dict(
            (
                await uow.session.execute(
                    select(ProvisioningItem.finished_by, func.count())
                    .where(ProvisioningItem.sync_id == run.id)
                    .group_by(ProvisioningItem.finished_by)
                )
            ).all()
        )
        [key] = (
            await uow.session.execute(text("SELECT budget_key FROM graph_write_pacing"))
        ).scalars()
    assert len(finishers) == 2 and sum(finishers.values()) == users  # both did a share
    assert key.endswith(f"|{tid}")  # one schedule for the app in this tenant


@POSTGRES_ONLY[0]
@POSTGRES_ONLY[1]
async def test_the_shared_schedule_spaces_writes_at_the_budgets_pace(
    directory: Directory,
) -> None:
    other = Database(directory.db.url)
    first = SharedWriteBudget(directory.db, LIMIT, WINDOW, GUARD)
    second = SharedWriteBudget(other, LIMIT, WINDOW, GUARD)
    try:
        async with directory.db.write_engine.begin() as connection:
            start = (await connection.execute(text("SELECT clock_timestamp()"))).scalar_one()
        for budget in (first, second) * 5:
            await budget.acquire("app|tenant")
        await first.pause("app|tenant", 0.0)  # a pause in the past changes nothing
        async with directory.db.write_engine.begin() as connection:
            next_at = (
                await connection.execute(
                    text("SELECT next_at FROM graph_write_pacing WHERE budget_key = 'app|tenant'")
                )
            ).scalar_one()
    finally:
        await other.dispose()
    # Ten writes from two processes took ten consecutive slots of one schedule.
    assert (next_at - start).total_seconds() >= 10 * first.interval
    # The pace: `limit` writes per window and guard, at least 0.9 of the budget.
    assert first.interval == (WINDOW + GUARD) / LIMIT
    assert 1 / first.interval >= LIMIT / WINDOW * 0.9

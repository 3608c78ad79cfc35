"""Two worker processes on one tenant share its Graph write budget through PostgreSQL: together
they stay within it (no 429) and keep writing at its pace, each doing part of the run."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from sandbox import SandboxServer
from services.container import Services
from services.db import Database
from services.domain import SyncStatus
from services.graph.shared_pacing import SharedWriteBudget, schedule
from services.models import ProvisioningItem
from tests.provisioning_kit import (
    CLIENT_ID,
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
# The guard covers how much later one write can reach Graph than a write scheduled after it;
# worker processes on a loaded test machine differ by far more than 0.1 s.
LIMIT, WINDOW, GUARD = 20, 1.0, 0.5


@POSTGRES_ONLY[0]
@POSTGRES_ONLY[1]
async def test_two_worker_processes_stay_within_one_tenants_budget(
    services: Services, cloud: SandboxServer, tmp_path: Path
) -> None:
    tid = seed_tenant(cloud, 95)
    users = 30
    ent = await make_enterprise(services, 95, users=users)
    # Graph's budget for this app in this tenant, and what each worker is told it is.
    cloud.set_throttle(app_write_limit=LIMIT, app_write_window=WINDOW)
    run, _ = await services.syncs.request(global_admin(ent, 95), ent)
    env = {
        **_worker_env(services, cloud, tmp_path / "secret.key"),
        "GRAPH_WRITE_LIMIT": str(LIMIT),
        "GRAPH_WRITE_WINDOW_SECONDS": str(WINDOW),
        "GRAPH_WRITE_GUARD_SECONDS": str(GUARD),
    }

    workers = [_start_worker(env), _start_worker(env)]
    try:
        finished = await wait_for_run(services, run.id, timeout=90)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=20)[1] for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], [o.decode()[-2000:] for o in outputs]

    assert finished.status is SyncStatus.SUCCEEDED
    stats = cloud.tenant_stats(tid)
    assert stats.throttled == 0 and stats.statuses[429] == 0
    assert stats.writes_accepted >= 3 * users  # user, licence, number (and policy) each
    async with services.db.unit_of_work(readonly=True) as uow:
        finishers = dict(
            (
                await uow.session.execute(
                    select(ProvisioningItem.finished_by, func.count())
                    .where(ProvisioningItem.sync_id == run.id)
                    .group_by(ProvisioningItem.finished_by)
                )
            ).all()
        )
        keys = list(
            (
                await uow.session.execute(
                    text("SELECT budget_key FROM graph_write_pacing WHERE budget_key LIKE :t"),
                    {"t": f"%|{tid}"},
                )
            ).scalars()
        )
    assert len(finishers) == 2 and sum(finishers.values()) == users  # both did a share
    assert keys == [f"{CLIENT_ID}|{tid}"]  # one window for the app in this tenant


@POSTGRES_ONLY[0]
@POSTGRES_ONLY[1]
async def test_writes_of_two_processes_fill_one_sliding_window(services: Services) -> None:
    other = Database(services.db.url)
    first = SharedWriteBudget(services.db, 3, 0.5, 0.1)
    second = SharedWriteBudget(other, 3, 0.5, 0.1)
    try:
        await asyncio.gather(*(budget.acquire("app|tenant") for budget in (first, second) * 3))
        await first.pause("app|tenant", 0.0)  # a pause that is already over changes nothing
        async with services.db.write_engine.begin() as connection:
            raw = (
                await connection.execute(
                    text("SELECT recent FROM graph_write_pacing WHERE budget_key = 'app|tenant'")
                )
            ).scalar_one()
    finally:
        await first.close()
        await second.close()
        await other.dispose()
    moments = sorted(json.loads(raw) if isinstance(raw, str) else raw)
    assert len(moments) == 6
    # Three at once (the window had room), then each waits for one to leave the window.
    assert moments[3] >= moments[0] + 0.6 and moments[5] >= moments[2] + 0.6
    assert first.reserved + second.reserved == 6


_MOMENTS = st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=40)


@given(
    recent=_MOMENTS,
    now=st.floats(min_value=0, max_value=120, allow_nan=False),
    count=st.integers(min_value=0, max_value=40),
    limit=st.integers(min_value=1, max_value=10),
    horizon=st.floats(min_value=0.01, max_value=30, allow_nan=False),
    pause=st.floats(min_value=0, max_value=130, allow_nan=False),
)
@settings(max_examples=300, deadline=None)
def test_no_window_ever_holds_more_than_the_limit(
    recent: list[float], now: float, count: int, limit: int, horizon: float, pause: float
) -> None:
    # What is already in the window is taken as Graph counted it: schedule from a valid state.
    valid, _ = schedule([], 0.0, 0, limit=limit, horizon=horizon, not_before=0.0)
    _, recent = schedule(valid, 0.0, len(recent), limit=limit, horizon=horizon, not_before=0.0)
    slots, kept = schedule(recent, now, count, limit=limit, horizon=horizon, not_before=pause)

    assert len(slots) == count
    assert all(s >= max(now, pause) for s in slots)
    assert slots == sorted(slots) and kept == sorted(kept)
    for moment in slots:
        # Half-open, as Graph and the sandbox count (a write exactly `horizon` old is out).
        inside = [t for t in kept if moment - horizon + 1e-9 < t <= moment]
        assert len(inside) <= limit
    # Nobody waits longer than the window needs: with room, a write goes at once.
    if count and len([t for t in recent if t > now - horizon]) < limit:
        assert slots[0] == max(now, pause)

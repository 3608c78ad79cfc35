"""Injected 503s, slow answers and dropped connections occur at the configured, seeded rate."""

from __future__ import annotations

import time

import aiohttp

from sandbox import FaultConfig, SandboxServer
from sandbox.faults import Fault, FaultInjector
from tests.sandbox.helpers import TENANT, GraphClient, fetch_token


def test_draws_follow_the_rates_and_repeat_with_the_seed() -> None:
    config = FaultConfig(unavailable_rate=0.2, slow_rate=0.1, drop_rate=0.05, seed=42)
    injector = FaultInjector(config)

    draws = [injector.draw() for _ in range(20000)]
    injector.configure(config)
    again = [injector.draw() for _ in range(20000)]

    assert draws == again
    share = {fault: draws.count(fault) / len(draws) for fault in Fault}
    assert abs(share[Fault.UNAVAILABLE] - 0.2) < 0.015
    assert abs(share[Fault.SLOW] - 0.1) < 0.015
    assert abs(share[Fault.DROPPED] - 0.05) < 0.01


async def test_503_share_with_retry_after(server: SandboxServer, graph: GraphClient) -> None:
    server.set_faults(unavailable_rate=0.3, retry_after_seconds=2, seed=7)

    replies = [await graph.get("/subscribedSkus") for _ in range(200)]

    unavailable = [r for r in replies if r.status == 503]
    assert {r.status for r in replies} == {200, 503}
    assert 40 <= len(unavailable) <= 80
    assert all(r.headers["Retry-After"] == "2" for r in unavailable)
    assert unavailable[0].error_code == "ServiceNotAvailable"
    assert server.tenant_stats(TENANT).faults["unavailable"] == len(unavailable)

    server.set_faults(unavailable_rate=0.3, retry_after_seconds=2, seed=7)
    replay = [(await graph.get("/subscribedSkus")).status for _ in range(200)]
    assert replay == [r.status for r in replies]


async def test_dropped_connections_at_the_configured_rate(server: SandboxServer) -> None:
    server.set_faults(drop_rate=0.25, seed=3)
    token = await fetch_token(server)
    connector = aiohttp.TCPConnector(force_close=True)
    headers = {"Authorization": f"Bearer {token}"}

    # aiohttp quietly retries an idempotent request once after a drop, so send POSTs.
    batch = {"requests": [{"id": "1", "method": "GET", "url": "/subscribedSkus"}]}
    dropped = 0
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        for _ in range(100):
            try:
                async with session.post(server.graph_url + "/$batch", json=batch) as response:
                    assert response.status == 200
            except aiohttp.ServerDisconnectedError:
                dropped += 1

    assert 12 <= dropped <= 40
    assert server.tenant_stats(TENANT).faults["dropped"] == dropped


async def test_slow_share_is_delayed(server: SandboxServer, graph: GraphClient) -> None:
    server.set_faults(slow_rate=0.5, slow_seconds=0.15, seed=11)

    durations = []
    for _ in range(12):
        started = time.perf_counter()
        assert (await graph.get("/subscribedSkus")).status == 200
        durations.append(time.perf_counter() - started)

    slow = sum(1 for d in durations if d >= 0.15)
    assert 2 <= slow <= 10
    assert server.tenant_stats(TENANT).faults["slow"] == slow


async def test_faults_change_through_the_admin_api(
    server: SandboxServer, graph: GraphClient
) -> None:
    async with graph.session.put(
        server.admin_url + "/faults", json={"unavailableRate": 1.0}
    ) as response:
        assert response.status == 200
    assert (await graph.get("/subscribedSkus")).status == 503

    async with graph.session.put(
        server.admin_url + "/faults", json={"unavailableRate": 0.0}
    ) as response:
        assert (await response.json())["unavailableRate"] == 0.0
    assert (await graph.get("/subscribedSkus")).status == 200

    async with graph.session.put(server.admin_url + "/faults", json={"dropRate": 2}) as response:
        assert response.status == 400

"""Writes beyond the per-app and per-tenant windows get 429 with Retry-After, and are counted."""

from __future__ import annotations

import asyncio

import pytest

from sandbox import SandboxServer, ThrottleLimits
from sandbox.throttle import Throttle
from tests.sandbox.helpers import ADMIN_ID, TENANT, GraphClient


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sliding_window_per_app_and_retry_after() -> None:
    clock = FakeClock()
    throttle = Throttle(ThrottleLimits(app_write_limit=3, app_write_window=10), clock)

    assert [throttle.admit_write("t", "app") for _ in range(3)] == [None, None, None]
    clock.now += 2.5
    assert throttle.admit_write("t", "app") == 8  # the first write leaves the window at +10 s
    assert throttle.admit_write("t", "other-app") is None
    clock.now += 7.5  # all three writes have left the window
    assert [throttle.admit_write("t", "app") for _ in range(4)] == [None, None, None, 10]
    clock.now += 9.95
    assert throttle.admit_write("t", "app") == 1  # never less than one second


def test_tenant_limit_spans_every_app() -> None:
    clock = FakeClock()
    limits = ThrottleLimits(
        app_write_limit=10, app_write_window=60, tenant_write_limit=4, tenant_write_window=30
    )
    throttle = Throttle(limits, clock)

    for app in ("a", "b", "a", "b"):
        assert throttle.admit_write("t", app) is None
    assert throttle.admit_write("t", "c") == 30
    assert throttle.admit_write("another-tenant", "c") is None


def test_published_limits_are_the_defaults() -> None:
    limits = ThrottleLimits()
    assert (limits.app_write_limit, limits.app_write_window) == (3000, 150)
    assert (limits.tenant_write_limit, limits.tenant_write_window) == (18000, 300)
    with pytest.raises(ValueError):
        ThrottleLimits(app_write_limit=0)


async def test_over_the_limit_writes_get_429_and_reads_do_not(
    server: SandboxServer, graph: GraphClient
) -> None:
    server.set_throttle(app_write_limit=2, app_write_window=0.3)
    path = f"/users/{ADMIN_ID}"

    statuses = [(await graph.patch(path, {"jobTitle": f"t{i}"})).status for i in range(2)]
    throttled = await graph.patch(path, {"jobTitle": "t2"})
    read = await graph.get(path)

    assert statuses == [204, 204]
    assert throttled.status == 429
    assert throttled.headers["Retry-After"] == "1"
    assert throttled.error_code == "TooManyRequests"
    assert throttled.body["error"]["innerError"]["request-id"] == throttled.headers["request-id"]
    assert read.status == 200
    assert read.body["jobTitle"] == "t1"

    await asyncio.sleep(0.35)
    assert (await graph.patch(path, {"jobTitle": "t3"})).status == 204

    stats = server.tenant_stats(TENANT)
    assert stats.count("PATCH", "/users/{user}") == 4
    assert stats.count("GET", "/users/{user}") == 1
    assert stats.writes_accepted == 3
    assert stats.throttled == 1
    assert stats.statuses[429] == 1


async def test_throttle_limits_change_through_the_admin_api(
    server: SandboxServer, graph: GraphClient
) -> None:
    async with graph.session.put(
        server.admin_url + "/throttle", json={"appWriteLimit": 1, "appWriteWindowSeconds": 60}
    ) as response:
        assert response.status == 200
        assert (await response.json())["appWriteLimit"] == 1

    assert (await graph.patch(f"/users/{ADMIN_ID}", {"jobTitle": "a"})).status == 204
    assert (await graph.patch(f"/users/{ADMIN_ID}", {"jobTitle": "b"})).status == 429
    async with graph.session.get(server.admin_url + "/stats", params={"tenant": TENANT}) as r:
        stats = await r.json()
    assert stats["throttled"] == 1
    assert stats["writesAccepted"] == 1
    assert stats["requests"]["PATCH /users/{user}"] == 2

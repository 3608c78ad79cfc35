"""The Graph client: msal tokens per tenant against the sandbox's https authority, retries
(Retry-After honoured, exponential backoff, bounded), client-request-id on every request,
JSON batches with inner 429s, write pacing, Graph errors as domain errors, and the operations
the sync needs, run against the sandbox."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from sandbox import SandboxServer
from services.config import GraphSettings
from services.graph import (
    GraphAuthenticationError,
    GraphError,
    GraphNotFoundError,
    GraphOperations,
    GraphService,
    GraphUnavailableError,
)
from services.graph.pacing import WritePacer
from tests.provisioning_kit import (
    CLIENT_SECRET,
    ESSENTIALS_SKU,
    admin_object_id,
    cloud_fixture,  # noqa: F401
    graph_service,
    graph_settings,
    sandbox_server_fixture,  # noqa: F401
    seed_tenant,
    tenant_id,
)

# --- a scripted Graph, for exact control of statuses and timings -------------------------------

Reply = tuple[int, dict[str, str], Any]


@dataclass
class ScriptedGraph:
    """Answers each path from a script (then 200 {}), records every request and inner request."""

    scripts: dict[str, list[Reply]] = field(default_factory=dict)
    seen: list[tuple[str, str, str, float]] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    drop_next: int = 0
    # Statuses for the next batch envelopes; a 424 one answers 429 for the first inner
    # request and 424 (not run) for the rest, as Graph does for a throttled batch.
    batch_envelopes: list[int] = field(default_factory=list)

    def answer(self, method: str, path: str, client_request_id: str) -> Reply:
        self.seen.append((method, path, client_request_id, time.monotonic()))
        script = self.scripts.get(path)
        if script:
            return script.pop(0)
        return 200, {}, {"id": path, "value": []}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.tokens.append(request.headers.get("Authorization", ""))
        path = "/" + request.match_info["tail"]
        if self.drop_next:
            self.drop_next -= 1
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if path == "/$batch":
            body = await request.json()
            self.batches.append(len(body["requests"]))
            if self.batch_envelopes and self.batch_envelopes.pop(0) == 424:
                throttled = []
                for index, inner in enumerate(body["requests"]):
                    self.seen.append((inner["method"], inner["url"], "", time.monotonic()))
                    status = 429 if index == 0 else 424
                    throttled.append(
                        {
                            "id": inner["id"],
                            "status": status,
                            "headers": {"Retry-After": "0"} if status == 429 else {},
                            "body": {"error": {"code": str(status), "message": "throttled"}},
                        }
                    )
                return web.json_response(
                    {"responses": throttled}, status=424, headers={"Retry-After": "0"}
                )
            responses = []
            for inner in body["requests"]:
                status, headers, payload = self.answer(
                    inner["method"], inner["url"], inner["headers"]["client-request-id"]
                )
                entry: dict[str, Any] = {"id": inner["id"], "status": status, "headers": headers}
                if payload is not None:
                    entry["body"] = payload
                responses.append(entry)
            return web.json_response({"responses": responses})
        path_qs = path + (f"?{request.query_string}" if request.query_string else "")
        status, headers, payload = self.answer(
            request.method, path_qs, request.headers.get("client-request-id", "")
        )
        if payload is None:
            return web.Response(status=status, headers=headers)
        return web.Response(
            status=status,
            headers=headers,
            text=json.dumps(payload),
            content_type="application/json",
        )


def graph_error(status: int, code: str, message: str, request_id: str = "rid-1") -> Reply:
    """An OData error reply."""
    return (
        status,
        {"request-id": request_id},
        {"error": {"code": code, "message": message, "innerError": {"request-id": request_id}}},
    )


class FixedTokens:
    """Tokens without an authority: "token-1", then "token-2" after an invalidation."""

    def __init__(self) -> None:
        self.issued = 1
        self.invalidated = 0

    async def token(self, tenant_id: str) -> str:
        return f"token-{self.issued}"

    def invalidate(self, tenant_id: str) -> None:
        self.invalidated += 1
        self.issued += 1


@pytest.fixture(name="scripted")
async def scripted_fixture() -> AsyncIterator[tuple[ScriptedGraph, str]]:
    """A scripted Graph on loopback and its base URL."""
    graph = ScriptedGraph()
    app = web.Application()
    app.router.add_route("*", "/v1.0/{tail:.*}", graph.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield graph, f"http://127.0.0.1:{port}/v1.0"
    await runner.cleanup()


def scripted_service(base_url: str, **changes: Any) -> tuple[GraphService, FixedTokens]:
    """A Graph service over the scripted Graph, with fast backoff."""
    values: dict[str, Any] = {
        "base_url": base_url,
        "client_id": "app",
        "client_secret": "secret",
        "backoff_base_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        "max_attempts": 5,
        "max_retry_seconds": 5.0,
        "batch_size": 1,
        **changes,
    }
    tokens = FixedTokens()
    return GraphService(GraphSettings(**values), tokens=tokens), tokens  # type: ignore[arg-type]


async def test_429_and_503_wait_as_long_as_retry_after_says(
    scripted: tuple[ScriptedGraph, str],
) -> None:
    fake, base = scripted
    fake.scripts["/users"] = [
        (429, {"Retry-After": "0.3"}, {"error": {"code": "TooManyRequests", "message": "slow"}}),
        (503, {"Retry-After": "0.2"}, {"error": {"code": "ServiceNotAvailable", "message": "x"}}),
        (201, {}, {"id": "u1"}),
    ]
    service, _ = scripted_service(base)
    graph = service.tenant("t1")
    answer = await graph.call("POST", "/users", {"displayName": "A"})
    await service.close()
    assert answer.status == 201 and answer.body == {"id": "u1"}
    times = [at for _, path, _, at in fake.seen if path == "/users"]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.29 and times[2] - times[1] >= 0.19
    assert graph.pacer.refused == 1 and graph.retries == 2  # the 429 freed its write slot


async def test_other_failures_back_off_exponentially_and_give_up_within_bounds(
    scripted: tuple[ScriptedGraph, str],
) -> None:
    fake, base = scripted
    fake.scripts["/flaky"] = [graph_error(500, "InternalServerError", "boom")] * 2
    fake.scripts["/down"] = [graph_error(502, "BadGateway", "gateway")] * 50
    service, _ = scripted_service(base, max_attempts=4)
    graph = service.tenant("t1")
    assert (await graph.call("GET", "/flaky")).status == 200
    started = time.monotonic()
    with pytest.raises(GraphUnavailableError) as caught:
        await graph.call("GET", "/down")
    elapsed = time.monotonic() - started
    await service.close()
    assert [path for _, path, _, _ in fake.seen].count("/down") == 4
    assert elapsed < 1.0  # 0.01 + 0.02 + 0.04 at most, with jitter below that
    assert caught.value.transient and caught.value.status == 502
    assert "gateway" in caught.value.message and "rid-1" in caught.value.message


async def test_a_lost_connection_is_retried(scripted: tuple[ScriptedGraph, str]) -> None:
    fake, base = scripted
    fake.drop_next = 2  # POSTs are not retried by aiohttp itself
    service, _ = scripted_service(base)
    answer = await service.tenant("t1").call("POST", "/users/u1/assignLicense", {"x": 1})
    await service.close()
    assert answer.status == 200
    assert [path for _, path, _, _ in fake.seen] == ["/users/u1/assignLicense"]


async def test_a_refused_token_is_replaced_once(scripted: tuple[ScriptedGraph, str]) -> None:
    fake, base = scripted
    fake.scripts["/me"] = [graph_error(401, "InvalidAuthenticationToken", "expired")]
    fake.scripts["/other"] = [graph_error(401, "InvalidAuthenticationToken", "revoked")] * 2
    service, tokens = scripted_service(base)
    graph = service.tenant("t1")
    assert (await graph.call("GET", "/me")).status == 200
    assert fake.tokens == ["Bearer token-1", "Bearer token-2"]
    with pytest.raises(GraphError) as caught:
        await graph.call("GET", "/other")
    await service.close()
    assert caught.value.status == 401 and not caught.value.transient
    assert tokens.invalidated == 2


async def test_refusals_become_domain_errors_with_graphs_message_and_request_id(
    scripted: tuple[ScriptedGraph, str],
) -> None:
    fake, base = scripted
    fake.scripts["/users"] = [
        graph_error(400, "Request_BadRequest", "Property userPrincipalName is invalid.", "r-42")
    ]
    fake.scripts["/users/missing"] = [graph_error(404, "Request_ResourceNotFound", "gone")]
    service, _ = scripted_service(base)
    graph = service.tenant("t1")
    with pytest.raises(GraphError) as caught:
        await graph.call("POST", "/users", {})
    assert await graph.get("/users/missing") is None
    await service.close()
    error = caught.value
    assert error.message == (
        "Property userPrincipalName is invalid. (Microsoft Graph request id r-42)"
    )
    assert error.code == "Request_BadRequest" and not error.transient
    assert not isinstance(error, GraphNotFoundError)
    assert len(fake.seen) == 2  # refusals are not retried


async def test_requests_travel_in_batches_of_twenty_and_inner_429s_retry_alone(
    scripted: tuple[ScriptedGraph, str],
) -> None:
    fake, base = scripted
    for n in (3, 17):
        fake.scripts[f"/users/u{n}"] = [
            (429, {"Retry-After": "0.1"}, {"error": {"code": "TooManyRequests", "message": "x"}})
        ]
    service, _ = scripted_service(base, batch_size=20, batch_linger_seconds=0.01)
    graph = service.tenant("t1")
    answers = await asyncio.gather(*(graph.call("GET", f"/users/u{n}") for n in range(45)))
    await service.close()
    assert [a.body["id"] for a in answers] == [f"/users/u{n}" for n in range(45)]
    assert sorted(fake.batches[:3], reverse=True) == [20, 20, 5]
    assert sum(fake.batches) == 47 and max(fake.batches) <= 20
    counts = Counter(path for _, path, _, _ in fake.seen)
    assert counts["/users/u3"] == counts["/users/u17"] == 2 and counts["/users/u4"] == 1
    # Every inner request carried its own client-request-id; a retry keeps it.
    ids = {(path, rid) for _, path, rid, _ in fake.seen}
    assert len(ids) == 45 and all(rid for _, rid in ids)


async def test_writes_are_paced_to_the_budget() -> None:
    pacer = WritePacer(limit=5, window=0.3)
    started = time.monotonic()
    for _ in range(12):
        await pacer.acquire()
        pacer.settle()
    elapsed = time.monotonic() - started
    assert 0.55 <= elapsed < 1.0  # 5 now, 5 after one window, 2 after the second
    refused = WritePacer(limit=1, window=10)
    await refused.acquire()
    refused.release()  # a 429: Graph did not count it
    await asyncio.wait_for(refused.acquire(), 0.1)
    refused.settle()
    refused.pause(0.2)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(refused.acquire(), 0.1)


async def test_operation_bodies_with_or_without_value(
    scripted: tuple[ScriptedGraph, str],
) -> None:
    fake, base = scripted
    numbers = "/admin/teams/telephoneNumberManagement"
    for action, op in (("assignNumber", "op1"), ("unassignNumber", "op2")):
        fake.scripts[f"{numbers}/numberAssignments/{action}"] = [
            (202, {"Location": f"{base}{numbers}/operations/{op}"}, None)
        ]
    fake.scripts[f"{numbers}/operations/op1"] = [
        (200, {}, {"value": {"status": "running"}}),
        (200, {}, {"value": {"status": "succeeded", "numbers": [{"status": "succeeded"}]}}),
    ]
    fake.scripts[f"{numbers}/operations/op2"] = [
        (
            200,
            {},
            {
                "status": "failed",
                "numbers": [{"status": "failed", "statusDetail": "Not assigned."}],
            },
        )
    ]
    service, _ = scripted_service(base)
    ops = GraphOperations(service.tenant("t1"), poll_seconds=0.01)
    assigned = await ops.assign_number("+442071230001", "u1")
    released = await ops.unassign_number("+442071230001")
    await service.close()
    assert assigned.ok and assigned.status == "succeeded"
    # The order failed, but nobody holds the number (the list is empty): it is released.
    assert released.ok and released.detail == "Not assigned."


# --- against the sandbox -------------------------------------------------------------------------


async def test_tokens_come_from_msal_and_are_cached_per_tenant(
    cloud: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = seed_tenant(cloud, 41), seed_tenant(cloud, 42)
    cloud.config.token_lifetime_seconds = 2  # renewed after half its life
    service = graph_service(graph_settings(cloud))
    caplog.set_level(logging.DEBUG, logger="services.graph")
    try:
        for tid in (first, second, first, second):
            ops = GraphOperations(service.tenant(tid))
            assert await ops.find_user(f"admin@enterprise{41 if tid == first else 42}.example")
        assert cloud.tenant_stats(first).tokens_issued == 1
        assert cloud.tenant_stats(second).tokens_issued == 1
        await asyncio.sleep(1.1)
        await GraphOperations(service.tenant(first)).find_user(admin_object_id(41))
        assert cloud.tenant_stats(first).tokens_issued == 2
    finally:
        await service.close()
        cloud.config.token_lifetime_seconds = 3600
    logged = caplog.text
    assert "client-request-id" in logged and "request-id" in logged
    assert "Bearer" not in logged and "eyJ" not in logged and CLIENT_SECRET not in logged


async def test_a_tenant_without_consent_is_refused_with_entras_reason(
    cloud: SandboxServer,
) -> None:
    tid = seed_tenant(cloud, 43)
    cloud.state.require_tenant(tid).consented_apps.clear()
    service = graph_service(graph_settings(cloud))
    with pytest.raises(GraphAuthenticationError) as caught:
        await GraphOperations(service.tenant(tid)).find_user("anyone@enterprise43.example")
    await service.close()
    assert "Microsoft Entra refused Switchboard's sign-in" in caught.value.message
    assert "AADSTS7000229" in caught.value.message and "Trace ID" not in caught.value.message
    assert not caught.value.transient


async def test_sync_operations_look_before_they_change(cloud: SandboxServer) -> None:
    tid = seed_tenant(cloud, 44)
    other = cloud.state.add_user(
        tid, "holder@enterprise44.example", "Holder", usage_location="GB", licenses=[ESSENTIALS_SKU]
    )
    cloud.state.add_number(tid, "+442071239999", assignment_target_id=other.id)
    service = graph_service(graph_settings(cloud))
    ops = GraphOperations(service.tenant(tid), poll_seconds=0.01)
    try:
        user, created = await ops.create_user(
            display_name="Nia",
            user_principal_name="nia@enterprise44.example",
            usage_location="GB",
            password="Xy7!pass-word",
        )
        again, created_again = await ops.create_user(
            display_name="Nia",
            user_principal_name="nia@enterprise44.example",
            usage_location="GB",
            password="Xy7!pass-word",
        )
        assert created and not created_again and again.id == user.id
        await ops.set_licences(user.id, [ESSENTIALS_SKU], [])
        await ops.set_licences(user.id, [ESSENTIALS_SKU], [])  # already held: no change
        found = await ops.find_user("nia@enterprise44.example")
        assert found is not None and found.licences == {ESSENTIALS_SKU}
        assert cloud.state.require_tenant(tid).skus[ESSENTIALS_SKU].consumed_units == 2

        first = await ops.assign_number("+442071230044", user.id)
        repeat = await ops.assign_number("+442071230044", user.id)
        taken = await ops.assign_number("+442071239999", user.id)
        assert first.status == "succeeded"
        # Already this user's: Graph's status is unknownFutureValue, the number is on the user.
        assert repeat.status == "succeeded" and repeat.ok
        assert not taken.ok and taken.refused
        assert "already assigned to another user" in (taken.detail or "")
        assert await ops.number_holder("+442071239999") == other.id
        teams = await ops.teams_user(user.id)
        assert teams is not None and teams.enterprise_voice
        assert teams.has_primary("+442071230044")

        route = cloud.state.add_policy(tid, "OnlineVoiceRoutingPolicy", "PBX-Route")
        policy_id = await ops.policy_id("OnlineVoiceRoutingPolicy", "PBX-Route")
        assert policy_id == route.policy_id
        await ops.assign_policy(user.id, "OnlineVoiceRoutingPolicy", policy_id)
        teams = await ops.teams_user(user.id)
        assert teams is not None and teams.policy("OnlineVoiceRoutingPolicy") == policy_id

        assert await ops.is_global_admin(admin_object_id(44))
        assert not await ops.is_global_admin(user.id)
        assert await ops.teams_user("00000000-0000-4000-8000-000000000000") is None
    finally:
        await service.close()
    stats = cloud.tenant_stats(tid)
    assert stats.count("POST", "/users") == 2  # the second answered "already exists": looked up
    assert stats.batches >= 1


async def test_collections_are_followed_page_by_page(cloud: SandboxServer) -> None:
    tid = seed_tenant(cloud, 45)
    for n in range(7):
        cloud.state.add_user(tid, f"p{n}@enterprise45.example", f"P {n}")
    service = graph_service(graph_settings(cloud))
    try:
        graph = service.tenant(tid)
        names = [user["userPrincipalName"] async for user in graph.items("/users?$top=3")]
    finally:
        await service.close()
    assert len(names) == 8 and len(set(names)) == 8
    assert cloud.tenant_stats(tid).count("GET", "/users") == 3


async def test_mail_is_sent_from_the_configured_mailbox(cloud: SandboxServer) -> None:
    tid = seed_tenant(cloud, 46)
    service = graph_service(graph_settings(cloud))
    try:
        ops = GraphOperations(service.tenant(tid))
        await ops.send_mail(
            "admin@enterprise46.example", "someone@example.com", "Hello", "<p>Hi</p>"
        )
        with pytest.raises(GraphNotFoundError):
            await ops.send_mail("nobody@enterprise46.example", "x@example.com", "s", "b")
    finally:
        await service.close()
    [mail] = cloud.state.mails(tid)
    assert (mail.sender, mail.to, mail.subject, mail.content_type) == (
        "admin@enterprise46.example",
        ["someone@example.com"],
        "Hello",
        "html",
    )
    assert tenant_id(46) == tid

"""JSON batching: at most 20 requests, each dispatched and throttled on its own."""

from __future__ import annotations

from typing import Any

from sandbox import SandboxServer
from tests.sandbox.helpers import TENANT, GraphClient, new_user_body


def create_request(request_id: str, nickname: str) -> dict[str, Any]:
    return {
        "id": request_id,
        "method": "POST",
        "url": "/users",
        "headers": {"Content-Type": "application/json"},
        "body": new_user_body(nickname),
    }


async def test_batch_of_20_runs_every_request(server: SandboxServer, graph: GraphClient) -> None:
    requests = [create_request(str(i), f"batch{i}") for i in range(19)]
    requests.append({"id": "19", "method": "GET", "url": "/users?$top=5&$select=id"})

    reply = await graph.post("/$batch", {"requests": requests})

    assert reply.status == 200
    responses = {r["id"]: r for r in reply.body["responses"]}
    assert set(responses) == {str(i) for i in range(20)}
    assert all(responses[str(i)]["status"] == 201 for i in range(19))
    assert responses["0"]["body"]["userPrincipalName"] == "batch0@contoso.example"
    listed = responses["19"]
    assert listed["status"] == 200
    assert len(listed["body"]["value"]) == 5
    assert listed["body"]["@odata.nextLink"].startswith(server.graph_url + "/users?")
    stats = server.tenant_stats(TENANT)
    assert stats.count("POST", "/users") == 19
    assert stats.count("POST", "/$batch") == 1
    assert stats.batches == 1


async def test_batch_of_21_is_refused(server: SandboxServer, graph: GraphClient) -> None:
    requests = [{"id": str(i), "method": "GET", "url": "/users"} for i in range(21)]

    reply = await graph.post("/$batch", {"requests": requests})

    assert reply.status == 400
    assert reply.error_code == "BadRequest"
    assert server.tenant_stats(TENANT).count("GET", "/users") == 0


async def test_inner_requests_are_throttled_one_by_one(
    server: SandboxServer, graph: GraphClient
) -> None:
    server.set_throttle(app_write_limit=3, app_write_window=60)
    requests = [create_request(str(i), f"tight{i}") for i in range(5)]
    requests.append({"id": "read", "method": "GET", "url": "/subscribedSkus"})

    reply = await graph.post("/$batch", {"requests": requests})

    assert reply.status == 200
    statuses = {r["id"]: r for r in reply.body["responses"]}
    assert [statuses[str(i)]["status"] for i in range(5)] == [201, 201, 201, 429, 429]
    throttled = statuses["4"]
    assert int(throttled["headers"]["Retry-After"]) >= 1
    assert throttled["body"]["error"]["code"] == "TooManyRequests"
    assert statuses["read"]["status"] == 200
    stats = server.tenant_stats(TENANT)
    assert (stats.writes_accepted, stats.throttled) == (3, 2)


async def test_depends_on_a_failed_request_gives_424(graph: GraphClient) -> None:
    requests = [
        {"id": "1", "method": "GET", "url": "/users/ghost@contoso.example"},
        {"id": "2", "method": "GET", "url": "/subscribedSkus", "dependsOn": ["1"]},
        {"id": "3", "method": "POST", "url": "/users", "body": new_user_body("nohdr")},
    ]

    reply = await graph.post("/$batch", {"requests": requests})

    statuses = {r["id"]: r["status"] for r in reply.body["responses"]}
    assert statuses == {"1": 404, "2": 424, "3": 400}

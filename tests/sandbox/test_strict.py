"""The sandbox is as strict as Graph: permissions from the token's roles, unknown parameters
refused, opaque policy ids per tenant, both envelope forms, synchronous refusals, a 424 batch
envelope, and a Teams configuration that appears only after the licence."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from sandbox import SandboxServer
from tests.sandbox.helpers import (
    ADMIN_ID,
    CLIENT_ID,
    OTHER_TENANT,
    PHONE_SKU,
    TENANT,
    GraphClient,
    fetch_token,
    new_user_body,
)
from tests.sandbox.test_teams import NUMBERS, assign, licensed_user


async def _client_with_roles(server: SandboxServer, roles: list[str]) -> GraphClient:
    server.state.grant_roles(TENANT, CLIENT_ID, roles)
    token = await fetch_token(server)
    session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"})
    return GraphClient(session, server.graph_url)


# Each call, and the permission its reference page names as least privileged.
CALLS = [
    ("GET", "/users", None, "User.Read.All"),
    ("POST", "/users", new_user_body("pam"), "User.ReadWrite.All"),
    ("GET", "/domains", None, "Domain.Read.All"),
    ("GET", "/subscribedSkus", None, "Organization.Read.All"),
    ("GET", "/roleManagement/directory/roleAssignments", None, "RoleManagement.Read.Directory"),
    ("GET", NUMBERS, None, "TeamsTelephoneNumber.Read.All"),
    (
        "GET",
        "/admin/teams/policy/getPolicyId(type='OnlineVoiceRoutingPolicy',name='x')",
        None,
        "TeamsPolicyUserAssign.ReadWrite.All",
    ),
    ("GET", f"/admin/teams/userConfigurations/{ADMIN_ID}", None, "TeamsUserConfiguration.Read.All"),
]


@pytest.mark.parametrize(("method", "path", "body", "permission"), CALLS)
async def test_each_endpoint_needs_its_permission_and_answers_graphs_403_without(
    server: SandboxServer, method: str, path: str, body: object, permission: str
) -> None:
    graph = await _client_with_roles(server, ["Mail.Send"])
    try:
        refused = await graph.call(method, path, json=body)
    finally:
        await graph.session.close()
    assert refused.status == 403
    assert refused.error_code == "Authorization_RequestDenied"
    assert refused.body["error"]["message"] == "Insufficient privileges to complete the operation."
    assert refused.body["error"]["innerError"]["request-id"]

    graph = await _client_with_roles(server, [permission])
    try:
        allowed = await graph.call(method, path, json=body)
    finally:
        await graph.session.close()
    assert allowed.status != 403, allowed.body


async def test_inner_batch_requests_are_checked_one_by_one(server: SandboxServer) -> None:
    graph = await _client_with_roles(server, ["Domain.Read.All"])
    try:
        reply = await graph.post(
            "/$batch",
            {
                "requests": [
                    {"id": "1", "method": "GET", "url": "/domains"},
                    {"id": "2", "method": "GET", "url": "/subscribedSkus"},
                ]
            },
        )
    finally:
        await graph.session.close()
    statuses = {r["id"]: r["status"] for r in reply.body["responses"]}
    assert statuses == {"1": 200, "2": 403}


async def test_unknown_and_missing_parameters_are_refused_by_name(graph: GraphClient) -> None:
    user_id = await licensed_user(graph, "abel")
    unknown = await graph.post(
        f"{NUMBERS}/assignNumber",
        {
            "telephoneNumber": "+442071230101",
            "assignmentTargetId": user_id,
            "numberType": "directRouting",
            "extension": "101",
        },
    )
    assert unknown.status == 400 and "'extension'" in unknown.error_message
    missing = await graph.post(
        f"{NUMBERS}/assignNumber",
        {"telephoneNumber": "+442071230101", "numberType": "directRouting"},
    )
    assert missing.status == 400 and "'assignmentTargetId'" in missing.error_message
    wrong_entry = await graph.post(
        "/admin/teams/policy/userAssignments/assign",
        {"value": [{"userId": user_id, "policyType": "X", "policyId": "y", "policyName": "z"}]},
    )
    assert wrong_entry.status == 400 and "'policyName'" in wrong_entry.error_message


async def test_releasing_a_number_nobody_holds_is_refused_at_once(graph: GraphClient) -> None:
    reply = await graph.post(
        f"{NUMBERS}/unassignNumber",
        {"telephoneNumber": "+442071230102", "numberType": "directRouting"},
    )
    assert reply.status == 404 and reply.error_code == "NotFound"
    assert "not assigned" in reply.error_message


async def test_policy_ids_are_opaque_and_differ_per_tenant(server: SandboxServer) -> None:
    here = server.state.add_policy(TENANT, "OnlineVoiceRoutingPolicy", "PBX")
    there = server.state.add_policy(OTHER_TENANT, "OnlineVoiceRoutingPolicy", "PBX")
    assert here.policy_id != there.policy_id and "PBX" not in here.policy_id
    server.state.remove_policy(TENANT, "OnlineVoiceRoutingPolicy", "PBX")
    again = server.state.add_policy(TENANT, "OnlineVoiceRoutingPolicy", "PBX")
    assert again.policy_id != here.policy_id  # recreated: a new id


@pytest.mark.parametrize("wrapped", [False, True])
async def test_user_configurations_and_operations_in_either_envelope(
    server: SandboxServer, graph: GraphClient, wrapped: bool
) -> None:
    server.config.wrap_entities = wrapped
    user_id = await licensed_user(graph, "cleo")
    location = await assign(graph, "+442071230103", user_id)
    await asyncio.sleep(server.config.operation_delay_seconds * 2)

    operation = (await graph.get(location)).body
    config = (await graph.get(f"/admin/teams/userConfigurations/{user_id}")).body

    if wrapped:
        assert set(operation) == {"@odata.context", "value"} and set(config) == set(operation)
        operation, config = operation["value"], config["value"]
    assert operation["status"] == "succeeded"
    assert config["id"] == user_id and config["telephoneNumbers"]


async def test_a_batch_holding_a_throttled_request_answers_424(
    server: SandboxServer, graph: GraphClient
) -> None:
    server.config.batch_failed_dependency = True
    server.set_throttle(app_write_limit=2, app_write_window=60)
    requests = [
        {
            "id": str(i),
            "method": "POST",
            "url": "/users",
            "body": new_user_body(f"batch{i}"),
            "headers": {"Content-Type": "application/json"},
        }
        for i in range(4)
    ]

    reply = await graph.post("/$batch", {"requests": requests})

    assert reply.status == 424 and int(reply.headers["Retry-After"]) >= 1
    statuses = [r["status"] for r in sorted(reply.body["responses"], key=lambda r: r["id"])]
    assert statuses == [201, 201, 429, 424]


async def test_teams_knows_a_user_only_some_time_after_the_licence(
    server: SandboxServer, graph: GraphClient
) -> None:
    server.config.teams_setup_delay_seconds = 0.3
    user_id = await graph.create_user("dora", usageLocation="GB")
    path = f"/admin/teams/userConfigurations/{user_id}"
    assert (await graph.get(path)).status == 404
    body = {"addLicenses": [{"skuId": PHONE_SKU}], "removeLicenses": []}
    assert (await graph.post(f"/users/{user_id}/assignLicense", body)).status == 200
    assert (await graph.get(path)).status == 404

    for _ in range(100):
        if (await graph.get(path)).status == 200:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the Teams configuration never appeared")


async def test_domains_and_transitive_group_membership(
    server: SandboxServer, graph: GraphClient
) -> None:
    inner = server.state.add_group(TENANT, "Inner", [ADMIN_ID])
    outer = server.state.add_group(TENANT, "Outer", [inner.id])
    lonely = server.state.add_group(TENANT, "Lonely")

    domains = await graph.get("/domains")
    member_of = await graph.post(
        f"/users/{ADMIN_ID}/checkMemberGroups", {"groupIds": [outer.id, lonely.id]}
    )

    assert [(d["id"], d["isVerified"]) for d in domains.body["value"]] == [
        ("contoso.example", True)
    ]
    assert member_of.body["value"] == [outer.id]


async def test_licence_and_mail_bodies_with_unknown_parameters_are_refused(
    graph: GraphClient,
) -> None:
    user_id = await graph.create_user("eve", usageLocation="GB")
    licence = await graph.post(
        f"/users/{user_id}/assignLicense",
        {"addLicenses": [{"skuId": PHONE_SKU}], "removeLicenses": [], "licences": []},
    )
    assert licence.status == 400 and "'licences'" in licence.error_message
    mail = await graph.post(
        f"/users/{ADMIN_ID}/sendMail",
        {"message": {"toRecipients": [{"emailAddress": {"address": "a@b.example"}}]}, "cc": []},
    )
    assert mail.status == 400 and "'cc'" in mail.error_message
    pascal = await graph.post(
        f"/users/{ADMIN_ID}/sendMail",
        {"Message": {"toRecipients": [{"emailAddress": {"address": "a@b.example"}}]}},
    )
    assert pascal.status == 202  # the metadata's own spelling

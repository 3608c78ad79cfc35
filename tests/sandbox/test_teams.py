"""Teams numbers are assigned asynchronously; the outcome shows in the user's configuration."""

from __future__ import annotations

from sandbox import SandboxServer
from tests.sandbox.helpers import PHONE_SKU, TENANT, GraphClient

NUMBERS = "/admin/teams/telephoneNumberManagement/numberAssignments"


async def licensed_user(graph: GraphClient, nickname: str) -> str:
    """A user with a usage location and a Teams Phone licence."""
    user_id = await graph.create_user(nickname, usageLocation="GB")
    body = {"addLicenses": [{"skuId": PHONE_SKU}], "removeLicenses": []}
    assert (await graph.post(f"/users/{user_id}/assignLicense", body)).status == 200
    return user_id


async def assign(graph: GraphClient, number: str, user_id: str) -> str:
    """Order a number for a user; return the operation's Location."""
    reply = await graph.post(
        f"{NUMBERS}/assignNumber",
        {
            "telephoneNumber": number,
            "assignmentTargetId": user_id,
            "numberType": "directRouting",
            "assignmentCategory": "primary",
        },
    )
    assert reply.status == 202, reply.body
    assert reply.body is None
    return reply.headers["Location"]


async def test_assign_number_runs_as_an_operation_and_updates_teams_config(
    server: SandboxServer, graph: GraphClient
) -> None:
    server.config.operation_delay_seconds = 0.2
    user_id = await licensed_user(graph, "lena")

    location = await assign(graph, "+442071234567", user_id)

    assert location.startswith(
        f"{server.graph_url}/admin/teams/telephoneNumberManagement/operations/"
    )
    operation = await graph.wait_for_operation(location)
    assert operation["status"] == "succeeded"
    assert operation["_seen"][0] in ("notStarted", "running")
    (detail,) = operation["numbers"]
    assert detail["status"] == "succeeded"
    assert "/numberAssignments/" in detail["resourceLocation"]

    config = await graph.get(f"/admin/teams/userConfigurations/{user_id}")
    assert config.status == 200
    assert config.body["isEnterpriseVoiceEnabled"] is True
    assert config.body["telephoneNumbers"] == [
        {"telephoneNumber": "+442071234567", "assignmentCategory": "primary"}
    ]
    by_number = await graph.get(NUMBERS, params={"$filter": "telephoneNumber eq '+442071234567'"})
    by_user = await graph.get(NUMBERS, params={"$filter": f"assignmentTargetId eq '{user_id}'"})
    assert [n["assignmentTargetId"] for n in by_number.body["value"]] == [user_id]
    assert [n["telephoneNumber"] for n in by_user.body["value"]] == ["+442071234567"]
    assert by_user.body["value"][0]["assignmentStatus"] == "userAssigned"


async def test_number_held_by_another_user_is_refused_at_once(graph: GraphClient) -> None:
    first = await licensed_user(graph, "mona")
    second = await licensed_user(graph, "ned")
    assert (await graph.wait_for_operation(await assign(graph, "+442071230002", first)))[
        "status"
    ] == "succeeded"

    refused = await graph.post(
        f"{NUMBERS}/assignNumber",
        {
            "telephoneNumber": "+442071230002",
            "assignmentTargetId": second,
            "numberType": "directRouting",
        },
    )

    assert refused.status == 400 and refused.error_code == "BadRequest"
    assert "already assigned to another user" in refused.error_message
    holder = await graph.get(NUMBERS, params={"$filter": "telephoneNumber eq '+442071230002'"})
    assert holder.body["value"][0]["assignmentTargetId"] == first
    second_config = await graph.get(f"/admin/teams/userConfigurations/{second}")
    assert second_config.body["telephoneNumbers"] == []


async def test_racing_orders_for_one_number_let_only_the_first_win(graph: GraphClient) -> None:
    first = await licensed_user(graph, "olga")
    second = await licensed_user(graph, "pete")

    first_location = await assign(graph, "+442071230003", first)
    second_location = await assign(graph, "+442071230003", second)

    assert (await graph.wait_for_operation(second_location))["status"] == "failed"
    assert (await graph.wait_for_operation(first_location))["status"] == "succeeded"


async def test_assigning_the_same_number_again_ends_in_the_metadatas_sentinel_status(
    graph: GraphClient,
) -> None:
    # The reference page's prose calls this outcome `skipped`; the v1.0 metadata's
    # longRunningOperationStatus has no such member, so it goes out as unknownFutureValue.
    user_id = await licensed_user(graph, "quinn")
    await graph.wait_for_operation(await assign(graph, "+442071230004", user_id))

    again = await graph.wait_for_operation(await assign(graph, "+442071230004", user_id))

    assert again["status"] == "unknownFutureValue"
    assert again["numbers"][0]["status"] == "succeeded"
    config = await graph.get(f"/admin/teams/userConfigurations/{user_id}")
    assert len(config.body["telephoneNumbers"]) == 1


async def test_user_without_a_phone_licence_cannot_get_a_number(graph: GraphClient) -> None:
    user_id = await graph.create_user("rita", usageLocation="GB")

    operation = await graph.wait_for_operation(await assign(graph, "+442071230005", user_id))

    assert operation["status"] == "failed"
    assert "licence" in operation["numbers"][0]["statusDetail"]


async def test_unassign_frees_the_number(graph: GraphClient) -> None:
    user_id = await licensed_user(graph, "sven")
    await graph.wait_for_operation(await assign(graph, "442071230006", user_id))

    reply = await graph.post(
        f"{NUMBERS}/unassignNumber",
        {"telephoneNumber": "+442071230006", "numberType": "directRouting"},
    )
    assert reply.status == 202
    assert (await graph.wait_for_operation(reply.headers["Location"]))["status"] == "succeeded"

    config = await graph.get(f"/admin/teams/userConfigurations/{user_id}")
    assert config.body["telephoneNumbers"] == []
    listed = await graph.get(NUMBERS, params={"$filter": "telephoneNumber eq '+442071230006'"})
    assert listed.body["value"] == []


async def test_update_number_sets_the_emergency_location(
    server: SandboxServer, graph: GraphClient
) -> None:
    server.state.add_number(TENANT, "+442071230007")

    reply = await graph.post(
        f"{NUMBERS}/updateNumber", {"telephoneNumber": "+442071230007", "locationId": "loc-1"}
    )

    assert reply.status == 200
    listed = await graph.get(NUMBERS, params={"$filter": "telephoneNumber eq '+442071230007'"})
    assert listed.body["value"][0]["locationId"] == "loc-1"
    missing = await graph.post(f"{NUMBERS}/updateNumber", {"telephoneNumber": "+15550000000"})
    assert missing.status == 404


async def test_bad_orders_are_refused_at_once(graph: GraphClient) -> None:
    user_id = await licensed_user(graph, "tara")
    base = {"assignmentTargetId": user_id, "numberType": "directRouting"}

    assert (await graph.post(f"{NUMBERS}/assignNumber", base)).status == 400
    not_a_number = {**base, "telephoneNumber": "call me"}
    assert (await graph.post(f"{NUMBERS}/assignNumber", not_a_number)).status == 400
    wrong_type = {**base, "telephoneNumber": "+442071230008", "numberType": "carrierPigeon"}
    assert (await graph.post(f"{NUMBERS}/assignNumber", wrong_type)).status == 400


async def test_number_list_pages_up_to_1000(server: SandboxServer, graph: GraphClient) -> None:
    for index in range(1200):
        server.state.add_number(TENANT, f"+4420700{index:05d}")

    first = await graph.get(NUMBERS, params={"$top": "1000"})
    second = await graph.get(first.body["@odata.nextLink"])

    assert len(first.body["value"]) == 1000
    assert len(second.body["value"]) == 200
    assert "@odata.nextLink" not in second.body
    numbers = {n["telephoneNumber"] for n in first.body["value"] + second.body["value"]}
    assert len(numbers) == 1200
    assert (await graph.get(NUMBERS, params={"$top": "1001"})).status == 400
    default = await graph.get(NUMBERS)
    assert len(default.body["value"]) == 500


async def test_policy_assignment_shows_in_effective_policies(
    server: SandboxServer, graph: GraphClient
) -> None:
    user_id = await licensed_user(graph, "uma")
    policy = server.state.add_policy(TENANT, "TeamsCallingPolicy", "AllowCalling")
    found = await graph.get(
        "/admin/teams/policy/getPolicyId(type='TeamsCallingPolicy',name='AllowCalling')"
    )
    assert found.status == 200
    assert [d["policyId"] for d in found.body["value"]] == [policy.policy_id]

    reply = await graph.post(
        "/admin/teams/policy/userAssignments/assign",
        {
            "value": [
                {
                    "@odata.type": "#microsoft.graph.teamsAdministration.teamsPolicyUserAssignment",
                    "userId": user_id,
                    "policyType": "TeamsCallingPolicy",
                    "policyId": policy.policy_id,
                }
            ]
        },
    )

    assert reply.status == 204
    config = await graph.get(f"/admin/teams/userConfigurations/{user_id}")
    assert config.body["effectivePolicyAssignments"] == [
        {
            "policyType": "TeamsCallingPolicy",
            "policyAssignment": {
                "displayName": "AllowCalling",
                "assignmentType": "direct",
                "policyId": policy.policy_id,
                "groupId": None,
            },
        }
    ]
    unknown = await graph.post(
        "/admin/teams/policy/userAssignments/assign",
        {"value": [{"userId": user_id, "policyType": "TeamsCallingPolicy", "policyId": "p"}]},
    )
    assert unknown.status == 404
    by_name = await graph.post(
        "/admin/teams/policy/userAssignments/assign",
        {
            "value": [
                {"userId": user_id, "policyType": "TeamsCallingPolicy", "policyId": "AllowCalling"}
            ]
        },
    )
    assert by_name.status == 404  # a name is not an id


async def test_deleting_a_user_frees_licence_and_number(
    server: SandboxServer, graph: GraphClient
) -> None:
    user_id = await licensed_user(graph, "vera")
    await graph.wait_for_operation(await assign(graph, "+442071230009", user_id))

    assert (await graph.call("DELETE", f"/users/{user_id}")).status == 204

    assert (await graph.get(f"/users/{user_id}")).status == 404
    listed = await graph.get(NUMBERS, params={"$filter": "telephoneNumber eq '+442071230009'"})
    assert listed.body["value"] == []
    (sku,) = (await graph.get("/subscribedSkus")).body["value"]
    assert sku["consumedUnits"] == 0


async def test_batched_filter_on_a_number(graph: GraphClient) -> None:
    user_id = await licensed_user(graph, "walt")
    await graph.wait_for_operation(await assign(graph, "+442071230010", user_id))
    url = f"{NUMBERS}?$filter=telephoneNumber eq '%2B442071230010'"

    reply = await graph.post("/$batch", {"requests": [{"id": "n", "method": "GET", "url": url}]})

    (inner,) = reply.body["responses"]
    assert inner["status"] == 200
    assert [n["assignmentTargetId"] for n in inner["body"]["value"]] == [user_id]

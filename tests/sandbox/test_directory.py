"""Users, licences, SKUs and directory roles behave like Graph's, in Graph's JSON shapes."""

from __future__ import annotations

from sandbox import GLOBAL_ADMIN_ROLE_ID, SandboxServer
from tests.sandbox.helpers import ADMIN_ID, PHONE_SKU, TENANT, GraphClient, new_user_body


async def test_create_then_get_by_id_and_by_upn(graph: GraphClient) -> None:
    reply = await graph.post("/users", new_user_body("bob", mail="bob@contoso.example"))

    assert reply.status == 201
    assert reply.body["userPrincipalName"] == "bob@contoso.example"
    assert "passwordProfile" not in reply.body
    user_id = reply.body["id"]
    by_id = await graph.get(f"/users/{user_id}")
    by_upn = await graph.get("/users/BOB@contoso.example")
    assert by_id.status == by_upn.status == 200
    assert by_id.body["id"] == by_upn.body["id"] == user_id
    assert by_id.body["displayName"] == "Bob"


async def test_duplicate_upn_is_refused_like_graph(graph: GraphClient) -> None:
    await graph.create_user("carol")

    reply = await graph.post("/users", new_user_body("carol"))

    assert reply.status == 400
    assert reply.error_code == "Request_BadRequest"
    assert reply.error_message == (
        "Another object with the same value for property userPrincipalName already exists."
    )


async def test_missing_required_property_is_a_400_naming_it(graph: GraphClient) -> None:
    for missing in (
        "accountEnabled",
        "displayName",
        "mailNickname",
        "userPrincipalName",
        "passwordProfile",
    ):
        body = new_user_body("dave")
        del body[missing]
        reply = await graph.post("/users", body)
        assert reply.status == 400, missing
        assert missing in reply.error_message

    weak = new_user_body("dave", passwordProfile={"password": "short"})
    assert (await graph.post("/users", weak)).status == 400
    foreign = new_user_body("dave", userPrincipalName="dave@elsewhere.example")
    assert "verified domain" in (await graph.post("/users", foreign)).error_message


async def test_unknown_user_is_a_404_with_odata_error_and_request_ids(graph: GraphClient) -> None:
    reply = await graph.get(
        "/users/nobody@contoso.example", headers={"client-request-id": "abc-123"}
    )

    assert reply.status == 404
    assert reply.error_code == "Request_ResourceNotFound"
    inner = reply.body["error"]["innerError"]
    assert inner["client-request-id"] == "abc-123"
    assert inner["request-id"] == reply.headers["request-id"]
    assert reply.headers["client-request-id"] == "abc-123"
    assert inner["date"]


async def test_filter_by_upn_and_by_mail(graph: GraphClient) -> None:
    await graph.create_user("erin", mail="erin@contoso.example")
    await graph.create_user("frank", mail="frank.f@contoso.example")

    by_upn = await graph.get(
        "/users", params={"$filter": "userPrincipalName eq 'erin@contoso.example'"}
    )
    by_mail = await graph.get("/users", params={"$filter": "mail eq 'frank.f@contoso.example'"})
    nobody = await graph.get("/users", params={"$filter": "mail eq 'ghost@contoso.example'"})

    assert [u["userPrincipalName"] for u in by_upn.body["value"]] == ["erin@contoso.example"]
    assert [u["userPrincipalName"] for u in by_mail.body["value"]] == ["frank@contoso.example"]
    assert nobody.body["value"] == []
    bad = await graph.get("/users", params={"$filter": "startswith(displayName,'E')"})
    assert bad.status == 400


async def test_top_and_next_link_page_through_every_user(graph: GraphClient) -> None:
    for index in range(6):
        await graph.create_user(f"user{index}")

    seen: list[str] = []
    url: str | None = "/users"
    params: dict[str, str] | None = {"$top": "3", "$select": "id,userPrincipalName"}
    pages = 0
    while url:
        reply = await graph.get(url, params=params)
        assert reply.status == 200
        assert len(reply.body["value"]) <= 3
        seen += [user["userPrincipalName"] for user in reply.body["value"]]
        url, params = reply.body.get("@odata.nextLink"), None
        pages += 1

    assert pages == 3  # 7 users (admin + 6) in pages of 3
    assert len(seen) == len(set(seen)) == 7
    assert (await graph.get("/users", params={"$top": "1000"})).status == 400


async def test_patch_sets_usage_location_visible_through_select(graph: GraphClient) -> None:
    user_id = await graph.create_user("gina")

    assert (await graph.patch(f"/users/{user_id}", {"usageLocation": "GB"})).status == 204

    default = await graph.get(f"/users/{user_id}")
    selected = await graph.get(f"/users/{user_id}", params={"$select": "id,usageLocation"})
    assert "usageLocation" not in default.body
    assert selected.body["usageLocation"] == "GB"
    assert (await graph.patch(f"/users/{user_id}", {"usageLocation": "Britain"})).status == 400
    assert (await graph.patch(f"/users/{user_id}", {"id": "x"})).status == 400


async def test_assign_license_needs_usage_location_then_takes_a_unit(
    server: SandboxServer, graph: GraphClient
) -> None:
    user_id = await graph.create_user("hank")
    body = {"addLicenses": [{"skuId": PHONE_SKU, "disabledPlans": []}], "removeLicenses": []}

    refused = await graph.post(f"/users/{user_id}/assignLicense", body)
    assert refused.status == 400
    assert refused.error_message == (
        "License assignment cannot be done for user with invalid usage location."
    )

    await graph.patch(f"/users/{user_id}", {"usageLocation": "US"})
    accepted = await graph.post(f"/users/{user_id}/assignLicense", body)
    assert accepted.status == 200
    assert accepted.body["id"] == user_id

    user = await graph.get(f"/users/{user_id}", params={"$select": "assignedLicenses"})
    assert user.body["assignedLicenses"] == [{"disabledPlans": [], "skuId": PHONE_SKU}]
    skus = await graph.get("/subscribedSkus")
    (sku,) = skus.body["value"]
    assert (sku["skuId"], sku["skuPartNumber"]) == (PHONE_SKU, "MCOEV")
    assert (sku["prepaidUnits"]["enabled"], sku["consumedUnits"]) == (5, 1)


async def test_assign_license_fails_when_the_pool_is_empty(
    server: SandboxServer, graph: GraphClient
) -> None:
    server.state.add_sku(TENANT, PHONE_SKU, "MCOEV", enabled_units=1)
    body = {"addLicenses": [{"skuId": PHONE_SKU}], "removeLicenses": []}
    first = await graph.create_user("ivy", usageLocation="GB")
    second = await graph.create_user("jack", usageLocation="GB")

    assert (await graph.post(f"/users/{first}/assignLicense", body)).status == 200
    refused = await graph.post(f"/users/{second}/assignLicense", body)

    assert refused.status == 400
    assert "does not have any available licenses" in refused.error_message
    release = {"addLicenses": [], "removeLicenses": [PHONE_SKU]}
    assert (await graph.post(f"/users/{first}/assignLicense", release)).status == 200
    assert (await graph.post(f"/users/{second}/assignLicense", body)).status == 200


async def test_global_administrator_check(server: SandboxServer, graph: GraphClient) -> None:
    someone = await graph.create_user("kim")

    def query(principal: str) -> dict[str, str]:
        return {
            "$filter": f"principalId eq '{principal}' and roleDefinitionId eq '{GLOBAL_ADMIN_ROLE_ID}'"
        }

    admin = await graph.get("/roleManagement/directory/roleAssignments", params=query(ADMIN_ID))
    other = await graph.get("/roleManagement/directory/roleAssignments", params=query(someone))
    assert [a["principalId"] for a in admin.body["value"]] == [ADMIN_ID]
    assert other.body["value"] == []

    server.state.add_global_admin(TENANT, "kim@contoso.example")
    other = await graph.get("/roleManagement/directory/roleAssignments", params=query(someone))
    assert len(other.body["value"]) == 1

"""The contract: Microsoft's v1.0 metadata judges what Switchboard sends to Graph, what the
sandbox answers, and which answer fields the client reads. The checker itself is tested
first: a request outside the metadata fails with the offending segment or property."""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import SandboxServer
from services.graph import GraphOperations, GraphService, VerifiedDomains
from services.graph.operations import READERS, TeamsUser, read_operation
from services.graph.preflight import preflight
from tests.graph_contract import (
    ExchangeRecorder,
    ReadTracker,
    contract_problems,
    inner_exchanges,
    metadata,
    property_path_exists,
    unwrap_entity,
)
from tests.provisioning_kit import (
    ESSENTIALS_SKU,
    POLICY,
    admin_object_id,
    cloud_fixture,  # noqa: F401
    graph_settings,
    sandbox_server_fixture,  # noqa: F401
    seed_tenant,
)

NUMBERS = "/v1.0/admin/teams/telephoneNumberManagement/numberAssignments"
ASSIGN = {
    "telephoneNumber": "+442071230001",
    "assignmentTargetId": "u1",
    "numberType": "directRouting",
    "assignmentCategory": "primary",
}


# --- the checker names what is wrong ----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "body", "named"),
    [
        ("GET", "/v1.0/admin/teams/numbers", None, "segment 'numbers'"),
        ("GET", "/v1.0/people/abc", None, "segment 'people'"),
        ("POST", f"{NUMBERS}/assignNumbers", ASSIGN, "segment 'assignNumbers'"),
        ("POST", f"{NUMBERS}/assignNumber", {**ASSIGN, "extension": "1"}, "'extension'"),
        (
            "POST",
            f"{NUMBERS}/assignNumber",
            {k: v for k, v in ASSIGN.items() if k != "numberType"},
            "'numberType' is required",
        ),
        (
            "POST",
            f"{NUMBERS}/assignNumber",
            {**ASSIGN, "numberType": "DirectRouting"},
            "'DirectRouting' is not a member of microsoft.graph.teamsAdministration.numberType",
        ),
        ("GET", "/v1.0/users/u1?$select=id,phone", None, "no property 'phone'"),
        ("GET", f"{NUMBERS}?$filter=number eq '+44'", None, "no property 'number'"),
        (
            "POST",
            "/v1.0/users",
            {"displayName": "A", "mobile": "+44"},
            "body.mobile: no property 'mobile'",
        ),
        (
            "POST",
            "/v1.0/users/u1/assignLicense",
            {"addLicenses": [{"skuId": "not-a-guid"}], "removeLicenses": []},
            "assignLicense.addLicenses[0].skuId",
        ),
        (
            "GET",
            "/v1.0/admin/teams/policy/getPolicyId(type='OnlineVoiceRoutingPolicy')",
            None,
            "parameter 'name' is required",
        ),
        ("PUT", f"{NUMBERS}/assignNumber", ASSIGN, "called with PUT, not POST"),
    ],
)
def test_a_request_outside_the_metadata_is_named(
    method: str, url: str, body: Any, named: str
) -> None:
    problems = metadata().check_request(method, url, body)
    assert any(named in problem for problem in problems), problems


def test_what_switchboard_sends_is_in_the_metadata() -> None:
    meta = metadata()
    assert meta.check_request("POST", f"{NUMBERS}/assignNumber", ASSIGN) == []
    assert (
        meta.check_request(
            "GET",
            "/v1.0/admin/teams/policy/getPolicyId(type='OnlineVoiceRoutingPolicy',name='x')",
            None,
        )
        == []
    )
    assert meta.check_request("POST", "/v1.0/users/u1/checkMemberGroups", {"groupIds": []}) == []
    assert meta.check_request("GET", "/v1.0/domains", None) == []


def test_an_answer_outside_the_metadata_is_named() -> None:
    meta = metadata()
    operation = "/v1.0/admin/teams/telephoneNumberManagement/operations/op1"
    skipped = {"id": "op1", "createdDateTime": "x", "status": "skipped", "numbers": []}
    assert meta.check_response("GET", operation, 200, skipped) == [
        "response.status: 'skipped' is not a member of microsoft.graph.longRunningOperationStatus"
    ]
    wrapped = {"value": {**skipped, "status": "running"}}
    assert meta.check_response("GET", operation, 200, wrapped) == []
    assert meta.check_response("GET", operation, 404, {"error": {"code": "x"}}) == [
        "response: an error answer needs error.code and error.message"
    ]


_NAMES = st.text(alphabet=string.ascii_letters, min_size=1, max_size=12)


@given(extra=_NAMES)
@settings(max_examples=50, deadline=None)
def test_any_undeclared_action_parameter_is_named(extra: str) -> None:
    declared = {"telephonenumber", "assignmenttargetid", "numbertype", "assignmentcategory"}
    body = {**ASSIGN, extra: "x"}
    problems = metadata().check_request("POST", f"{NUMBERS}/assignNumber", body)
    if extra.lower() in declared | {"locationid"}:
        return  # a declared name (matched without regard to case)
    assert f"action 'assignNumber': no parameter '{extra}'" in problems


@given(path=st.lists(_NAMES, min_size=1, max_size=4))
@settings(max_examples=80, deadline=None)
def test_every_unresolvable_path_names_a_segment(path: list[str]) -> None:
    resolved = metadata().resolve("/" + "/".join(path))
    if resolved.problems:
        assert any("segment '" in p for p in resolved.problems)


# --- the client's envelope readers (Hypothesis) -----------------------------------------------

_TEXT = st.text(min_size=1, max_size=20)
_CONFIG = st.fixed_dictionaries(
    {
        "id": _TEXT,
        "isEnterpriseVoiceEnabled": st.booleans(),
        "telephoneNumbers": st.lists(
            st.fixed_dictionaries(
                {
                    "telephoneNumber": _TEXT,
                    "assignmentCategory": st.sampled_from(["primary", "private", "alternate"]),
                }
            ),
            max_size=3,
        ),
        "effectivePolicyAssignments": st.lists(
            st.fixed_dictionaries(
                {
                    "policyType": _TEXT,
                    "policyAssignment": st.fixed_dictionaries(
                        {
                            "policyId": _TEXT,
                            "displayName": _TEXT,
                            "assignmentType": st.just("direct"),
                        }
                    ),
                }
            ),
            max_size=3,
        ),
    }
)


@given(body=_CONFIG)
@settings(max_examples=100, deadline=None)
def test_a_user_configuration_reads_the_same_bare_or_wrapped(body: dict[str, Any]) -> None:
    bare = TeamsUser.from_json(body)
    wrapped = TeamsUser.from_json({"@odata.context": "x", "value": body})
    assert bare == wrapped
    assert set(bare.numbers) == {n["telephoneNumber"] for n in body["telephoneNumbers"]}


@given(status=st.text(max_size=20), wrapped=st.booleans(), detail=st.none() | _TEXT)
@settings(max_examples=150, deadline=None)
def test_every_operation_status_either_waits_or_ends(
    status: str, wrapped: bool, detail: str | None
) -> None:
    body: dict[str, Any] = {"id": "op", "status": status, "numbers": [{"statusDetail": detail}]}
    outcome = read_operation({"value": body} if wrapped else body)
    if status in ("notStarted", "running"):
        assert outcome is None
        return
    assert outcome is not None
    if status in ("succeeded", "skipped", "failed"):
        assert outcome.status == status and outcome.detail == detail
    else:
        assert outcome.status == "unknown" and not outcome.ok
        assert f"'{status or 'nothing'}'" in (outcome.detail or "")


# --- client and sandbox together ------------------------------------------------------------


async def _scenario(cloud: SandboxServer, recorder: ExchangeRecorder) -> None:
    """The sync's calls, once each, against the sandbox, with a recorder on the client."""
    tid = seed_tenant(cloud, 71)
    other = cloud.state.add_user(
        tid, "holder@enterprise71.example", "Holder", usage_location="GB", licenses=[ESSENTIALS_SKU]
    )
    cloud.state.add_number(tid, "+442071239971", assignment_target_id=other.id)
    group = cloud.state.add_group(tid, "Admins", [other.id])
    cloud.state.add_global_admin(tid, group.id)
    service = GraphService(graph_settings(cloud), trace_configs=[recorder.trace])
    ops = GraphOperations(service.tenant(tid), poll_seconds=0.01)
    try:
        user, _ = await ops.create_user(
            display_name="Nia",
            user_principal_name="nia@enterprise71.example",
            usage_location="GB",
            password="Xy7!pass-word",
        )
        await ops.update_user(user.id, {"displayName": "Nia N"})
        await ops.set_licences(user.id, [ESSENTIALS_SKU], [])
        assert await ops.find_user(user.id)
        assert (await ops.assign_number("+442071230071", user.id)).ok
        assert (await ops.assign_number("+442071230071", user.id)).ok
        assert not (await ops.assign_number("+442071239971", user.id)).ok
        assert await ops.teams_user(user.id)
        policy_id = await ops.policy_id("OnlineVoiceRoutingPolicy", POLICY)
        assert policy_id
        await ops.assign_policy(user.id, "OnlineVoiceRoutingPolicy", policy_id)
        teams = await ops.teams_user(user.id)
        assert teams is not None and teams.policy("OnlineVoiceRoutingPolicy") == policy_id
        assert (await ops.unassign_number("+442071230071")).ok
        assert (await ops.unassign_number("+442071230071")).ok  # nobody holds it now
        assert await ops.is_global_admin(admin_object_id(71))
        assert await ops.is_global_admin(other.id)  # through the group
        assert not await ops.is_global_admin(user.id)
        await ops.send_mail("admin@enterprise71.example", "x@example.com", "Hi", "<p>Hi</p>")
        await VerifiedDomains(service)(tid, "nia@enterprise71.example")
        assert await preflight(service, graph_settings(cloud), tid)
    finally:
        await service.close()


@pytest.mark.parametrize("wrapped", [False, True], ids=["bare", "wrapped"])
async def test_client_and_sandbox_agree_with_the_metadata(
    cloud: SandboxServer, wrapped: bool
) -> None:
    cloud.config.wrap_entities = wrapped
    recorder = ExchangeRecorder()
    await _scenario(cloud, recorder)
    exchanges = list(inner_exchanges(recorder.take()))

    assert contract_problems(exchanges) == []
    seen = {(e.method, e.url.split("/v1.0", 1)[1].split("?")[0].split("(")[0]) for e in exchanges}
    assert len(seen) >= 12  # the scenario really covered the sync's calls


async def test_every_field_the_client_reads_exists_in_the_metadata(cloud: SandboxServer) -> None:
    recorder = ExchangeRecorder()
    await _scenario(cloud, recorder)
    meta = metadata()
    read: dict[str, set[str]] = {}
    for exchange in inner_exchanges(recorder.take()):
        if not 200 <= exchange.status < 300 or exchange.response_body is None:
            continue
        type_name = meta.response_type(exchange.method, exchange.url)
        if type_name is None:
            continue
        element = type_name[11:-1] if type_name.startswith("Collection(") else type_name
        reader = READERS.get(element)
        if reader is None:
            continue
        body = exchange.response_body
        items = body.get("value") if type_name.startswith("Collection(") else [unwrap_entity(body)]
        for item in items or []:
            reads = read.setdefault(element, set())
            reader(ReadTracker(item, "", reads))

    assert set(read) == set(READERS), "the scenario must reach every reader"
    # `value` at the top is the readers' look for the documented envelope, not a property.
    missing = [
        f"{type_name}.{path}"
        for type_name, paths in read.items()
        for path in sorted(paths - {"value"})
        if not property_path_exists(meta, type_name, path)
    ]
    assert missing == []
    assert "policyAssignment.policyId" in {
        p.split(".", 1)[1]
        for p in read["microsoft.graph.teamsAdministration.teamsUserConfiguration"]
        if p.startswith("effectivePolicyAssignments.")
    }

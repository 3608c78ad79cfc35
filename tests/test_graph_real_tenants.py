"""What real tenants do that the first sandbox did not: wrapped answers, synchronous refusals,
statuses the metadata calls unknownFutureValue, 424 batch envelopes, voice routing policies
known by name, Global Administrators through groups, and a Teams configuration that appears
only some time after the licence."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, update

from sandbox import SandboxServer
from services.container import Services
from services.domain import ProvisioningStatus, SyncStatus
from services.errors import PermissionDeniedError
from services.graph import GlobalAdminCheck, GraphOperations
from services.models import User
from tests.provisioning_kit import (
    CLIENT_ID,
    ESSENTIALS_SKU,
    POLICY,
    SQLITE_ONLY,
    admin_object_id,
    cloud_fixture,  # noqa: F401
    composed,
    global_admin,
    graph_service,
    graph_settings,
    make_enterprise,
    running_engines,
    sandbox_server_fixture,  # noqa: F401
    seed_tenant,
    settings_with,
    sync_settings,
    voice_policy_id,
    wait_for_run,
)
from tests.test_graph_client import (
    ScriptedGraph,
    scripted_fixture,  # noqa: F401
    scripted_service,
)

OPERATIONS = "/admin/teams/telephoneNumberManagement/operations"
NUMBERS = "/admin/teams/telephoneNumberManagement/numberAssignments"


async def _users(services: Services, enterprise_id: int) -> list[User]:
    async with services.db.unit_of_work(readonly=True) as uow:
        rows = list(
            (
                await uow.session.execute(
                    select(User).where(User.enterprise_id == enterprise_id).order_by(User.email)
                )
            ).scalars()
        )
        uow.session.expunge_all()
        return rows


# --- envelopes ------------------------------------------------------------------------------


@SQLITE_ONLY
@pytest.mark.parametrize("wrapped", [False, True], ids=["bare", "wrapped"])
async def test_a_sync_succeeds_whichever_envelope_teams_answers_in(
    services: Services, cloud: SandboxServer, wrapped: bool
) -> None:
    cloud.config.wrap_entities = wrapped
    tid = seed_tenant(cloud, 81)
    ent = await make_enterprise(services, 81, users=4)
    run, _ = await services.syncs.request(global_admin(ent, 81), ent)

    async with running_engines(services, settings_with(services, cloud)):
        finished = await wait_for_run(services, run.id)

    assert finished.status is SyncStatus.SUCCEEDED
    users = await _users(services, ent)
    assert {u.provisioning_status for u in users} == {ProvisioningStatus.PROVISIONED}
    # Each number was ordered once: the wrapped configuration was read, not seen as empty.
    assert cloud.tenant_stats(tid).count("POST", f"{NUMBERS}/assignNumber") == 4


# --- synchronous refusals -------------------------------------------------------------------


@SQLITE_ONLY
async def test_a_number_another_account_holds_fails_the_user_saying_who_holds_it(
    services: Services, cloud: SandboxServer
) -> None:
    tid = seed_tenant(cloud, 82)
    ent = await make_enterprise(services, 82, users=1)
    page = await services.directory.page(ent, page_size=10)
    number = page.items[0].number
    assert number
    holder = cloud.state.add_user(
        tid, "reception@enterprise82.example", "Reception", licenses=[ESSENTIALS_SKU]
    )
    cloud.state.add_number(tid, number, assignment_target_id=holder.id)
    run, _ = await services.syncs.request(global_admin(ent, 82), ent)

    async with running_engines(services, settings_with(services, cloud)):
        finished = await wait_for_run(services, run.id)

    assert finished.status is SyncStatus.PARTIALLY_FAILED
    [failed] = await _users(services, ent)
    assert failed.provisioning_status is ProvisioningStatus.FAILED
    reason = failed.provisioning_error or ""
    assert "assigned to another account (reception@enterprise82.example)" in reason
    assert "give this user another number" in reason
    assert cloud.state.require_tenant(tid).numbers[number].assignment_target_id == holder.id


async def test_releasing_a_number_nobody_holds_counts_as_done(cloud: SandboxServer) -> None:
    tid = seed_tenant(cloud, 83)
    service = graph_service(graph_settings(cloud))
    try:
        released = await GraphOperations(service.tenant(tid), poll_seconds=0.01).unassign_number(
            "+442071230083"
        )
    finally:
        await service.close()
    assert released.ok
    assert "not assigned" in (released.detail or "")  # Graph's refusal, kept as the detail
    assert cloud.tenant_stats(tid).statuses[404] == 1


# --- statuses and batches --------------------------------------------------------------------


async def test_an_unknown_operation_status_ends_the_wait_with_a_reason(
    scripted: tuple[ScriptedGraph, str],
) -> None:
    fake, base = scripted
    fake.scripts[f"{NUMBERS}/assignNumber"] = [(202, {"Location": f"{base}{OPERATIONS}/op9"}, None)]
    fake.scripts[f"{OPERATIONS}/op9"] = [
        (200, {}, {"value": {"id": "op9", "status": "unknownFutureValue", "numbers": []}})
    ] * 50
    service, _ = scripted_service(base)
    ops = GraphOperations(service.tenant("t1"), poll_seconds=0.01, operation_timeout=60.0)
    order = await ops.assign_number("+442071230009", "u9")
    await service.close()

    assert not order.ok and order.status == "failed"
    assert "'unknownFutureValue'" in (order.detail or "")
    assert "not on the user" in (order.detail or "")
    polls = [path for _, path, _, _ in fake.seen if path == f"{OPERATIONS}/op9"]
    assert len(polls) == 1  # read once, not polled for the whole timeout


async def test_a_424_batch_envelope_is_retried_request_by_request(
    scripted: tuple[ScriptedGraph, str],
) -> None:
    fake, base = scripted
    fake.batch_envelopes = [424]
    service, _ = scripted_service(base, batch_size=20, batch_linger_seconds=0.01)
    graph = service.tenant("t1")
    answers = await asyncio.gather(
        *(graph.call("POST", f"/users/u{n}/assignLicense", {"n": n}) for n in range(3))
    )
    await service.close()

    assert [a.status for a in answers] == [200, 200, 200]
    assert len(fake.batches) >= 2  # the throttled batch, then the retries
    assert graph.pacer.refused == 3  # none of the three counted against the budget


# --- voice routing policy by name ------------------------------------------------------------


@SQLITE_ONLY
async def test_the_voice_routing_policy_is_found_by_name_and_refreshed_when_recreated(
    services: Services, cloud: SandboxServer
) -> None:
    tid = seed_tenant(cloud, 84)
    ent = await make_enterprise(services, 84, users=2, basic_every=0)
    run, _ = await services.syncs.request(global_admin(ent, 84), ent)

    lookup = "/admin/teams/policy/getPolicyId(type={type},name={name})"
    async with running_engines(services, settings_with(services, cloud)):
        assert (await wait_for_run(services, run.id)).status is SyncStatus.SUCCEEDED
        first_id = voice_policy_id(cloud, tid)
        looked_up = cloud.tenant_stats(tid).count("GET", lookup)
        refused = cloud.tenant_stats(tid).statuses[404]
        # The tenant's admin recreates the policy: same name, new id; the worker cached the old.
        cloud.state.remove_policy(tid, "OnlineVoiceRoutingPolicy", POLICY)
        cloud.state.add_policy(tid, "OnlineVoiceRoutingPolicy", POLICY)
        for person in cloud.state.require_tenant(tid).users.values():
            person.policies.clear()
        await _mark_failed_for_retry(services, ent)
        second, _ = await services.syncs.request(global_admin(ent, 84), ent)
        finished = await wait_for_run(services, second.id)

    assert finished.status is SyncStatus.SUCCEEDED
    new_id = voice_policy_id(cloud, tid)
    assert new_id != first_id
    people = [u for u in cloud.state.require_tenant(tid).users.values() if u.upn.startswith("user")]
    assert [p.policies["onlinevoiceroutingpolicy"].policy_id for p in people] == [new_id] * 2
    stats = cloud.tenant_stats(tid)
    # The cached id was used, refused, and looked up again.
    assert stats.statuses[404] > refused
    assert stats.count("GET", lookup) > looked_up


@SQLITE_ONLY
async def test_an_enterprise_may_name_its_own_voice_routing_policy(
    services: Services, cloud: SandboxServer, capsys: pytest.CaptureFixture[str]
) -> None:
    own, default = seed_tenant(cloud, 89), seed_tenant(cloud, 90)
    route = cloud.state.add_policy(own, "OnlineVoiceRoutingPolicy", "Enterprise 89 PBX")
    first = await make_enterprise(services, 89, users=1, basic_every=0)
    second = await make_enterprise(services, 90, users=1, basic_every=0)
    name = await services.enterprises.set_voice_routing_policy(
        global_admin(first, 89), first, "  Enterprise 89 PBX "
    )
    assert name == "Enterprise 89 PBX"
    runs = [
        (await services.syncs.request(global_admin(first, 89), first))[0],
        (await services.syncs.request(global_admin(second, 90), second))[0],
    ]

    async with running_engines(services, settings_with(services, cloud)):
        for run in runs:
            assert (await wait_for_run(services, run.id)).status is SyncStatus.SUCCEEDED

    def policy_of(tid: str) -> str:
        people = cloud.state.require_tenant(tid).users.values()
        [person] = [p for p in people if p.upn.startswith("user")]
        return person.policies["onlinevoiceroutingpolicy"].policy_id

    assert policy_of(own) == route.policy_id
    assert policy_of(default) == voice_policy_id(cloud, default)  # the provider's default
    assert (
        await services.enterprises.set_voice_routing_policy(global_admin(first, 89), first, None)
        is None
    )


async def _mark_failed_for_retry(services: Services, enterprise_id: int) -> None:
    """Make a manual sync look at every user again (a manual sync retries failed users)."""
    async with services.db.unit_of_work() as uow:
        await uow.session.execute(
            update(User)
            .where(User.enterprise_id == enterprise_id)
            .values(provisioning_status=ProvisioningStatus.FAILED)
        )
        await uow.commit()


@SQLITE_ONLY
async def test_an_unknown_voice_routing_policy_name_fails_users_with_the_fix(
    services: Services, cloud: SandboxServer
) -> None:
    seed_tenant(cloud, 85)
    ent = await make_enterprise(services, 85, users=1)
    settings = settings_with(
        services, cloud, graph=graph_settings(cloud, voice_routing_policy="No Such Route")
    )
    run, _ = await services.syncs.request(global_admin(ent, 85), ent)

    async with running_engines(services, settings):
        finished = await wait_for_run(services, run.id)

    assert finished.status is SyncStatus.PARTIALLY_FAILED
    [user] = await _users(services, ent)
    assert "no voice routing policy named “No Such Route”" in (user.provisioning_error or "")


# --- Global Administrator through groups ---------------------------------------------------


async def test_a_global_administrator_through_a_nested_group_is_recognised(
    cloud: SandboxServer,
) -> None:
    tid = seed_tenant(cloud, 86)
    member = cloud.state.add_user(tid, "grace@enterprise86.example", "Grace")
    outsider = cloud.state.add_user(tid, "olaf@enterprise86.example", "Olaf")
    team = cloud.state.add_group(tid, "IT team", [member.id])
    admins = cloud.state.add_group(tid, "Global admins (role-assignable)", [team.id])
    cloud.state.add_global_admin(tid, admins.id)
    service = graph_service(graph_settings(cloud))
    check = GlobalAdminCheck(service)
    try:
        assert await check(tid, member.id)
        assert await check(tid, admin_object_id(86))
        assert not await check(tid, outsider.id)
        assert not await check(tid, "00000000-0000-4000-8000-00000000dead")  # not in the tenant
    finally:
        await service.close()


@SQLITE_ONLY
async def test_a_global_admin_check_without_the_permission_says_which_is_missing(
    services: Services, cloud: SandboxServer
) -> None:
    tid = seed_tenant(cloud, 88)
    ent = await make_enterprise(services, 88, users=1)
    cloud.state.grant_roles(tid, CLIENT_ID, ["User.ReadWrite.All"])
    service = graph_service(graph_settings(cloud))
    # Built by the composition root with Graph: the syncs ask Microsoft who is Global Admin.
    syncs = composed(services, services.settings, graph=service).syncs
    try:
        with pytest.raises(PermissionDeniedError) as refused:
            await syncs.request(global_admin(ent, 88), ent)
    finally:
        await service.close()
    assert "RoleManagement.Read.Directory" in refused.value.message
    assert "no sync was started" in refused.value.message
    assert cloud.tenant_stats(tid).statuses[403] == 1


# --- the Teams configuration arrives late ------------------------------------------------------


@SQLITE_ONLY
async def test_numbers_wait_until_teams_knows_the_user(
    services: Services, cloud: SandboxServer
) -> None:
    cloud.config.teams_setup_delay_seconds = 0.3
    tid = seed_tenant(cloud, 87)
    ent = await make_enterprise(services, 87, users=2, basic_every=0)
    run, _ = await services.syncs.request(global_admin(ent, 87), ent)
    settings = settings_with(
        services, cloud, sync=sync_settings(retry_base_seconds=0.05, retry_max_seconds=0.2)
    )

    async with running_engines(services, settings):
        finished = await wait_for_run(services, run.id)

    assert finished.status is SyncStatus.SUCCEEDED
    stats = cloud.tenant_stats(tid)
    # No order was placed (and refused) before Teams knew the user.
    assert stats.count("POST", f"{NUMBERS}/assignNumber") == 2
    assert stats.statuses[404] >= 2  # the configuration was asked for, and not there yet

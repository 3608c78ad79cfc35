"""The sync engine against the Graph sandbox: a first sync, automatic syncs after consent,
the Global-Admin-only rule, double triggers, removals, failures with Graph's reasons, overdue
runs, and one slow tenant beside a quick one."""

from __future__ import annotations

import asyncio
import html
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from sandbox import GLOBAL_ADMIN_ROLE_ID, SandboxServer
from services.container import Services
from services.domain import AdminRole, NoticeKind, OutboxStatus, ProvisioningStatus, SyncStatus
from services.errors import PermissionDeniedError
from services.models import (
    Enterprise,
    OutboxItem,
    ProvisioningItem,
    SyncNotice,
    SyncRun,
    User,
    utcnow,
)
from services.provisioning import ProvisioningEngine, SyncNotices
from services.sync import run_view
from services.users import UserChanges
from services.views import Actor, SyncRunView
from tests.provisioning_kit import (
    BASIC_SKU,
    ESSENTIALS_SKU,
    POLICY,
    SQLITE_ONLY,
    cloud_fixture,  # noqa: F401
    composed,
    global_admin,
    graph_service,
    graph_settings,
    item_counts,
    make_enterprise,
    running_engines,
    sandbox_server_fixture,  # noqa: F401
    seed_tenant,
    settings_with,
    sync_settings,
    voice_policy_id,
    wait_for,
    wait_for_run,
)


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


async def _numbers(services: Services, enterprise_id: int) -> dict[str, str]:
    """Each user's line as the directory says: e-mail -> number (or main;ext=...)."""
    page = await services.directory.page(enterprise_id, page_size=100)
    enterprise = await services.enterprises.get(enterprise_id)
    lines = {}
    for user in page.items:
        if user.number:
            lines[user.email] = user.number
        elif user.extension is not None:
            lines[user.email] = f"{enterprise.main_number};ext={user.extension}"
    return lines


async def test_first_sync_provisions_every_user_in_microsoft(
    services: Services, cloud: SandboxServer
) -> None:
    tid = seed_tenant(cloud, 1)
    ent = await make_enterprise(services, 1, users=12, notify=True)
    settings = settings_with(services, cloud)
    run, started = await services.syncs.request(global_admin(ent, 1), ent)
    assert started and run.is_first

    async with running_engines(services, settings):
        finished = await wait_for_run(services, run.id)

    assert finished.status is SyncStatus.SUCCEEDED
    users = await _users(services, ent)
    assert {u.provisioning_status for u in users} == {ProvisioningStatus.PROVISIONED}
    assert all(u.password_ciphertext is None for u in users)
    enterprise = await services.enterprises.get(ent)
    assert enterprise.first_sync_completed_at is not None

    tenant = cloud.state.require_tenant(tid)
    lines = await _numbers(services, ent)
    for user in users:
        entra = tenant.find_user(user.email)
        assert entra is not None and entra.id == user.entra_object_id
        assert entra.props["usageLocation"] == "GB"
        wanted = (
            ESSENTIALS_SKU if user.licence and user.licence.value == "essentials" else BASIC_SKU
        )
        assert entra.licenses == [wanted]
        assert [n.telephone_number for n in tenant.numbers_of(entra.id)] == [lines[user.email]]
        assert entra.enterprise_voice_enabled
        assert entra.policies["onlinevoiceroutingpolicy"].policy_id == voice_policy_id(cloud, tid)
        assert entra.policies["onlinevoiceroutingpolicy"].display_name == POLICY
    assert tenant.skus[ESSENTIALS_SKU].consumed_units == 9
    assert tenant.skus[BASIC_SKU].consumed_units == 3

    stats = cloud.tenant_stats(tid)
    assert stats.count("POST", "/users") == 12
    assert stats.count("POST", "/users/{user}/assignLicense") == 12
    assert (
        stats.count("POST", "/admin/teams/telephoneNumberManagement/numberAssignments/assignNumber")
        == 12
    )
    assert stats.count("GET", "/admin/teams/userConfigurations/{user}") >= 12
    assert stats.statuses[400] == 0 and stats.throttled == 0
    assert stats.batches > 0
    # The confirmation e-mails (the admin asked to tell the users) reached the mailbox, and
    # the admin who created them is told of each.
    mails = [m for m in cloud.state.mails() if not m.subject.startswith("User added: ")]
    assert sorted(m.to[0] for m in mails) == sorted(u.email for u in users)
    assert all(m.subject == "Your Teams Phone is ready" for m in mails)
    assert len(cloud.state.mails()) == 2 * len(users)
    async with services.db.unit_of_work(readonly=True) as uow:
        outbox = (
            (
                await uow.session.execute(
                    select(OutboxItem.status).where(OutboxItem.channel == "microsoft")
                )
            )
            .scalars()
            .all()
        )
        notices = (await uow.session.execute(select(SyncNotice.kind))).scalars().all()
    assert set(outbox) == {OutboxStatus.DONE}
    assert list(notices) == [NoticeKind.SYNC_FINISHED]


@SQLITE_ONLY
async def test_password_email_only_when_asked_and_the_password_is_then_forgotten(
    services: Services, cloud: SandboxServer
) -> None:
    tid = seed_tenant(cloud, 2)
    ent = await make_enterprise(services, 2, users=2, password_mail=True)
    # One of them already has a Microsoft 365 account: it is found, not created.
    cloud.state.add_user(tid, "user0000@enterprise2.example", "User 0000", usage_location=None)
    run, _ = await services.syncs.request(global_admin(ent, 2), ent)
    async with running_engines(services, settings_with(services, cloud)):
        assert (await wait_for_run(services, run.id)).status is SyncStatus.SUCCEEDED

    tenant = cloud.state.require_tenant(tid)
    existing = tenant.find_user("user0000@enterprise2.example")
    created = tenant.find_user("user0001@enterprise2.example")
    assert existing is not None and created is not None
    assert existing.props["usageLocation"] == "GB"  # set before the licence, as Graph needs
    [mail] = [m for m in cloud.state.mails() if not m.subject.startswith("User added: ")]
    assert mail.to == ["user0001@enterprise2.example"]
    # The account's own password, HTML-escaped in the body.
    assert created.password and html.escape(created.password) in mail.body
    assert cloud.tenant_stats(tid).count("POST", "/users") == 1
    assert all(u.password_ciphertext is None for u in await _users(services, ent))


@SQLITE_ONLY
async def test_only_a_global_admin_confirmed_by_microsoft_may_start_a_sync(
    services: Services, cloud: SandboxServer
) -> None:
    tid = seed_tenant(cloud, 3)
    ent = await make_enterprise(services, 3, users=1)
    graph = graph_service(graph_settings(cloud))
    # Built by the composition root with Graph: the syncs ask Microsoft who is Global Admin.
    syncs = composed(services, services.settings, graph=graph).syncs
    try:
        enterprise_admin = Actor("someone", "Erin", AdminRole.ENTERPRISE_ADMIN, ent)
        with pytest.raises(PermissionDeniedError, match="Only the enterprise's Global Admin"):
            await syncs.request(enterprise_admin, ent)
        # The directory calls this person a Global Admin, but Microsoft does not.
        impostor = Actor(
            "11111111-0000-4000-8000-000000000bad", "Ivan", AdminRole.GLOBAL_ADMIN, ent
        )
        cloud.state.add_user(
            tid, "ivan@enterprise3.example", "Ivan", user_id=impostor.aad_object_id
        )
        with pytest.raises(PermissionDeniedError, match="Microsoft says you are not a Global"):
            await syncs.request(impostor, ent)
        overview = await services.syncs.overview(ent)
        assert overview.open_run is None
        # The real one is confirmed by roleManagement and starts it.
        run, started = await syncs.request(global_admin(ent, 3), ent)
        assert started
        stats = cloud.tenant_stats(tid)
        # The impostor: no direct assignment, and in none of the role's holder groups.
        assert stats.count("GET", "/roleManagement/directory/roleAssignments") == 3
        assert stats.count("POST", "/users/{user}/checkMemberGroups") == 1
        assignments = cloud.state.require_tenant(tid).role_assignments
        assert [a.role_definition_id for a in assignments] == [GLOBAL_ADMIN_ROLE_ID]
        # Microsoft cannot be asked (the app's secret was rotated): refused, and said why.
        stale = graph_service(graph_settings(cloud, client_secret="rotated-away"))
        syncs = composed(services, services.settings, graph=stale).syncs
        with pytest.raises(PermissionDeniedError, match="could not confirm with Microsoft"):
            await syncs.request(global_admin(ent, 3), ent)
        await stale.close()
    finally:
        await graph.close()
    assert run.status is SyncStatus.REQUESTED


async def test_a_second_trigger_returns_the_running_sync(
    services: Services, cloud: SandboxServer
) -> None:
    seed_tenant(cloud, 4)
    ent = await make_enterprise(services, 4, users=3)
    admin = global_admin(ent, 4)
    first, second = await asyncio.gather(
        services.syncs.request(admin, ent), services.syncs.request(admin, ent)
    )
    assert sorted([first[1], second[1]]) == [False, True]
    assert first[0].id == second[0].id
    async with running_engines(services, settings_with(services, cloud)) as [engine]:
        await wait_for(lambda: _run_status_is(services, first[0].id, SyncStatus.RUNNING))
        again, started = await services.syncs.request(admin, ent)
        assert not started and again.id == first[0].id
        await wait_for_run(services, first[0].id)
    async with services.db.unit_of_work(readonly=True) as uow:
        runs = (await uow.session.execute(select(SyncRun))).scalars().all()
    assert len(runs) == 1
    assert engine.items_handled == 3


async def _run_status_is(services: Services, sync_id: int, status: SyncStatus) -> bool:
    async with services.db.unit_of_work(readonly=True) as uow:
        run = await uow.session.get(SyncRun, sync_id)
        return run is not None and run.status in (status, SyncStatus.SUCCEEDED)


async def test_after_consent_and_the_first_sync_changes_sync_automatically(
    services: Services, cloud: SandboxServer
) -> None:
    tid = seed_tenant(cloud, 5)
    ent = await make_enterprise(services, 5, users=2, consent=True)
    admin = global_admin(ent, 5)
    async with running_engines(services, settings_with(services, cloud)):
        # Before the first sync, consent alone does not start anything.
        await asyncio.sleep(0.3)
        assert (await services.syncs.overview(ent)).last_run is None
        run, _ = await services.syncs.request(admin, ent)
        await wait_for_run(services, run.id)

        # Now an edit reaches Microsoft with nobody pressing a button.
        [first, second] = await _users(services, ent)
        await services.users.update(
            admin, ent, first.id, first.version, UserChanges(display_name="Renamed User")
        )
        await services.users.remove(admin, ent, second.id, second.version)

        async def automatic_done() -> list[SyncRunView] | None:
            """Every change reached Microsoft, in one automatic run or more."""
            async with services.db.unit_of_work(readonly=True) as uow:
                waiting = (
                    await uow.session.execute(
                        select(OutboxItem.id).where(
                            OutboxItem.channel == "microsoft",
                            OutboxItem.status != OutboxStatus.DONE,
                        )
                    )
                ).first()
                runs = (
                    await uow.session.execute(select(SyncRun).where(SyncRun.is_automatic.is_(True)))
                ).scalars()
                views = [run_view(run) for run in runs]
            finished = views and all(v.status is SyncStatus.SUCCEEDED for v in views)
            return views if finished and waiting is None else None

        automatic = await wait_for(automatic_done)
    assert all(run.requested_by is None and not run.is_first for run in automatic)
    tenant = cloud.state.require_tenant(tid)
    renamed = tenant.find_user(first.email)
    removed = tenant.find_user(second.email)
    assert renamed is not None and renamed.props["displayName"] == "Renamed User"
    # A removed user keeps their Microsoft 365 account but loses the line and the licence.
    assert removed is not None and removed.licenses == [] and not tenant.numbers_of(removed.id)
    [user] = await _users(services, ent)
    assert user.provisioning_status is ProvisioningStatus.PROVISIONED


async def test_microsofts_refusal_fails_the_user_with_its_reason(
    services: Services, cloud: SandboxServer
) -> None:
    tid = seed_tenant(cloud, 6, licences=2)
    ent = await make_enterprise(services, 6, users=3, basic_every=0)
    run, _ = await services.syncs.request(global_admin(ent, 6), ent)
    async with running_engines(services, settings_with(services, cloud)):
        finished = await wait_for_run(services, run.id)
        assert finished.status is SyncStatus.PARTIALLY_FAILED
        report = await SyncNotices(services.db).report(run.id)
        assert (report.total, report.provisioned, report.failed) == (3, 2, 1)
        [failure] = report.failures
        assert failure.reason.startswith("Assigning the Teams Phone licence: Subscription with SKU")
        assert "does not have any available licenses" in failure.reason
        assert "Microsoft Graph request id" in failure.reason
        failed = [u for u in await _users(services, ent) if u.provisioning_status.value == "failed"]
        assert [u.provisioning_error for u in failed] == [failure.reason]

        # More licences bought; a manual sync retries the failed user only.
        cloud.state.add_sku(tid, ESSENTIALS_SKU, "MCOEV", 3, consumed_units=2)
        again, started = await services.syncs.request(global_admin(ent, 6), ent)
        assert started
        assert (await wait_for_run(services, again.id)).status is SyncStatus.SUCCEEDED
        assert await item_counts(services, again.id) == {OutboxStatus.DONE: 1}


@SQLITE_ONLY
async def test_an_overdue_sync_is_escalated_once(services: Services, cloud: SandboxServer) -> None:
    seed_tenant(cloud, 7)
    ent = await make_enterprise(services, 7, users=1)
    run, _ = await services.syncs.request(global_admin(ent, 7), ent)
    async with services.db.unit_of_work() as uow:
        await uow.session.execute(
            update(SyncRun)
            .where(SyncRun.id == run.id)
            .values(expected_by=utcnow() - timedelta(minutes=1))
        )
        await uow.commit()
    # No Graph at all: nothing progresses, and the providers must hear of it.
    engine = ProvisioningEngine(
        services.db, services.users.vault, None, settings_with(services, cloud)
    )
    assert await engine.check_overdue() == 1
    assert await engine.check_overdue() == 0
    notices = await SyncNotices(services.db).due()
    assert [(n.kind, n.report.run.id) for n in notices] == [(NoticeKind.SYNC_OVERDUE, run.id)]
    assert notices[0].report.waiting == 0 and notices[0].report.run.status is SyncStatus.REQUESTED


@SQLITE_ONLY
async def test_a_throttled_tenant_does_not_hold_up_another(
    services: Services, cloud: SandboxServer
) -> None:
    busy_tid = seed_tenant(cloud, 8)
    quick_tid = seed_tenant(cloud, 9)
    busy = await make_enterprise(services, 8, users=16)
    quick = await make_enterprise(services, 9, users=3)
    # Graph lets each tenant write 10 times a second; the busy tenant needs ~64 writes.
    cloud.set_throttle(app_write_limit=10, app_write_window=1.0)
    settings = settings_with(
        services,
        cloud,
        graph=graph_settings(cloud, write_limit=10, write_window_seconds=1.0),
        sync=sync_settings(tenant_concurrency=8),
    )
    busy_run, _ = await services.syncs.request(global_admin(busy, 8), busy)
    async with running_engines(services, settings):
        await asyncio.sleep(0.5)
        quick_run, _ = await services.syncs.request(global_admin(quick, 9), quick)
        quick_done = await wait_for_run(services, quick_run.id)
        busy_state = await item_counts(services, busy_run.id)
        assert quick_done.status is SyncStatus.SUCCEEDED
        assert busy_state.get(OutboxStatus.DONE, 0) < 16  # still going
        await wait_for_run(services, busy_run.id, timeout=30)
    assert cloud.tenant_stats(quick_tid).throttled == 0
    assert cloud.tenant_stats(busy_tid).writes_accepted >= 16 * 4


@SQLITE_ONLY
async def test_items_survive_in_the_database_with_attempts_and_errors(
    services: Services, cloud: SandboxServer
) -> None:
    tid = seed_tenant(cloud, 10)
    ent = await make_enterprise(services, 10, users=1)
    # The app's consent is missing: every attempt is refused by Entra, and says so.
    cloud.state.require_tenant(tid).consented_apps.clear()
    run, _ = await services.syncs.request(global_admin(ent, 10), ent)
    async with running_engines(services, settings_with(services, cloud)):
        finished = await wait_for_run(services, run.id)
    assert finished.status is SyncStatus.PARTIALLY_FAILED
    async with services.db.unit_of_work(readonly=True) as uow:
        item = (await uow.session.execute(select(ProvisioningItem))).scalar_one()
        enterprise = await uow.session.get(Enterprise, ent)
        assert item.status is OutboxStatus.FAILED and item.lease_expires_at is None
        assert item.attempts == 0  # a refused sign-in is not retried: it needs an admin
        assert item.last_error is not None
        assert "Microsoft Entra refused Switchboard's sign-in" in item.last_error
        assert "missing service principal" in item.last_error
        assert enterprise is not None and enterprise.first_sync_completed_at is not None

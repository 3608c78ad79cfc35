"""Through the real bot: the Global Admin presses "Sync Teams Users", the sync runs against the
Graph sandbox, the "sync finished" card reaches them (and the team channel) through the fake
Bot Connector despite its throttling, and the confirmation e-mails reach the mailbox; an overdue
sync reaches the service provider's admins."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.app import BACKGROUND_KEY, BackgroundWork, build_app, start_background_work
from bot.auth import BotSettings
from bot.http import BOT_ADAPTER_KEY
from bot.notifier import ProactiveNotifier
from cards.actions import Verb
from sandbox import SandboxServer
from services.container import Services
from services.domain import AdminRole, LicenceProduct, OutboxStatus
from services.inventory import AUTO
from services.models import Enterprise, SyncNotice, SyncRun, User, utcnow
from services.users import NewUser
from services.views import Actor
from tests.botkit import card_text
from tests.cardcheck import assert_valid_cards
from tests.conftest import PROVIDER
from tests.provisioning_kit import (
    SQLITE_ONLY,
    admin_object_id,
    cloud_fixture,  # noqa: F401
    composed,
    domain,
    global_admin,
    graph_service,
    graph_settings,
    make_enterprise,
    sandbox_server_fixture,  # noqa: F401
    seed_tenant,
    settings_with,
    sync_settings,
    tenant_id,
    wait_for,
    wait_for_run,
)
from tests.support.activities import DEFAULT_CHANNEL_ID, TeamsActivities, TeamsUser
from tests.support.connector import FakeConnector

pytestmark = SQLITE_ONLY


async def _serve_synced(
    services: Services,
    cloud: SandboxServer,
    serve_bot: Any,
    bot_settings: BotSettings,
) -> tuple[Services, Any, BackgroundWork]:
    """The bot over `services` with Graph pointed at the sandbox, served with its background
    work: the services, the HTTP client, the work."""
    settings = settings_with(services, cloud)
    services = composed(services, settings, graph=graph_service(settings.graph))
    app = build_app(services, bot_settings)
    work = start_background_work(app, services)
    return services, await serve_bot(app), work


async def _post(client: Any, activity: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(activity)
    assert response.status in (200, 201), response.text
    return response.json() if response.body else {}


async def test_the_global_admin_gets_the_finished_card_and_users_get_their_email(
    services: Services,
    cloud: SandboxServer,
    serve_bot: Any,
    teams: TeamsActivities,
    fake_connector: FakeConnector,
    bot_settings: BotSettings,
) -> None:
    tid = seed_tenant(cloud, 31)
    ent = await make_enterprise(services, 31, users=3, notify=True)
    settings = settings_with(
        services,
        cloud,
        sync=sync_settings(
            notification_channel_id=DEFAULT_CHANNEL_ID,
            notification_service_url=fake_connector.url,
        ),
    )
    graph = graph_service(settings.graph)
    services = composed(services, settings, graph=graph)
    app = build_app(services, bot_settings)
    start_background_work(app, services)
    client = await serve_bot(app)
    gloria = teams.with_tenant(tid).with_user(TeamsUser(admin_object_id(31), "Gloria Global"))
    cards: list[dict[str, Any]] = []

    await _post(client, gloria.message("sync"))  # her chat with the bot is remembered
    [status_card] = (await fake_connector.next_message()).adaptive_cards
    assert "Sync Teams Users" in card_text(status_card)

    fake_connector.throttle(2, retry_after=0.1)  # the connector is busy for the next 2 sends
    pressed = await _post(client, gloria.card_action(Verb.SYNC_START.value, {"ent": ent}))
    started = pressed["value"]
    assert "Sync started" in card_text(started)
    cards.append(started)

    overview = await services.syncs.overview(ent)
    assert overview.open_run is not None or overview.last_run is not None
    run = overview.open_run or overview.last_run
    assert run is not None
    await wait_for_run(services, run.id)

    sent = [await fake_connector.next_message(timeout=15) for _ in range(2)]
    assert len(fake_connector.throttled) == 2  # both 429s were retried after Retry-After
    personal = next(m for m in sent if m.conversation_id != DEFAULT_CHANNEL_ID)
    channel = next(m for m in sent if m.conversation_id == DEFAULT_CHANNEL_ID)
    [finished] = personal.adaptive_cards
    assert channel.adaptive_cards == [finished]
    text = card_text(finished)
    assert "Sync Teams Users finished" in text
    assert "Enterprise 31" in text and "3 of 3" in text and "Succeeded" in text
    assert "Every change reached Microsoft Teams." in text
    cards.append(finished)
    assert_valid_cards({f"card {i}": card for i, card in enumerate(cards)})

    mails = cloud.state.mails()
    told = [m for m in mails if m.to != ["admin@enterprise31.example"]]
    assert sorted(m.to[0] for m in told) == [f"user{i:04d}@enterprise31.example" for i in range(3)]
    assert all("Your Microsoft Teams account is set up" in m.body for m in told)
    # Gloria created them: she is told of each, once it is added and synced.
    confirmations = [m for m in mails if m.to == ["admin@enterprise31.example"]]
    assert sorted(m.subject for m in confirmations) == [
        f"User added: User {i:04d}" for i in range(3)
    ]
    # The Graph check ran: Microsoft confirmed Gloria is a Global Administrator.
    assert cloud.tenant_stats(tid).count("GET", "/roleManagement/directory/roleAssignments") == 1
    await fake_connector.assert_no_activity(0.3)  # told once, not again
    background = app[BACKGROUND_KEY]
    assert background.notifier is not None and background.notifier.sent == 2


async def test_failures_are_listed_with_microsofts_reason(
    services: Services,
    cloud: SandboxServer,
    serve_bot: Any,
    teams: TeamsActivities,
    fake_connector: FakeConnector,
    bot_settings: BotSettings,
) -> None:
    tid = seed_tenant(cloud, 32, licences=1)
    ent = await make_enterprise(services, 32, users=2, basic_every=0)
    services, client, _ = await _serve_synced(services, cloud, serve_bot, bot_settings)
    gloria = teams.with_tenant(tid).with_user(TeamsUser(admin_object_id(32), "Gloria Global"))
    await _post(client, gloria.message("help"))
    await fake_connector.next_message()
    await _post(client, gloria.card_action(Verb.SYNC_START.value, {"ent": ent}))

    card = (await fake_connector.next_message(timeout=15)).adaptive_cards[0]
    text = card_text(card)
    assert "Sync finished with failures" in text
    assert "1 of 2 users could not be set up" in text
    # Either user may be the one left without a licence: they are set up side by side.
    assert re.search(r"User (\d{4}) \(user\1@enterprise32\.example\)", text)
    assert "does not have any available licenses" in text
    assert "Microsoft Graph request id" in text
    assert_valid_cards({"failures": card})


async def test_an_overdue_sync_reaches_the_service_providers(
    services: Services,
    cloud: SandboxServer,
    serve_bot: Any,
    teams: TeamsActivities,
    fake_connector: FakeConnector,
    bot_settings: BotSettings,
) -> None:
    ent = await make_enterprise(services, 33, users=1)
    provider_person = TeamsUser.random("Pat Provider")
    await services.enterprises.grant(
        PROVIDER,
        aad_object_id=provider_person.aad_object_id,
        role=AdminRole.SERVICE_PROVIDER,
        enterprise_id=None,
        display_name="Pat Provider",
    )
    # No Graph at all: the sync cannot progress, and that must be escalated.
    settings = replace(
        settings_with(services, cloud),
        graph=replace(graph_settings(cloud), client_id="", client_secret=""),
    )
    services = composed(services, settings)
    app = build_app(services, bot_settings)
    start_background_work(app, services)
    client = await serve_bot(app)
    pat = teams.with_user(provider_person)
    await _post(client, pat.message("help"))
    await fake_connector.next_message()

    run, _ = await services.syncs.request(global_admin(ent, 33), ent)
    async with services.db.unit_of_work() as uow:
        await uow.session.execute(
            update(SyncRun)
            .where(SyncRun.id == run.id)
            .values(expected_by=utcnow() - timedelta(hours=1))
        )
        await uow.commit()
    fake_connector.throttle(1, retry_after=0.1, status=412)

    message = await fake_connector.next_message(timeout=10)
    [card] = message.adaptive_cards
    text = card_text(card)
    assert "Sync overdue: Enterprise 33" in text
    assert tenant_id(33) in text and "Late by" in text
    assert "Requested, not started" in text
    assert len(fake_connector.throttled) == 1
    assert_valid_cards({"overdue": card})
    await fake_connector.assert_no_activity(0.3)


@pytest.mark.parametrize("status", [403, 404])
async def test_a_refusing_connector_is_not_retried(
    services: Services,
    cloud: SandboxServer,
    serve_bot: Any,
    teams: TeamsActivities,
    fake_connector: FakeConnector,
    bot_settings: BotSettings,
    status: int,
) -> None:
    tid = seed_tenant(cloud, 34)
    ent = await make_enterprise(services, 34, users=1)
    services, client, work = await _serve_synced(services, cloud, serve_bot, bot_settings)
    gloria = teams.with_tenant(tid).with_user(TeamsUser(admin_object_id(34), "Gloria Global"))
    await _post(client, gloria.message("help"))
    await fake_connector.next_message()
    fake_connector.throttle(5, status=status)  # the bot was removed from the chat
    await _post(client, gloria.card_action(Verb.SYNC_START.value, {"ent": ent}))
    overview = await services.syncs.overview(ent)
    run = overview.open_run or overview.last_run
    assert run is not None
    await wait_for_run(services, run.id)

    async def settled() -> SyncNotice | None:
        async with services.db.unit_of_work(readonly=True) as uow:
            notice = (await uow.session.execute(select(SyncNotice))).scalar_one_or_none()
            if notice is None or notice.status is OutboxStatus.PENDING:
                return None
            uow.session.expunge(notice)
            return notice

    notice = await wait_for(settled)
    assert notice.status is OutboxStatus.FAILED
    assert notice.last_error == f"not delivered ({status})"
    assert len(fake_connector.throttled) == 1  # tried once: a refusal is not retried
    assert work.notifier is not None and work.notifier.sent == 0


async def test_the_button_is_refused_when_microsoft_does_not_confirm_the_global_admin(
    services: Services,
    cloud: SandboxServer,
    serve_bot: Any,
    teams: TeamsActivities,
    fake_connector: FakeConnector,
    bot_settings: BotSettings,
) -> None:
    tid = seed_tenant(cloud, 35)
    ent = await make_enterprise(services, 35, users=1)
    ivan = TeamsUser("35353535-0000-4000-8000-000000000bad", "Ivan Impostor")
    cloud.state.add_user(tid, "ivan@enterprise35.example", "Ivan", user_id=ivan.aad_object_id)
    # The directory was told Ivan is the Global Admin; Entra says otherwise.
    await services.enterprises.grant(
        PROVIDER,
        aad_object_id=ivan.aad_object_id,
        role=AdminRole.GLOBAL_ADMIN,
        enterprise_id=ent,
        display_name="Ivan Impostor",
    )
    services, client, _ = await _serve_synced(services, cloud, serve_bot, bot_settings)
    pressed = await _post(
        client, teams.with_tenant(tid).with_user(ivan).card_action(Verb.SYNC_START.value, {})
    )
    card = pressed["value"]
    assert "Microsoft says you are not a Global Administrator" in card_text(card)
    assert_valid_cards({"refused": card})
    overview = await services.syncs.overview(ent)
    assert overview.open_run is None and overview.last_run is None
    # Not held directly, nor through the role's groups: two looks at the role's holders.
    assert cloud.tenant_stats(tid).count("GET", "/roleManagement/directory/roleAssignments") == 2


# --- automatic syncs, the pressed card, consent ---------------------------------------------------


async def _automatic_enterprise(services: Services, n: int) -> int:
    """Enterprise `n`, consenting and past its first sync: its changes sync by themselves."""
    ent = await make_enterprise(services, n, users=0, consent=True)
    async with services.db.unit_of_work() as uow:
        await uow.session.execute(
            update(Enterprise).where(Enterprise.id == ent).values(first_sync_completed_at=utcnow())
        )
        await uow.commit()
    return ent


async def _enterprise_admin(services: Services, ent: int, n: int, name: str) -> Actor:
    person = TeamsUser.random(name)
    await services.enterprises.grant(
        PROVIDER,
        aad_object_id=person.aad_object_id,
        role=AdminRole.ENTERPRISE_ADMIN,
        enterprise_id=ent,
        display_name=name,
    )
    return Actor(person.aad_object_id, name, AdminRole.ENTERPRISE_ADMIN, ent)


def _new_user(n: int, i: int) -> NewUser:
    return NewUser(
        display_name=f"Auto {i}",
        email=f"auto{i}@{domain(n)}",
        licence=LicenceProduct.ESSENTIALS,
        number=AUTO,
        extension=AUTO,
    )


async def _say_hello(client: Any, fake_connector: FakeConnector, who: TeamsActivities) -> str:
    """The admin writes to the bot (so it can reach them later); their chat's id."""
    activity = who.message("help")
    await _post(client, activity)
    await fake_connector.next_message()
    return str(activity["conversation"]["id"])


async def test_an_automatic_sync_tells_the_admin_who_made_the_change(
    services: Services,
    cloud: SandboxServer,
    serve_bot: Any,
    teams: TeamsActivities,
    fake_connector: FakeConnector,
    bot_settings: BotSettings,
) -> None:
    tid = seed_tenant(cloud, 41)
    ent = await _automatic_enterprise(services, 41)
    erin = await _enterprise_admin(services, ent, 41, "Erin Enterprise")
    services, client, _ = await _serve_synced(services, cloud, serve_bot, bot_settings)
    in_tenant = teams.with_tenant(tid)
    erin_chat = await _say_hello(
        client,
        fake_connector,
        in_tenant.with_user(TeamsUser(erin.aad_object_id, erin.display_name)),
    )
    await _say_hello(
        client, fake_connector, in_tenant.with_user(TeamsUser(admin_object_id(41), "Gloria Global"))
    )

    await services.users.create(erin, ent, _new_user(41, 1))  # nobody presses the button

    message = await fake_connector.next_message(timeout=20)
    assert message.conversation_id == erin_chat  # told: she made the change
    [card] = message.adaptive_cards
    text = card_text(card)
    assert "Sync Teams Users finished" in text and "1 of 1" in text
    assert "(automatic sync)" in text
    assert_valid_cards({"automatic": card})
    await fake_connector.assert_no_activity(0.5)  # the Global Admin made no change: not told


async def test_an_automatic_sync_nobody_can_be_told_about_reaches_the_enterprises_admins(
    services: Services,
    cloud: SandboxServer,
    serve_bot: Any,
    teams: TeamsActivities,
    fake_connector: FakeConnector,
    bot_settings: BotSettings,
) -> None:
    tid = seed_tenant(cloud, 42)
    ent = await _automatic_enterprise(services, 42)
    silent = await _enterprise_admin(services, ent, 42, "Sam Silent")  # never wrote to the bot
    erin = await _enterprise_admin(services, ent, 42, "Erin Enterprise")
    services, client, _ = await _serve_synced(services, cloud, serve_bot, bot_settings)
    in_tenant = teams.with_tenant(tid)
    chats = {
        await _say_hello(client, fake_connector, in_tenant.with_user(person))
        for person in (
            TeamsUser(erin.aad_object_id, erin.display_name),
            TeamsUser(admin_object_id(42), "Gloria Global"),
        )
    }

    await services.users.create(silent, ent, _new_user(42, 1))

    told = {(await fake_connector.next_message(timeout=20)).conversation_id for _ in range(2)}
    assert told == chats
    await fake_connector.assert_no_activity(0.5)


async def test_a_finished_sync_is_told_once_however_many_notifiers_share_the_queue(
    services: Services,
    cloud: SandboxServer,
    serve_bot: Any,
    teams: TeamsActivities,
    fake_connector: FakeConnector,
    bot_settings: BotSettings,
) -> None:
    tid = seed_tenant(cloud, 43)
    ent = await _automatic_enterprise(services, 43)
    erin = await _enterprise_admin(services, ent, 43, "Erin Enterprise")
    settings = settings_with(services, cloud, sync=sync_settings(notifier_poll_seconds=60))
    services = composed(services, settings, graph=graph_service(settings.graph))
    app = build_app(services, bot_settings)
    work = start_background_work(app, services)
    client = await serve_bot(app)
    await _say_hello(
        client,
        fake_connector,
        teams.with_tenant(tid).with_user(TeamsUser(erin.aad_object_id, erin.display_name)),
    )
    others = [
        ProactiveNotifier(app[BOT_ADAPTER_KEY], bot_settings.app_id, services, settings.sync)
        for _ in range(3)
    ]

    await services.users.create(erin, ent, _new_user(43, 1))

    async def closed() -> bool:
        async with services.db.unit_of_work(readonly=True) as uow:
            return (await uow.session.execute(select(SyncNotice))).first() is not None

    await wait_for(closed)
    assert work.notifier is not None
    notifiers = [work.notifier, *others]
    await asyncio.gather(*(notifier.deliver_due() for notifier in notifiers))
    await fake_connector.next_message(timeout=5)
    await fake_connector.assert_no_activity(0.5)
    assert sum(notifier.sent for notifier in notifiers) == 1


async def test_the_pressed_sync_card_shows_the_outcome_when_the_run_ends(
    services: Services,
    cloud: SandboxServer,
    serve_bot: Any,
    teams: TeamsActivities,
    fake_connector: FakeConnector,
    bot_settings: BotSettings,
) -> None:
    tid = seed_tenant(cloud, 44)
    ent = await make_enterprise(services, 44, users=2)
    services, client, _ = await _serve_synced(services, cloud, serve_bot, bot_settings)
    person = TeamsUser(admin_object_id(44), "Gloria Global")
    gloria = teams.with_tenant(tid).with_user(person)
    await _post(client, gloria.message("sync"))
    shown = await fake_connector.next_message()

    pressed = await _post(
        client,
        gloria.card_action(Verb.SYNC_START.value, {"ent": ent}, reply_to_id=shown.activity_id),
    )
    assert "Sync started" in card_text(pressed["value"])

    updated = await fake_connector.next_activity(timeout=20, where=lambda a: a.kind == "update")
    assert updated.activity_id == shown.activity_id
    assert updated.conversation_id == shown.conversation_id
    [card] = updated.adaptive_cards
    text = card_text(card)
    assert "Last sync" in text and "Succeeded" in text
    assert "Sync in progress" not in text and "Expected by" not in text
    assert card["refresh"]["action"]["verb"] == Verb.SYNC_REFRESH.value
    assert card["refresh"]["userIds"] == [person.teams_id]
    finished = await fake_connector.next_message(timeout=10)
    assert "Sync Teams Users finished" in card_text(finished.adaptive_cards[0])
    assert_valid_cards({"updated": card})
    await fake_connector.assert_no_activity(0.5)  # the card is updated once


async def test_the_providers_are_told_when_an_enterprise_changes_its_consent(
    services: Services,
    cloud: SandboxServer,
    serve_bot: Any,
    teams: TeamsActivities,
    fake_connector: FakeConnector,
    bot_settings: BotSettings,
) -> None:
    tid = seed_tenant(cloud, 45)
    await make_enterprise(services, 45, users=0)
    provider_person = TeamsUser.random("Pat Provider")
    await services.enterprises.grant(
        PROVIDER,
        aad_object_id=provider_person.aad_object_id,
        role=AdminRole.SERVICE_PROVIDER,
        enterprise_id=None,
        display_name="Pat Provider",
    )
    services = composed(services, settings_with(services, cloud))
    app = build_app(services, bot_settings)
    start_background_work(app, services)
    client = await serve_bot(app)
    pat_chat = await _say_hello(client, fake_connector, teams.with_user(provider_person))
    gloria = teams.with_tenant(tid).with_user(TeamsUser(admin_object_id(45), "Gloria Global"))

    answered = await _post(client, gloria.card_action(Verb.SYNC_CONSENT.value, {"consent": True}))
    assert "Management by the service provider allowed" in card_text(answered["value"])

    message = await fake_connector.next_message(timeout=10)
    assert message.conversation_id == pat_chat
    [card] = message.adaptive_cards
    text = card_text(card)
    assert "Enterprise 45 allows management by the service provider" in text
    assert "Gloria Global" in text and tid in text
    assert "once its first sync is done" in text
    assert_valid_cards({"consent": card})

    await _post(client, gloria.card_action(Verb.SYNC_CONSENT.value, {"consent": False}))
    withdrawn = card_text((await fake_connector.next_message(timeout=10)).adaptive_cards[0])
    assert "Enterprise 45 withdrew management by the service provider" in withdrawn
    await _post(client, gloria.card_action(Verb.SYNC_CONSENT.value, {"consent": False}))
    await fake_connector.assert_no_activity(0.5)  # nothing changed: nobody is told


async def test_the_password_goes_where_asked_and_the_creator_is_told_by_email(
    services: Services,
    cloud: SandboxServer,
    serve_bot: Any,
    teams: TeamsActivities,
    fake_connector: FakeConnector,
    bot_settings: BotSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tid = seed_tenant(cloud, 46)
    ent = await make_enterprise(services, 46, users=0)
    services, client, _ = await _serve_synced(services, cloud, serve_bot, bot_settings)
    gloria = teams.with_tenant(tid).with_user(TeamsUser(admin_object_id(46), "Gloria Global"))
    created = await _post(
        client,
        gloria.card_action(
            Verb.USER_CREATE_SUBMIT.value,
            {
                "ent": ent,
                "display_name": "Ada Lovelace",
                "email": f"ada@{domain(46)}",
                "licence": "essentials",
                "number_mode": "auto",
                "extension_mode": "auto",
                "password_email_to": f"it.desk@{domain(46)}",
            },
        ),
    )
    assert f"to it.desk@{domain(46)}" in card_text(created["value"])
    await _post(client, gloria.card_action(Verb.SYNC_START.value, {"ent": ent}))
    overview = await services.syncs.overview(ent)
    run = overview.open_run or overview.last_run
    assert run is not None
    await wait_for_run(services, run.id)

    async def both_sent() -> list[Any]:
        mails = cloud.state.mails()
        return mails if len(mails) >= 2 else []

    mails = {mail.to[0]: mail for mail in await wait_for(both_sent)}
    assert set(mails) == {f"it.desk@{domain(46)}", f"admin@{domain(46)}"}  # not to Ada herself
    password_mail = mails[f"it.desk@{domain(46)}"]
    assert "Temporary password" in password_mail.body
    [password] = re.findall(r"<code>([^<]+)</code>", password_mail.body)
    added = mails[f"admin@{domain(46)}"]
    assert added.subject == "User added: Ada Lovelace"
    assert "+44 20 7046 0001" in added.body and f"e-mailed to it.desk@{domain(46)}" in added.body
    assert password not in added.body
    # The password is in no log line and no longer in the database, even sealed.
    assert all(password not in record.getMessage() for record in caplog.records)
    async with services.db.unit_of_work(readonly=True) as uow:
        sealed = (await uow.session.execute(select(User.password_ciphertext))).scalars().all()
    assert sealed == [None]

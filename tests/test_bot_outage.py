"""A database outage is told as an outage: every turn gets one clear card saying nothing was
changed (never an invoke 500, never the apology for a bug), readiness reports it, and the bot
recovers on its own when the database is back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bot.app import build_app
from cards.actions import Dataset, Verb
from sandbox import SandboxServer
from services.container import Services
from services.db import Database
from services.domain import AdminRole, OutboxStatus, SyncStatus
from services.passwords import PasswordVault
from tests.botkit import BotHarness, card_text
from tests.conftest import PG_URL, PROVIDER, seed_enterprise, settings_for
from tests.provisioning_kit import (
    cloud_fixture,  # noqa: F401
    global_admin,
    item_counts,
    make_enterprise,
    running_engines,
    sandbox_server_fixture,  # noqa: F401
    seed_tenant,
    settings_with,
    sync_settings,
    wait_for,
    wait_for_run,
)
from tests.support.activities import DEFAULT_TENANT_ID, DEFAULT_USER
from tests.support.dbproxy import DatabaseRelay

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not PG_URL, reason="TEST_DATABASE_URL is not set"),
]

OUTAGE = "can't reach its database right now"
APOLOGY = "Sorry, that did not work"


@pytest.fixture
async def relay() -> AsyncIterator[DatabaseRelay]:
    """A relay in front of the test server."""
    url = make_url(PG_URL)
    relay = await DatabaseRelay(url.host or "127.0.0.1", url.port or 5432).start()
    yield relay
    await relay.close()


@pytest.fixture
async def outage_harness(
    relay: DatabaseRelay,
    serve_bot,
    teams,
    fake_connector,
    bot_settings,
    tmp_path: Path,
    database: Database,  # migrated and emptied; the bot reaches the same database via the relay
) -> AsyncIterator[BotHarness]:
    """Switchboard whose only way to its database is the relay."""
    url = make_url(PG_URL).set(host="127.0.0.1", port=relay.port)
    db = Database(url.render_as_string(hide_password=False))
    services = Services.build(
        db, settings_for(db.url, tmp_path), PasswordVault.from_settings("", tmp_path / "key")
    )
    ent = await seed_enterprise(services, tenant_id=DEFAULT_TENANT_ID)
    await services.enterprises.grant(
        PROVIDER,
        aad_object_id=DEFAULT_USER.aad_object_id,
        role=AdminRole.ENTERPRISE_ADMIN,
        enterprise_id=ent,
        display_name=DEFAULT_USER.name,
    )
    client = await serve_bot(build_app(services, bot_settings))
    yield BotHarness(client, services, teams, fake_connector, ent, [])
    await db.dispose()


@pytest.mark.parametrize("database", ["postgres"], indirect=True)
async def test_every_turn_during_an_outage_says_so_and_the_bot_recovers(
    outage_harness: BotHarness, relay: DatabaseRelay, caplog: pytest.LogCaptureFixture
) -> None:
    harness = outage_harness
    form = {
        "display_name": "Ada Lovelace",
        "email": "ada@contoso.example",
        "licence": "essentials",
        "number_mode": "auto",
        "extension_mode": "auto",
    }
    assert "Ada" not in card_text(await harness.act(Verb.DIRECTORY_OPEN))
    assert (await harness.client.get("/healthz/ready")).status == 200

    await relay.down()
    caplog.clear()
    caplog.set_level(logging.WARNING)
    for text in ("help", "directory", "find ada", "something else"):
        card = await harness.say(text)
        assert OUTAGE in card_text(card) and APOLOGY not in card_text(card), text
    for verb, data in (
        (Verb.USER_CREATE_SUBMIT, form),
        (Verb.DIRECTORY_OPEN, {}),
        (Verb.SYNC_START, {}),
        (Verb.HOME, {}),
    ):
        card = await harness.act(verb, data)  # asserts HTTP 200 and an invoke statusCode 200
        assert OUTAGE in card_text(card) and "nothing was changed" in card_text(card), verb
    assert await harness.search("11", Dataset.FREE_NUMBERS.value) == []
    welcome = await harness.client.post(harness.teams.members_added())
    assert welcome.status == 200
    assert OUTAGE in card_text((await harness.connector.next_message()).adaptive_cards[0])
    live, ready = await harness.client.get("/healthz"), await harness.client.get("/healthz/ready")
    assert live.status == 200 and ready.status == 503
    assert (await harness.client.get("/healthz/live")).status == 200
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors

    await relay.up()
    assert (await harness.client.get("/healthz/ready")).status == 200
    created = await harness.act(Verb.USER_CREATE_SUBMIT, form)
    assert "Ada Lovelace was created" in card_text(created)
    assert "Ada Lovelace" in card_text(await harness.say("directory"))


@pytest.mark.parametrize("database", ["postgres"], indirect=True)
async def test_turns_cut_off_mid_way_say_so_and_the_database_stays_whole(
    outage_harness: BotHarness, relay: DatabaseRelay, caplog: pytest.LogCaptureFixture
) -> None:
    harness = outage_harness
    caplog.set_level(logging.WARNING)

    def form(i: int) -> dict[str, str]:
        return {
            "verb": Verb.USER_CREATE_SUBMIT.value,
            "display_name": f"User {i}",
            "email": f"user{i}@contoso.example",
            "licence": "essentials",
            "number_mode": "auto",
            "extension_mode": "auto",
        }

    said_created: set[str] = set()
    for attempt in range(3):
        batch = range(attempt * 20, attempt * 20 + 20)
        posts = [
            asyncio.ensure_future(
                harness.client.post(
                    harness.teams.card_action(Verb.USER_CREATE_SUBMIT.value, form(i))
                )
            )
            for i in batch
        ]
        # Cut the database once the first turn has answered: the others are on their way,
        # some before their first query, some inside their transaction, some committing.
        await asyncio.wait(posts, return_when=asyncio.FIRST_COMPLETED)
        await relay.down()
        responses = await asyncio.gather(*posts)
        await relay.up()
        for response in responses:
            assert response.status == 200, response.text
            body = response.json()
            assert body["statusCode"] == 200, body
            text = card_text(body["value"])
            assert APOLOGY not in text, text
            assert "was created" in text or OUTAGE in text, text
            if "was created" in text:
                said_created.add(body["value"]["body"][0]["text"].removesuffix(" was created"))
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors
    # every user the bot said it created exists, each with its own number and extension
    page = await harness.services.directory.page(harness.ent, page_size=100)
    numbers = [user.number for user in page.items]
    assert len(numbers) == len(set(numbers))
    assert said_created <= {user.display_name for user in page.items}


@pytest.mark.parametrize("database", ["postgres"], indirect=True)
async def test_a_sync_cut_off_by_an_outage_resumes_when_the_database_is_back(
    relay: DatabaseRelay,
    cloud: SandboxServer,
    tmp_path: Path,
    database: Database,  # migrated and emptied; the sync reaches the same database via the relay
) -> None:
    url = make_url(PG_URL).set(host="127.0.0.1", port=relay.port)
    db = Database(url.render_as_string(hide_password=False))
    # A lease far longer than the whole test: the sync must not wait for one to run out.
    lease = 120.0
    settings = replace(
        settings_with(Services.build(db, settings_for(db.url, tmp_path), _vault(tmp_path)), cloud),
        sync=sync_settings(lease_seconds=lease),
    )
    services = Services.build(db, settings, _vault(tmp_path))
    try:
        seed_tenant(cloud, 41)
        cloud.config.operation_delay_seconds = 0.5  # each number assignment takes a moment
        ent = await make_enterprise(services, 41, users=6)
        run, _ = await services.syncs.request(global_admin(ent, 41), ent)
        async with running_engines(services, settings):

            async def in_hand() -> int:
                counts = await item_counts(services, run.id)
                return counts.get(OutboxStatus.IN_PROGRESS, 0)

            await wait_for(in_hand, timeout=20)
            await relay.down()
            await asyncio.sleep(2.0)
            await relay.up()
            back = time.monotonic()
            finished = await wait_for_run(services, run.id, timeout=30)
            resumed_in = time.monotonic() - back
        assert finished.status is SyncStatus.SUCCEEDED
        assert await item_counts(services, run.id) == {OutboxStatus.DONE: 6}
        assert resumed_in < lease / 4, resumed_in
    finally:
        await db.dispose()


def _vault(tmp_path: Path) -> PasswordVault:
    return PasswordVault.from_settings("", tmp_path / "key")

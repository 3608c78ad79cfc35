"""A bulk import cut off by a database outage (PostgreSQL behind a relay that is taken down
mid-apply) is resumed when the database is back: every row applied exactly once, no ERROR
logged, and the admin gets the result."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest

from bot.features.bulk import BULK_DESK_KEY
from cards.actions import Verb
from services.bulk.service import Bulk
from tests.botkit import BotHarness, buttons, card_text
from tests.bulk_kit import directory_facts, sheet
from tests.support.dbproxy import DatabaseRelay
from tests.test_bot_outage import outage_harness, relay  # noqa: F401  (fixtures)

ROWS = 40


@pytest.mark.parametrize("database", ["postgres"], indirect=True)
async def test_an_import_cut_off_by_an_outage_resumes_when_the_database_is_back(
    outage_harness: BotHarness,  # noqa: F811
    relay: DatabaseRelay,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    harness = outage_harness
    desk = harness.client.app[BULK_DESK_KEY]
    desk.batch_size, desk.update_every = 1, 0.0
    desk.stalled_after, desk.watch_every = timedelta(0), 0.2
    text = sheet(
        [[f"User {i}", f"user{i}@contoso.example", "Basic", "", ""] for i in range(ROWS)]
    ).decode()
    preview = await harness.act(Verb.BULK_PREVIEW, {"sheet": text})
    [apply] = [data for title, data in buttons(preview).items() if title.startswith("Apply")]
    caplog.set_level(logging.WARNING)
    assert "Import started" in card_text(
        await harness.act(Verb.BULK_APPLY, {**apply, "sheet": text})
    )
    await harness.connector.next_activity(
        10, where=lambda a: a.kind == "update" and "Applying the import" in card_text(a.body)
    )

    await relay.down()
    await asyncio.sleep(0.5)
    await relay.up()

    bulk = Bulk.of(harness.services)
    for _ in range(200):
        if await bulk.unfinished() == []:
            break
        await asyncio.sleep(0.1)
    assert await bulk.unfinished() == []
    await desk.idle()
    facts = await directory_facts(harness.services.db, harness.ent)
    assert len(facts.emails) == ROWS
    assert set(facts.creates.values()) == {1}  # every row exactly once
    await harness.connector.next_activity(
        10, where=lambda a: f"{ROWS} rows applied" in card_text(a.body)
    )
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors

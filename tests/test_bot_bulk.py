"""Bulk import and export in Teams, over real HTTP with the fake Bot Connector: the export and
the result sent through Teams' file consent flow (the bytes uploaded checked), a pasted or
attached CSV previewed, applied in the background with a progress card updated in place, a
stale preview and a second Apply refused, unsafe files refused, and an interrupted import
resumed when the bot starts."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from bot.app import build_app
from bot.features.bulk import BULK_DESK_KEY, BulkDesk, FileShelf
from cards.actions import MAX_PASTE, Verb
from services.bulk.models import BulkImport, BulkImportRow
from services.bulk.service import Bulk, read_result
from services.bulk.sheet import MAX_FILE_BYTES
from services.domain import LicenceProduct
from services.models import utcnow
from services.users import NewUser
from services.views import Actor
from tests.botkit import BotHarness, buttons, card_text, find_input
from tests.bulk_kit import directory_facts, sheet
from tests.conftest import PROVIDER, seed_enterprise
from tests.support.connector import ConnectorActivity

CONSENT = "application/vnd.microsoft.teams.card.file.consent"
FILE_INFO = "application/vnd.microsoft.teams.card.file.info"
DOWNLOAD_INFO = "application/vnd.microsoft.teams.file.download.info"
APOLOGY = "Sorry, that did not work"
ON_BOTH = pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def desk_of(harness: BotHarness) -> BulkDesk:
    """The bot's bulk desk, trusting the fake Teams' loopback file URLs."""
    desk = harness.client.app[BULK_DESK_KEY]
    desk.trusted_origins.add(harness.connector.origin)
    return desk


async def emails(harness: BotHarness) -> set[str]:
    """The e-mail addresses of the enterprise's users."""
    return set((await directory_facts(harness.services.db, harness.ent)).emails)


def _has(activity: ConnectorActivity, content_type: str) -> bool:
    return any(a.get("contentType") == content_type for a in activity.attachments)


async def consent_card(harness: BotHarness) -> dict[str, Any]:
    """The next file consent card the bot sent."""
    sent = await harness.connector.next_activity(where=lambda a: _has(a, CONSENT))
    [attachment] = sent.attachments
    return attachment


async def answer_consent(
    harness: BotHarness, attachment: dict[str, Any], action: str = "accept"
) -> tuple[int, str]:
    """Press Allow (or Decline) on a consent card: Teams' `fileConsent/invoke`; returns the
    HTTP status and the upload key."""
    url, key = harness.connector.upload_url()
    activity = harness.teams.base("invoke")
    activity["name"] = "fileConsent/invoke"
    activity["value"] = {
        "type": "fileUpload",
        "action": action,
        "context": attachment["content"]["acceptContext"],
        "uploadInfo": {
            "contentUrl": f"https://contoso-my.sharepoint.com/personal/adele/{attachment['name']}",
            "name": attachment["name"],
            "uploadUrl": url,
            "uniqueId": str(uuid.uuid4()),
            "fileType": "csv",
        },
    }
    response = await harness.client.post(activity)
    return response.status, key


async def accept_and_fetch(harness: BotHarness) -> tuple[str, bytes]:
    """Allow the next file offered; the name and the bytes the bot uploaded."""
    attachment = await consent_card(harness)
    status, key = await answer_consent(harness, attachment)
    assert status == 200
    upload = harness.connector.uploaded(key)
    size = len(upload.body)
    assert upload.headers["Content-Range"] == f"bytes 0-{size - 1}/{size}"
    assert attachment["content"]["sizeInBytes"] == size
    info = await harness.connector.next_activity(where=lambda a: _has(a, FILE_INFO))
    [card] = info.attachments
    assert card["name"] == attachment["name"] and card["content"]["fileType"] == "csv"
    return attachment["name"], upload.body


async def test_export_is_sent_through_file_consent_and_the_columns_are_on_the_card(
    harness: BotHarness,
) -> None:
    desk_of(harness)
    await harness.services.users.create(
        PROVIDER, harness.ent, NewUser("Ada Lovelace", "ada@contoso.com", LicenceProduct.ESSENTIALS)
    )
    card = await harness.act(Verb.BULK_EXPORT)
    text = card_text(card)
    assert "Export the directory" in text and "Hunt groups" in text
    assert "The user's display name." in text  # the columns are explained on the card
    name, body = await accept_and_fetch(harness)
    assert name.startswith("switchboard-users-") and name.endswith(".csv")
    assert body == await Bulk.of(harness.services).export(harness.ent)
    [row] = read_result(body)
    assert row["E-mail"] == "ada@contoso.com" and row["Licence"] == "Essentials"


async def test_an_answer_reaching_another_instance_still_gets_the_file(
    harness: BotHarness,
) -> None:
    """The consent's answer may reach another instance of the bot (or this one restarted),
    whose shelf is empty: the export is made again; a preview's list cannot be, and says so."""
    desk = desk_of(harness)
    await harness.act(Verb.BULK_EXPORT)
    attachment = await consent_card(harness)
    desk.shelf = FileShelf()
    status, key = await answer_consent(harness, attachment)
    assert status == 200
    assert harness.connector.uploaded(key).body == await Bulk.of(harness.services).export(
        harness.ent
    )

    text = FILE.decode()
    preview = await preview_paste(harness, text)
    await harness.act(
        Verb.BULK_PREVIEW_FILE, {**buttons(preview)["Full list as a file"], "sheet": text}
    )
    attachment = await consent_card(harness)
    desk.shelf = FileShelf()
    status, key = await answer_consent(harness, attachment)
    line = await harness.connector.next_activity(where=lambda a: bool(a.text))
    assert "no longer has that file" in (line.text or "")
    assert not [u for u in harness.connector.uploads if u.key == key]


async def test_typed_template_and_a_declined_file(harness: BotHarness) -> None:
    desk_of(harness)
    response = await harness.client.post(harness.teams.message("template"))
    assert response.status == 200
    attachment = await consent_card(harness)
    assert attachment["name"] == "switchboard-template.csv"
    status, key = await answer_consent(harness, attachment, "decline")
    assert status == 200
    line = await harness.connector.next_activity(where=lambda a: bool(a.text))
    assert "declined" in (line.text or "") and "nothing was saved" in (line.text or "")
    assert not [u for u in harness.connector.uploads if u.key == key]


async def test_export_in_a_channel_says_files_travel_in_the_personal_chat(
    harness: BotHarness,
) -> None:
    response = await harness.client.post(
        harness.teams.card_action(Verb.BULK_EXPORT.value, {}, conversation="channel")
    )
    assert "personal chat" in card_text(response.json()["value"])
    await harness.connector.assert_no_activity()


FILE = sheet(
    [
        ["Ada Lovelace", "ada@contoso.com", "Essentials", "", ""],
        ["Grace Hopper", "grace@contoso.com", "Basic", "", ""],
        ["Bad Number", "bad@contoso.com", "Basic", "+44 20 7946 0001", ""],
        ["Alan Turing", "alan@contoso.com", "", "", ""],
    ]
)


async def _alan(harness: BotHarness) -> None:
    await harness.services.users.create(
        PROVIDER, harness.ent, NewUser("Alan Turing", "alan@contoso.com")
    )


async def preview_paste(harness: BotHarness, text: str) -> dict[str, Any]:
    """Open import, paste, press Preview."""
    opened = await harness.act(Verb.BULK_IMPORT_OPEN)
    box = find_input(opened, "sheet")
    assert box["isMultiline"] is True and box["maxLength"] > 10_000
    return await harness.act(Verb.BULK_PREVIEW, {**buttons(opened)["Preview"], "sheet": text})


async def press_apply(harness: BotHarness, preview: dict[str, Any], text: str) -> dict[str, Any]:
    [apply] = [data for title, data in buttons(preview).items() if title.startswith("Apply")]
    return await harness.act(Verb.BULK_APPLY, {**apply, "sheet": text})


@ON_BOTH
async def test_paste_preview_apply_with_progress_result_and_result_file(
    harness: BotHarness,
) -> None:
    desk = desk_of(harness)
    desk.batch_size, desk.update_every = 1, 0.0
    await _alan(harness)
    text = FILE.decode()
    preview = await preview_paste(harness, text)
    shown = card_text(preview)
    assert "Preview of the import" in shown
    assert "Line 4 (bad@contoso.com)" in shown and "Basic" in shown  # rejected with the reason
    assert "Line 2, create ada@contoso.com" in shown
    assert find_input(preview, "sheet")["value"] == text.strip()  # the paste is kept
    before = len(await emails(harness))

    started = await press_apply(harness, preview, text)
    assert "Import started" in card_text(started)
    progress = await harness.connector.next_activity(
        where=lambda a: a.kind != "update" and "Applying the import" in card_text(a.body)
    )
    await desk.idle()
    updates = [
        a
        for a in harness.connector.activities
        if a.kind == "update" and a.activity_id == progress.activity_id
    ]
    assert len(updates) >= 2
    assert "Import finished" in card_text(updates[-1].body)
    result = await harness.connector.next_activity(
        where=lambda a: a.kind != "update" and "Failed" in card_text(a.body)
    )
    assert "2 rows applied" in card_text(result.body)
    assert len(await emails(harness)) == before + 2

    desk.shelf = FileShelf()  # the answer reaches an instance that made it again
    name, body = await accept_and_fetch(harness)
    assert name.endswith("-result.csv")
    results = {row["E-mail"]: row["Result"] for row in read_result(body)}
    assert results["ada@contoso.com"] == "applied" and results["bad@contoso.com"] == "rejected"

    # Apply pressed again: nothing twice, and how the first one went.
    again = card_text(await press_apply(harness, preview, text))
    assert "already applied" in again and "2" in again
    assert len(await emails(harness)) == before + 2


async def test_progress_updates_are_throttled(harness: BotHarness) -> None:
    """However fast batches finish, the card is updated at most once per `update_every`:
    with an hour, only the final state reaches it."""
    desk = desk_of(harness)
    desk.batch_size, desk.update_every = 1, 3600.0
    rows = [[f"User {i}", f"user{i}@contoso.com", "Basic", "", ""] for i in range(6)]
    text = sheet(rows).decode()
    await press_apply(harness, await preview_paste(harness, text), text)
    progress = await harness.connector.next_activity(
        where=lambda a: "Applying the import" in card_text(a.body)
    )
    await desk.idle()
    updates = [
        a
        for a in harness.connector.activities
        if a.kind == "update" and a.activity_id == progress.activity_id
    ]
    # The first batch is shown at once (nothing shown yet for an hour), then only the end.
    assert len(updates) <= 2
    assert "Import finished" in card_text(updates[-1].body)


async def test_the_full_preview_list_comes_as_a_file(harness: BotHarness) -> None:
    desk_of(harness)
    text = FILE.decode()
    preview = await preview_paste(harness, text)
    card = await harness.act(
        Verb.BULK_PREVIEW_FILE, {**buttons(preview)["Full list as a file"], "sheet": text}
    )
    assert "The full list is on its way as a file" in card_text(card)
    name, body = await accept_and_fetch(harness)
    assert name.startswith("switchboard-preview-")
    rows = {row["E-mail"]: row for row in read_result(body)}
    assert rows["ada@contoso.com"]["Action"] == "create"
    assert rows["bad@contoso.com"]["Action"] == "rejected" and rows["bad@contoso.com"]["Reason"]


async def test_an_import_of_another_enterprise_is_not_shown_nor_sent(
    harness: BotHarness,
) -> None:
    other = await seed_enterprise(
        harness.services, tenant_id="t-other", numbers=("+442079470000", "+442079470009")
    )
    data = sheet([["Vic", "vic@contoso.com", "Basic", "", ""]])
    bulk = Bulk.of(harness.services)
    import_id = await bulk.start(
        PROVIDER, other, data, (await bulk.preview(other, data)).token, "theirs.csv"
    )
    for verb in (Verb.BULK_PROGRESS, Verb.BULK_RESULT_FILE):
        card = await harness.act(verb, {"import_id": import_id, "ent": other})
        assert "does not exist" in card_text(card)
    await harness.connector.assert_no_activity()


async def test_apply_delivered_twice_by_teams_starts_one_import(harness: BotHarness) -> None:
    """Teams may deliver one Apply twice: the second delivery gets the first one's answer."""
    desk = desk_of(harness)
    text = FILE.decode()
    preview = await preview_paste(harness, text)
    [apply] = [data for title, data in buttons(preview).items() if title.startswith("Apply")]
    activity = harness.teams.card_action(Verb.BULK_APPLY.value, {**apply, "sheet": text})
    first = await harness.client.post(activity)
    second = await harness.client.post(activity)
    assert first.json()["value"] == second.json()["value"]
    assert "Import started" in card_text(second.json()["value"])
    await desk.idle()
    assert await Bulk.of(harness.services).unfinished() == []
    async with harness.services.db.unit_of_work(readonly=True) as uow:
        imports = (await uow.session.execute(select(func.count(BulkImport.id)))).scalar_one()
    assert imports == 1


async def test_a_busy_bot_connector_delays_the_cards_but_not_the_import(
    harness: BotHarness,
) -> None:
    desk = desk_of(harness)
    harness.connector.throttle(2, retry_after=0)
    text = FILE.decode()
    await press_apply(harness, await preview_paste(harness, text), text)
    await desk.idle()
    assert len(harness.connector.throttled) == 2
    await harness.connector.next_activity(
        where=lambda a: "Applying the import" in card_text(a.body)
    )
    result = await harness.connector.next_activity(
        where=lambda a: "3 rows applied" in card_text(a.body)
    )
    assert result.type == "message"
    assert {"ada@contoso.com", "grace@contoso.com", "alan@contoso.com"} <= await emails(harness)


async def test_a_stale_preview_is_refused_with_the_preview_as_it_stands(
    harness: BotHarness,
) -> None:
    desk_of(harness)
    text = FILE.decode()
    preview = await preview_paste(harness, text)
    await harness.services.users.create(
        PROVIDER, harness.ent, NewUser("Ada Lovelace", "ada@contoso.com", LicenceProduct.BASIC)
    )
    refused = await press_apply(harness, preview, text)
    shown = card_text(refused)
    assert "changed after that preview, so nothing was applied" in shown
    assert "Preview of the import" in shown
    assert buttons(refused)  # a fresh Apply, with the new token
    assert "grace@contoso.com" not in await emails(harness)


async def test_an_empty_or_unreadable_paste_keeps_the_box_and_says_what_to_fix(
    harness: BotHarness,
) -> None:
    card = await harness.act(Verb.BULK_PREVIEW, {"sheet": "   "})
    assert "Paste the CSV into the box first" in card_text(card)
    card = await harness.act(Verb.BULK_PREVIEW, {"sheet": "just words"})
    text = card_text(card)
    assert APOLOGY not in text and ("Import users" in text or "Preview" in text)
    long = "Name,E-mail\n" + "Ada,ada@contoso.com\n" * (MAX_PASTE // 10)
    card = await harness.act(Verb.BULK_PREVIEW, {"sheet": long})
    assert f"The box takes up to {MAX_PASTE:,} characters" in card_text(card)
    assert find_input(card, "sheet")["value"]  # what was pasted is still there


async def test_the_largest_preview_card_stays_within_what_teams_shows(
    harness: BotHarness,
) -> None:
    """A full paste box of rejected rows: the card keeps the paste, shows the first rows and
    points at the file for the rest, and stays under Teams' 28 KB."""
    row = ["Somebody With A Long Name", "someone.long@contoso.com", "Basic", "+44 20 7946 0001"]
    rows = [[row[0], f"{i}{row[1]}", *row[2:], ""] for i in range(400)]
    text = sheet(rows).decode()
    text = text[: text.rindex("\n", 0, MAX_PASTE)]
    card = await harness.act(Verb.BULK_PREVIEW, {"sheet": text})
    shown = card_text(card)
    assert "more rejected rows: every one is in the full list" in shown
    assert len(json.dumps(card).encode()) < 28 * 1024


def _file_message(harness: BotHarness, name: str, url: str, file_type: str = "csv") -> dict:
    activity = harness.teams.base("message")
    activity["text"] = ""
    activity["attachments"] = [
        {
            "contentType": DOWNLOAD_INFO,
            "contentUrl": f"https://contoso-my.sharepoint.com/personal/adele/{name}",
            "name": name,
            "content": {"downloadUrl": url, "uniqueId": str(uuid.uuid4()), "fileType": file_type},
        }
    ]
    return activity


async def send_file(harness: BotHarness, name: str, url: str, file_type: str = "csv") -> str:
    response = await harness.client.post(_file_message(harness, name, url, file_type))
    assert response.status == 200
    reply = await harness.connector.next_activity(where=lambda a: bool(a.adaptive_cards))
    [card] = reply.adaptive_cards
    harness.cards_seen.append(card)
    return card_text(card)


async def test_an_attached_csv_is_previewed_and_applied(harness: BotHarness) -> None:
    desk = desk_of(harness)
    data = sheet([["Ada Lovelace", "ada@contoso.com", "Essentials", "", ""]])
    url = harness.connector.serve_file(data)
    text = await send_file(harness, "people.csv", url)
    assert "Preview of the import" in text and "people.csv" in text
    preview = harness.cards_seen[-1]
    started = await harness.act(
        Verb.BULK_APPLY,
        next(d for t, d in buttons(preview).items() if t.startswith("Apply")),
    )
    assert "Import started" in card_text(started)
    await desk.idle()
    assert "ada@contoso.com" in await emails(harness)


async def test_files_over_5_mb_not_csv_or_not_from_teams_are_refused(
    harness: BotHarness,
) -> None:
    desk_of(harness)
    big = harness.connector.serve_file(b"Name,E-mail\n" + b"x" * MAX_FILE_BYTES)
    assert "larger than 5 MB" in await send_file(harness, "big.csv", big)

    harness.connector.downloads.clear()
    text = await send_file(harness, "people.xlsx", harness.connector.serve_file(b"PK"), "xlsx")
    assert "is not a CSV file" in text and "CSV UTF-8" in text
    assert harness.connector.downloads == []

    text = await send_file(harness, "p.csv", "http://198.51.100.7/p.csv")
    assert "does not point to a file Teams keeps" in text
    text = await send_file(harness, "p.csv", "file:///etc/passwd")
    assert "does not point to a file Teams keeps" in text

    expired = harness.connector.serve_file(b"", status=403)
    assert "may have expired" in await send_file(harness, "p.csv", expired)


async def _a_minute_ago(harness: BotHarness, import_id: int) -> None:
    """Make the import's last progress a minute old, as if its process died then."""
    then = utcnow() - timedelta(minutes=1)
    async with harness.services.db.unit_of_work() as uow:
        await uow.session.execute(
            update(BulkImport).where(BulkImport.id == import_id).values(created_at=then)
        )
        await uow.session.execute(
            update(BulkImportRow)
            .where(BulkImportRow.import_id == import_id, BulkImportRow.finished_at.is_not(None))
            .values(finished_at=then)
        )
        await uow.commit()


async def test_an_import_another_instance_is_applying_is_left_to_it_until_it_stalls(
    harness: BotHarness, serve_bot, bot_settings
) -> None:
    actor = Actor(harness.teams.user.aad_object_id, "Adele Vance", PROVIDER.role, harness.ent)
    data = sheet([[f"User {i}", f"user{i}@contoso.com", "Basic", "", ""] for i in range(5)])
    bulk = Bulk.of(harness.services, batch_size=2)
    import_id = await bulk.start(
        actor, harness.ent, data, (await bulk.preview(harness.ent, data)).token, "people.csv"
    )
    await bulk._run_batch(import_id, harness.ent, actor)  # moving right now, elsewhere

    second = await serve_bot(build_app(harness.services, bot_settings))
    desk = second.app[BULK_DESK_KEY]
    assert desk.tasks == {}
    assert not (await bulk.progress(import_id)).finished

    await _a_minute_ago(harness, import_id)  # that instance died
    assert await desk.resume_unfinished() == [import_id]  # what the watch does every 30 s
    await desk.idle()
    progress = await bulk.progress(import_id)
    assert progress.finished and progress.applied == 5
    facts = await directory_facts(harness.services.db, harness.ent)
    assert set(facts.creates.values()) == {1}


@ON_BOTH
async def test_an_interrupted_import_resumes_when_the_bot_starts(
    harness: BotHarness, serve_bot, bot_settings
) -> None:
    # The admin has talked to Switchboard in their personal chat: it can reach them there.
    await harness.say("help")
    actor = Actor(harness.teams.user.aad_object_id, "Adele Vance", PROVIDER.role, harness.ent)
    rows = [[f"User {i}", f"user{i}@contoso.com", "Basic", "", ""] for i in range(7)]
    data = sheet(rows)
    bulk = Bulk.of(harness.services, batch_size=3)
    preview = await bulk.preview(harness.ent, data)
    import_id = await bulk.start(actor, harness.ent, data, preview.token, "people.csv")
    # A first batch applied, then the process "died" a minute ago.
    await bulk._run_batch(import_id, harness.ent, actor)
    await _a_minute_ago(harness, import_id)

    second = await serve_bot(build_app(harness.services, bot_settings))
    desk = second.app[BULK_DESK_KEY]
    await desk.idle()
    assert (await bulk.progress(import_id)).finished
    facts = await directory_facts(harness.services.db, harness.ent)
    assert sorted(facts.emails) == sorted(f"user{i}@contoso.com" for i in range(7))
    assert set(facts.creates.values()) == {1}  # every row applied exactly once
    # The admin hears of it in their personal chat: the progress card, then the result.
    personal = harness.teams.personal_conversation()["id"]
    resumed = await harness.connector.next_activity(
        where=lambda a: "restarted during this import" in card_text(a.body)
    )
    result = await harness.connector.next_activity(
        where=lambda a: "7 rows applied" in card_text(a.body)
    )
    assert resumed.conversation_id == result.conversation_id == personal


PROPERTY = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CELLS = st.one_of(
    st.sampled_from(
        [
            "",
            "Ada",
            "ada@contoso.com",
            "Essentials",
            "basic",
            "+44 20 7946 0001",
            "1001",
            "remove",
            '"',
            ";",
            "\x00",
            "=cmd|' /C calc'!A0",
            "00 44 20 7946 0002",
            "💥",
        ]
    ),
    st.text(max_size=20),
)
HEADERS = st.lists(
    st.sampled_from(
        [
            "Name",
            "E-mail",
            "Licence",
            "Number",
            "Extension",
            "Action",
            "Caller ID",
            "PAI",
            "Hunt groups",
            "Other",
            "",
            "email",
        ]
    ),
    min_size=1,
    max_size=6,
)


@PROPERTY
@given(
    header=HEADERS,
    rows=st.lists(st.lists(CELLS, min_size=0, max_size=7), max_size=6),
    delimiter=st.sampled_from([",", ";", "\t"]),
    raw=st.one_of(st.none(), st.text(max_size=300)),
)
async def test_any_paste_gets_a_preview_or_a_clear_refusal(
    harness: BotHarness, header: list[str], rows: list[list[str]], delimiter: str, raw: str | None
) -> None:
    text = (
        raw
        if raw is not None
        else delimiter.join(header) + "\n" + "\n".join(delimiter.join(row) for row in rows)
    )
    response = await harness.client.post(
        harness.teams.card_action(Verb.BULK_PREVIEW.value, {"sheet": text})
    )
    assert response.status == 200, response.text
    body = response.json()
    assert body["statusCode"] == 200
    shown = card_text(body["value"])
    assert APOLOGY not in shown
    assert "Preview of the import" in shown or "Import users" in shown or "incomplete" in shown


@PROPERTY
@given(
    name=st.one_of(st.sampled_from(["a.csv", "a.xlsx", "", "x" * 600]), st.text(max_size=30)),
    url=st.one_of(
        st.sampled_from(["", "https://", "http://[::1", "ftp://x/y", "https://x" + "/a" * 900]),
        st.text(max_size=40),
    ),
    file_type=st.one_of(st.sampled_from(["csv", "CSV", "", "txt"]), st.text(max_size=10)),
)
async def test_any_attachment_gets_a_clear_answer(
    harness: BotHarness, name: str, url: str, file_type: str
) -> None:
    activity = _file_message(harness, "f", url, file_type)
    activity["attachments"][0]["name"] = name
    response = await harness.client.post(activity)
    assert response.status < 500, response.text
    if response.status == 200:
        reply = await harness.connector.next_activity(where=lambda a: bool(a.adaptive_cards))
        shown = card_text(reply.adaptive_cards[0])
        assert APOLOGY not in shown and shown.strip()


ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=30),
    st.sampled_from(["accept", "decline", "https://evil.example/x", "http://127.0.0.1:1/x"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["file", "ent"]), st.text(max_size=10), max_size=2),
)


@PROPERTY
@given(
    action=ANY,
    context=ANY,
    upload=st.one_of(
        ANY,
        st.dictionaries(
            st.sampled_from(["uploadUrl", "name", "uniqueId", "contentUrl", "fileType"]),
            ANY,
            max_size=5,
        ),
    ),
)
async def test_any_file_consent_answer_gets_a_clear_answer_and_uploads_nowhere_unknown(
    harness: BotHarness, action: Any, context: Any, upload: Any
) -> None:
    activity = harness.teams.base("invoke")
    activity["name"] = "fileConsent/invoke"
    activity["value"] = {
        "type": "fileUpload",
        "action": action,
        "context": context,
        "uploadInfo": upload,
    }
    response = await harness.client.post(activity)
    assert response.status == 200, response.text
    shown = card_text(response.json()["value"])
    assert shown.strip() and APOLOGY not in shown
    assert harness.connector.uploads == []


@pytest.mark.parametrize("text", ["export", "Export users", "import", "bulk import", "template"])
async def test_bulk_commands_are_understood(harness: BotHarness, text: str) -> None:
    desk_of(harness)
    response = await harness.client.post(harness.teams.message(text))
    assert response.status == 200
    reply = await harness.connector.next_activity(where=lambda a: bool(a.adaptive_cards))
    shown = card_text(reply.adaptive_cards[0])
    assert "Import users" in shown or "Export the directory" in shown or "Blank template" in shown

"""Bulk import benchmarks: preview of a 5,000-row file, and apply of 5,000 rows against the
same rows created one by one through Users.create in the same run, on SQLite and PostgreSQL;
and the same file through Teams (the bot over real HTTP, the fake Bot Connector): attached,
previewed, applied in the background with its progress card. Prints figures; asserts nothing
about time."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from bot.app import build_app
from bot.auth import BotSettings
from bot.features.bulk import BULK_DESK_KEY
from services.bulk.service import Bulk
from services.bulk.values import RowAction
from services.container import Services
from services.domain import AdminRole, LicenceProduct
from services.inventory import AUTO
from services.users import NewUser
from services.views import Actor
from tests.bench.bench_directory import fresh_postgres_url, services_at
from tests.support.activities import TeamsActivities
from tests.support.botclient import serve
from tests.support.connector import FakeConnector

ROWS = int(os.environ.get("BENCH_BULK_ROWS", "5000"))
OPERATOR = Actor("bench", "Benchmark", AdminRole.SERVICE_PROVIDER, None)
BENCH_DB = "switchboard_bench_bulk"
HEADER = "Name,E-mail,Licence,Number,Extension\r\n"


async def _enterprise(services: Services, tenant: str, block: str) -> int:
    """An enterprise with 10,000 numbers (+44 20 794<block> xxxx), extensions 10000-19999 and
    licences for everyone."""
    view = await services.enterprises.create(
        OPERATOR,
        name=f"Bench {tenant}",
        tenant_id=tenant,
        main_number="+441134960000",
        extensions=(10000, 19999),
        region="GB",
        consent=False,
    )
    await services.inventory.import_range(
        OPERATOR, view.id, f"+4420794{block}0000", f"+4420794{block}9999"
    )
    for product in LicenceProduct:
        await services.licences.set_pool(OPERATOR, view.id, product, ROWS)
    return view.id


def _rows(block: str) -> list[NewUser]:
    """The users of the file: two thirds Essentials (half with a chosen number), a third Basic;
    a quarter with a chosen extension. Chosen ones sit above the automatic ones."""
    users = []
    for i in range(ROWS):
        licence = LicenceProduct.BASIC if i % 3 == 2 else LicenceProduct.ESSENTIALS
        number = (
            f"+4420794{block}{5000 + i // 2:04d}"
            if licence is LicenceProduct.ESSENTIALS and i % 2 == 0
            else None
        )
        extension = 15000 + i if i % 4 == 0 else None
        users.append(
            NewUser(f"User {i:05d}", f"user{i}@contoso.example", licence, number, extension)
        )
    return users


def _file(users: list[NewUser]) -> bytes:
    lines = [
        f"{u.display_name},{u.email},{u.licence.label if u.licence else ''},"
        f"{u.number or ''},{u.extension if u.extension is not None else ''}\r\n"
        for u in users
    ]
    return (HEADER + "".join(lines)).encode()


async def _timed_preview(bulk: Bulk, ent: int, data: bytes) -> tuple[float, list[float]]:
    samples = []
    for _ in range(3):
        started = time.perf_counter()
        preview = await bulk.preview(ent, data)
        samples.append(time.perf_counter() - started)
    assert preview.count(RowAction.REJECTED) == 0, preview.rejected[:3]
    return min(samples), samples


async def _suite(label: str, url: str, key_dir: Path) -> list[str]:
    services = await services_at(url, key_dir)
    lines = []
    try:
        bulk = Bulk.of(services)
        ent_bulk = await _enterprise(services, f"{label}-bulk", "6")
        ent_single = await _enterprise(services, f"{label}-single", "7")
        data = _file(_rows("6"))
        best, samples = await _timed_preview(bulk, ent_bulk, data)
        lines.append(
            f"{label}: preview of a {ROWS:,}-row file of new users: best {best:.2f} s, median "
            f"{statistics.median(samples):.2f} s of 3 ({len(data) / 1024:.0f} KB; target < 2 s)"
        )
        preview = await bulk.preview(ent_bulk, data)
        started = time.perf_counter()
        progress = await bulk.apply(OPERATOR, ent_bulk, data, preview.token)
        bulk_seconds = time.perf_counter() - started
        assert progress.applied == ROWS and progress.failed == 0, progress
        exported = await bulk.export(ent_bulk)
        again, again_samples = await _timed_preview(bulk, ent_bulk, exported)
        lines.append(
            f"{label}: preview of the {ROWS:,}-user export (every row unchanged): best "
            f"{again:.2f} s, median {statistics.median(again_samples):.2f} s of 3"
        )
        started = time.perf_counter()
        for user in _rows("7"):
            await services.users.create(
                OPERATOR,
                ent_single,
                NewUser(
                    user.display_name,
                    user.email,
                    user.licence,
                    user.number,
                    user.extension if user.extension is not None else AUTO,
                ),
            )
        single_seconds = time.perf_counter() - started
        bulk_rate, single_rate = ROWS / bulk_seconds, ROWS / single_seconds
        lines.append(
            f"{label}: apply of {ROWS:,} rows: {bulk_seconds:.1f} s, {bulk_rate:,.0f} rows/s; "
            f"one by one through Users.create: {single_seconds:.1f} s, {single_rate:,.0f} rows/s; "
            f"{bulk_rate / single_rate:.1f}x (target >= 5x)"
        )
    finally:
        await services.db.dispose()
    return lines


async def _teams_suite(key_dir: Path) -> list[str]:
    """The file through Teams on SQLite: attached in the chat, previewed, applied in the
    background; against the service's own apply of the same rows in the same run."""
    services = await services_at(f"sqlite+aiosqlite:///{key_dir / 'teams.db'}", key_dir)
    connector = await FakeConnector().start()
    bot = None
    try:
        ent = await _enterprise(services, "teams-bench", "8")
        ent_service = await _enterprise(services, "teams-bench-service", "9")
        teams = TeamsActivities(service_url=connector.url, bot_app_id="", tenant_id="teams-bench")
        await services.enterprises.grant(
            OPERATOR,
            aad_object_id=teams.user.aad_object_id,
            role=AdminRole.ENTERPRISE_ADMIN,
            enterprise_id=ent,
            display_name=teams.user.name,
        )
        app = build_app(services, BotSettings())
        bot = await serve(app)
        desk = app[BULK_DESK_KEY]
        desk.trusted_origins.add(connector.origin)
        data = _file(_rows("8"))
        message = teams.base("message")
        message["attachments"] = [
            {
                "contentType": "application/vnd.microsoft.teams.file.download.info",
                "name": "people.csv",
                "content": {"downloadUrl": connector.serve_file(data), "fileType": "csv"},
            }
        ]
        started = time.perf_counter()
        await bot.post(message)
        reply = await connector.next_activity(60, where=lambda a: bool(a.adaptive_cards))
        preview_seconds = time.perf_counter() - started
        card = reply.adaptive_cards[0]
        [apply] = [
            node["data"]
            for node in _walk(card)
            if node.get("type") == "Action.Execute" and node.get("title", "").startswith("Apply")
        ]
        started = time.perf_counter()
        await bot.post(teams.card_action("bulk.apply", apply))
        await desk.idle()
        teams_seconds = time.perf_counter() - started
        updates = sum(1 for a in connector.activities if a.kind == "update")
        results = [a for a in connector.activities if "rows applied" in str(a.body)]
        assert results, "no result card"

        bulk = Bulk.of(services)
        service_data = _file(_rows("9"))
        token = (await bulk.preview(ent_service, service_data)).token
        started = time.perf_counter()
        await bulk.apply(OPERATOR, ent_service, service_data, token)
        service_seconds = time.perf_counter() - started
    finally:
        if bot is not None:
            await bot.close()
        await connector.close()
        await services.db.dispose()
    return [
        f"Teams (SQLite): {ROWS:,}-row file attached in the chat: download and preview card in "
        f"{preview_seconds:.2f} s ({len(data) / 1024:.0f} KB)",
        f"Teams (SQLite): Apply to result card: {teams_seconds:.1f} s, "
        f"{ROWS / teams_seconds:,.0f} rows/s; the service's own apply of the same rows: "
        f"{service_seconds:.1f} s (Teams runs at {service_seconds / teams_seconds:.2f}x its rate); "
        f"{updates} progress-card updates in {teams_seconds:.1f} s (at most one a second)",
    ]


def _walk(node: object) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found += _walk(value)
    elif isinstance(node, list):
        for item in node:
            found += _walk(item)
    return found


async def run() -> list[str]:
    """Both databases (PostgreSQL when TEST_DATABASE_URL is set)."""
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        key_dir = Path(tmp)
        lines += await _suite("SQLite", f"sqlite+aiosqlite:///{key_dir / 'bench.db'}", key_dir)
        lines += await _teams_suite(key_dir)
        url = await fresh_postgres_url(BENCH_DB)
        if url is None:
            lines.append("PostgreSQL: skipped (TEST_DATABASE_URL is not set)")
        else:
            lines += await _suite("PostgreSQL", url, key_dir)
    return lines

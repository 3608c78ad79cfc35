"""Directory benchmarks: free-number search in a 1,000,000-number inventory, and concurrent
auto-assignment on PostgreSQL. Prints figures; asserts nothing about time."""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from services.config import Settings
from services.container import Services
from services.db import Database
from services.domain import AdminRole, LicenceProduct
from services.inventory import AUTO
from services.passwords import PasswordVault
from services.users import NewUser, UserChanges
from services.views import Actor

INVENTORY = int(os.environ.get("BENCH_INVENTORY", "1000000"))
SEARCHES = 2000
CONCURRENT = 500
OPERATOR = Actor("bench", "Benchmark", AdminRole.SERVICE_PROVIDER, None)
BENCH_DB = "switchboard_bench"


def percentile(samples: list[float], share: float) -> float:
    """The value below which `share` of the samples fall."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def fresh_postgres_url(name: str = BENCH_DB) -> str | None:
    """A PostgreSQL database of its own for the benchmark, dropped and created anew."""
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        return None
    url = make_url(base)
    admin = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, database=url.database
    )
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    return url.set(database=name).render_as_string(hide_password=False)


async def services_at(url: str, key_dir: Path) -> Services:
    """A migrated directory over that database, with a key of its own."""
    db = Database(url)
    await db.migrate()
    settings = Settings(database_url=url, secret_key_file=key_dir / "secret.key")
    return Services.build(db, settings, PasswordVault.from_settings("", settings.secret_key_file))


async def bench_search(label: str, url: str, key_dir: Path) -> list[str]:
    """Load a large inventory, then time searches by four trailing digits."""
    services = await services_at(url, key_dir)
    try:
        enterprise = await services.enterprises.create(
            OPERATOR,
            name="Bench",
            tenant_id=f"bench-{label}",
            main_number="+442070000000",
            extensions=(1000, 1999),
        )
        first = 442080000000
        started = time.perf_counter()
        report = await services.inventory.import_range(
            OPERATOR, enterprise.id, f"+{first}", f"+{first + INVENTORY - 1}"
        )
        load_seconds = time.perf_counter() - started
        rng = random.Random(7)
        timings: list[float] = []
        hits = 0
        for i in range(SEARCHES + 100):
            digits = f"{rng.randrange(10000):04d}"
            started = time.perf_counter()
            page = await services.inventory.search_free(
                enterprise.id, digits, page_size=15, with_total=False
            )
            elapsed = (time.perf_counter() - started) * 1000
            if i >= 100:  # the first hundred warm the caches
                timings.append(elapsed)
                hits += len(page.items)
        return [
            f"search/{label}: {report.added:,} numbers loaded in {load_seconds:.1f} s "
            f"({report.added / load_seconds:,.0f}/s)",
            f"search/{label}: {SEARCHES} searches by 4 trailing digits, "
            f"p50 {statistics.median(timings):.2f} ms, p99 {percentile(timings, 0.99):.2f} ms, "
            f"max {max(timings):.2f} ms, {hits / SEARCHES:.0f} results/search "
            f"(target p99 < 10 ms: {'met' if percentile(timings, 0.99) < 10 else 'NOT met'})",
        ]
    finally:
        await services.db.dispose()


async def bench_allocation(url: str, key_dir: Path) -> list[str]:
    """500 concurrent auto-assignments from one inventory: rate and duplicates."""
    services = await services_at(url, key_dir)
    try:
        enterprise = await services.enterprises.create(
            OPERATOR,
            name="Alloc",
            tenant_id="bench-alloc",
            main_number="+442070000001",
            extensions=(1000, 1999),
        )
        await services.inventory.import_range(
            OPERATOR, enterprise.id, "+442030000000", f"+44203000{CONCURRENT * 2 - 1:04d}"
        )
        await services.licences.set_pool(
            OPERATOR, enterprise.id, LicenceProduct.ESSENTIALS, CONCURRENT
        )
        admin = Actor("bench-admin", "Bench", AdminRole.ENTERPRISE_ADMIN, enterprise.id)
        users = [
            await services.users.create(
                admin, enterprise.id, NewUser(f"U{i}", f"u{i}@bench.example")
            )
            for i in range(CONCURRENT)
        ]

        async def assign(user_id: int, version: int) -> str | None:
            view = await services.users.update(
                admin, enterprise.id, user_id, version, UserChanges(number=AUTO)
            )
            return view.number

        started = time.perf_counter()
        numbers = await asyncio.gather(*(assign(u.id, u.version) for u in users))
        elapsed = time.perf_counter() - started
        given = [n for n in numbers if n]
        return [
            f"allocate/postgres: {CONCURRENT} concurrent auto-assignments in {elapsed:.2f} s, "
            f"{len(given) / elapsed:,.0f} allocations/s, {len(set(given))} distinct numbers, "
            f"{len(given) - len(set(given))} duplicates"
        ]
    finally:
        await services.db.dispose()


async def run() -> list[str]:
    """Every directory benchmark; SQLite always, PostgreSQL when TEST_DATABASE_URL is set."""
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        key_dir = Path(scratch)
        lines += await bench_search(
            "sqlite", f"sqlite+aiosqlite:///{key_dir / 'bench.db'}", key_dir
        )
        pg = await fresh_postgres_url()
        if pg is None:
            lines.append("postgres: skipped (TEST_DATABASE_URL is not set)")
            return lines
        lines += await bench_search("postgres", pg, key_dir)
        pg = await fresh_postgres_url()
        assert pg is not None
        lines += await bench_allocation(pg, key_dir)
    return lines

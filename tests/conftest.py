"""Shared fixtures: a migrated directory on SQLite and, when configured, on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import URL, make_url

from services.config import GraphSettings, Settings
from services.container import Services
from services.db import Database
from services.domain import AdminRole, LicenceProduct, NumberStatus
from services.models import Base, PhoneNumber
from services.passwords import PasswordVault
from services.views import Actor

pytest_plugins = ["tests.support.fixtures", "tests.botkit", "tests.asterisk_kit"]

# TEST_DATABASE_URL names the server; each run works in databases of its own on it, so runs
# side by side (two checkouts, CI beside a developer) never empty each other's tables.
SERVER_URL = os.environ.get("TEST_DATABASE_URL", "")
RUN_DATABASE = f"sb_run_{os.getpid()}_{uuid.uuid4().hex[:8]}"
PG_URL = (
    make_url(SERVER_URL).set(database=RUN_DATABASE).render_as_string(hide_password=False)
    if SERVER_URL
    else ""
)
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
_pg_ready = False


async def _admin(url: URL, statement: str) -> None:
    connection = await asyncpg.connect(
        user=url.username,
        password=url.password,
        host=url.host,
        port=url.port or 5432,
        database=url.database,
    )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def run_database(name: str, *, drop: bool = False) -> None:
    """Create (or drop) a database of this run on the test server."""
    statement = (
        f"DROP DATABASE IF EXISTS {name} WITH (FORCE)" if drop else f"CREATE DATABASE {name}"
    )
    asyncio.run(_admin(make_url(SERVER_URL), statement))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Give this run its own database when a PostgreSQL server is configured."""
    if SERVER_URL:
        run_database(RUN_DATABASE)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the run's databases."""
    if SERVER_URL:
        for name in (RUN_DATABASE, *_EXTRA_DATABASES):
            run_database(name, drop=True)


_EXTRA_DATABASES: list[str] = []


async def extra_run_database(suffix: str) -> str:
    """A further database of this run (dropped with it); returns its URL."""
    name = f"{RUN_DATABASE}_{suffix}"
    server = make_url(SERVER_URL)
    await _admin(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await _admin(server, f"CREATE DATABASE {name}")
    _EXTRA_DATABASES.append(name)
    return make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without TEST_DATABASE_URL (a laptop), skip PostgreSQL tests; CI always sets it."""
    if PG_URL:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError("CI must set TEST_DATABASE_URL: the PostgreSQL tests must run")
    skip = pytest.mark.skip(reason="TEST_DATABASE_URL is not set")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


async def _fresh_postgres() -> Database:
    """The run's database, migrated once per run and emptied before each test."""
    global _pg_ready
    db = Database(PG_URL)
    if not _pg_ready:
        await db.migrate()
        _pg_ready = True
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    async with db.write_engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return db


# The mailbox the tests' deployments send e-mail from (the sandbox's provider tenant).
MAIL_SENDER = "switchboard@provider.example"


def settings_for(url: str, tmp_path: Path, *, mail_sender: str = MAIL_SENDER) -> Settings:
    """Settings for a test: the given database, a throwaway key, a mailbox to send from."""
    return Settings(
        database_url=url,
        secret_key_file=tmp_path / "secret.key",
        quarantine_days=30,
        graph=GraphSettings(mail_sender=mail_sender),
    )


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated, empty database of each kind."""
    if request.param == "postgres":
        db = await _fresh_postgres()
    else:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'switchboard.db'}")
        await db.migrate()
    yield db
    await db.dispose()


@pytest.fixture
def vault(tmp_path: Path) -> PasswordVault:
    """A vault with a key of its own."""
    return PasswordVault.from_settings("", tmp_path / "secret.key")


@pytest.fixture
def services(
    request: pytest.FixtureRequest, database: Database, vault: PasswordVault, tmp_path: Path
) -> Services:
    """The services over the test database (`@pytest.mark.without_mail`: no sender mailbox)."""
    sender = "" if request.node.get_closest_marker("without_mail") else MAIL_SENDER
    return Services.build(database, settings_for(database.url, tmp_path, mail_sender=sender), vault)


PROVIDER = Actor("sp-admin", "Provider Admin", AdminRole.SERVICE_PROVIDER, None)


async def seed_enterprise(
    services: Services,
    *,
    tenant_id: str = "tenant-contoso",
    numbers: tuple[str, str] = ("+442079460000", "+442079460099"),
    extensions: tuple[int, int] = (1000, 1099),
    essentials: int = 50,
    basic: int = 50,
    consent: bool = False,
) -> int:
    """An enterprise with a number range, an extension range and licence pools; returns its id."""
    enterprise = await services.enterprises.create(
        PROVIDER,
        name=f"Enterprise {tenant_id}",
        tenant_id=tenant_id,
        main_number="+442079461000",
        extensions=extensions,
        region="GB",
        consent=consent,
    )
    await services.inventory.import_range(PROVIDER, enterprise.id, *numbers)
    await services.licences.set_pool(PROVIDER, enterprise.id, LicenceProduct.ESSENTIALS, essentials)
    await services.licences.set_pool(PROVIDER, enterprise.id, LicenceProduct.BASIC, basic)
    return enterprise.id


def admin_of(enterprise_id: int, role: AdminRole = AdminRole.ENTERPRISE_ADMIN) -> Actor:
    """An admin acting for one enterprise."""
    return Actor(f"admin-{enterprise_id}-{role.value}", "Ada Admin", role, enterprise_id)


async def number_statuses(db: Database, enterprise_id: int) -> dict[str, NumberStatus]:
    """Each number of the enterprise's inventory and where it stands, read from the table."""
    async with db.unit_of_work(readonly=True) as uow:
        rows = await uow.session.execute(
            select(PhoneNumber.e164, PhoneNumber.status).where(
                PhoneNumber.enterprise_id == enterprise_id
            )
        )
        return {e164: status for e164, status in rows}

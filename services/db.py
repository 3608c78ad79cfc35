"""Database engines, schema migrations and the unit of work that owns each transaction."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from services.sqlite import one_trip_dbapi

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_PING = text("SELECT 1")
# asyncpg's errors for a connection that is gone or cannot be made (by name: the driver is
# optional, and several of these are reached only through SQLAlchemy's wrappers).
_ASYNCPG_UNREACHABLE = frozenset(
    {
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "PostgresConnectionError",
        "CannotConnectNowError",
        "AdminShutdownError",
        "CrashShutdownError",
        "TooManyConnectionsError",
        "InternalClientError",
    }
)
_DRIVER_PATHS = re.compile(r"[/\\](sqlalchemy|asyncpg|aiosqlite)[/\\]")
# SQLite's: the file is locked by another writer for longer than the busy timeout, or gone.
_SQLITE_UNREACHABLE = re.compile(r"database is locked|unable to open database|disk I/O error")
# Held by the transaction that migrates, released when it ends (the key is arbitrary, fixed).
_MIGRATION_LOCK = text("SELECT pg_advisory_xact_lock(7406372531911090414)")


def _prepare_sqlite(engine: AsyncEngine, *, immediate: bool) -> None:
    """WAL, foreign keys, a busy timeout; writers take the lock at BEGIN, so they never deadlock.

    Readers run each statement in its own implicit transaction: a reader holds no lock and
    saves the round trips of BEGIN and ROLLBACK on every request.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the "begin" hook below issues BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    if immediate:

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """The engines of one database: writers and readers (separate only on SQLite)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        # JSON columns hold whole cards (the ledger's answers): orjson writes them several
        # times faster than the standard library.
        options: dict[str, Any] = {"echo": echo, "json_serializer": _json_text}
        if self.is_sqlite:
            database = parsed.database or ""
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            # Every unit of work ends in an explicit commit or rollback: no reset on return.
            if parsed.get_driver_name() == "aiosqlite":
                options["module"] = one_trip_dbapi()
            self.write_engine = create_async_engine(
                url, pool_size=1, max_overflow=0, pool_reset_on_return=None, **options
            )
            # Each connection is a thread of its own, and threads fight over the interpreter
            # lock: two readers keep the queries flowing, more only add switching (measured
            # with 50 admins at once: a third more CPU per turn with fifteen). Readers never
            # BEGIN, so there is never anything to roll back: skipping the rollback saves a
            # trip to the driver's thread each time a reader is done.
            self.read_engine = create_async_engine(
                url,
                pool_size=2,
                max_overflow=0,
                pool_reset_on_return=None,
                skip_autocommit_rollback=True,
                **options,
            )
            _prepare_sqlite(self.write_engine, immediate=True)
            _prepare_sqlite(self.read_engine, immediate=False)
        else:
            self.write_engine = create_async_engine(
                url, pool_size=20, max_overflow=20, pool_pre_ping=True, **options
            )
            self.read_engine = self.write_engine
        self._writer = async_sessionmaker(self.write_engine, expire_on_commit=False)
        self._reader = async_sessionmaker(self.read_engine, expire_on_commit=False)
        # What the first write transaction made through this handle must carry (see carrying).
        self.claim: WriteClaim | None = None

    @property
    def is_sqlite(self) -> bool:
        """Whether this is the single-file SQLite database."""
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        """Whether this is PostgreSQL, where row locks spread work across processes."""
        return self.dialect == "postgresql"

    def unit_of_work(self, *, readonly: bool = False) -> UnitOfWork:
        """A new transaction; read-only ones do not take SQLite's write lock. A write
        transaction carries this handle's claim while the claim is still pending."""
        if readonly:
            return UnitOfWork(self._reader(), readonly=True)
        claim = self.claim if self.claim is not None and self.claim.pending else None
        return UnitOfWork(self._writer(), claim=claim)

    def carrying(self, claim: WriteClaim) -> Database:
        """This database (the same engines and pools), as one piece of work sees it: the first
        write transaction made through the handle returned carries `claim`.

        The bot's delivery ledger hands a turn's handler services over such a handle, so the
        ledger's claim on the activity commits with the turn's first change, or not at all.
        """
        carried = copy.copy(self)
        carried.claim = claim
        return carried

    async def migrate(self) -> None:
        """Bring the schema to the newest migration.

        On PostgreSQL the migration holds an advisory lock to its end, so processes started
        together take turns: the first migrates, the others find the schema up to date.
        (SQLite's write lock, taken at BEGIN, already serialises them.)
        """
        async with self.write_engine.begin() as connection:
            if self.is_postgres:
                await connection.execute(_MIGRATION_LOCK)
            await connection.run_sync(_upgrade)

    async def ping(self) -> None:
        """Run a trivial query; raises when the database cannot be reached."""
        async with self.read_engine.connect() as connection:
            await connection.execute(_PING)

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()


def is_unreachable(error: BaseException) -> bool:
    """Whether `error` (or what caused it) means the database cannot be reached right now: a
    refused or cut connection, a server shutting down, no connection free in time. Such a
    failure changed nothing, and passes when the database is back; anything else is a bug."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.TimeoutError):
            return True  # no pooled connection came free in time
        if isinstance(current, OSError | TimeoutError) and _raised_by_driver(current):
            return True  # refused or cut (not, say, a Graph request failing the same way)
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if type(current).__module__.startswith("asyncpg") and type(current).__name__ in (
            _ASYNCPG_UNREACHABLE
        ):
            return True
        if isinstance(current, sa_exc.OperationalError) and _SQLITE_UNREACHABLE.search(
            str(current.orig)
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def _raised_by_driver(error: BaseException) -> bool:
    return any(
        _DRIVER_PATHS.search(frame.f_code.co_filename)
        for frame, _ in traceback.walk_tb(error.__traceback__)
    )


def _json_text(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)  # integers beyond 64 bits, which orjson refuses


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, pointed at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "heads")


class WriteClaim(Protocol):
    """Something that must commit with the first write transaction of a piece of work, or not
    at all (the delivery ledger's claim on an activity: see services.conversations)."""

    @property
    def pending(self) -> bool:
        """Whether the next write transaction must carry this."""

    async def write(self, session: AsyncSession) -> None:
        """Add this to the transaction; raise to refuse the transaction altogether."""

    def committed(self) -> None:
        """The transaction carrying this has committed."""


class UnitOfWork:
    """One transaction: commit explicitly; anything not committed is rolled back on exit."""

    def __init__(
        self, session: AsyncSession, *, readonly: bool = False, claim: WriteClaim | None = None
    ) -> None:
        """`claim`, when given, is written first into this (write) transaction, and commits
        with it."""
        self.session = session
        self._carried: WriteClaim | None = None if readonly else claim

    async def __aenter__(self) -> UnitOfWork:
        if self._carried is not None:
            try:
                await self._carried.write(self.session)
            except BaseException:
                await self.__aexit__(None, None, None)
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.session.rollback()  # a no-op after commit
        finally:
            # A cancelled task must still hand its connection back.
            await asyncio.shield(self.session.close())

    async def commit(self) -> None:
        """Make the work of this transaction durable."""
        await self.session.commit()
        if self._carried is not None:
            self._carried.committed()
            self._carried = None

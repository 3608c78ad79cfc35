"""Write pacing shared by every worker process on every host, through PostgreSQL.

Graph's identity write budget (3,000 per 150 s) belongs to an app in a tenant, not to a
process: two workers pacing themselves to the whole budget each would earn 429s together.
One row per app and tenant holds the moments of its recent writes (the sliding window Graph
counts in) and the moment a 429's Retry-After ends. A write takes the earliest moment at
which the window still has room, under the row's lock, on the database's clock (so hosts'
clocks do not matter), and waits for it. The writes waiting in one process take their
moments together, in one transaction.

The window is counted `guard` seconds longer than Graph's: a write that is slower on its way
than the one `limit` writes later still lands in a window with room.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from services.db import Database

logger = logging.getLogger(__name__)

MAX_SLOTS_AT_ONCE = 100

_ENSURE = text(
    """
    INSERT INTO graph_write_pacing (budget_key, next_at, recent)
    VALUES (:key, clock_timestamp(), '[]')
    ON CONFLICT (budget_key) DO NOTHING
    """
)
_LOCK = text(
    """
    SELECT CAST(extract(epoch FROM clock_timestamp()) AS float8),
           CAST(extract(epoch FROM next_at) AS float8),
           recent
    FROM graph_write_pacing WHERE budget_key = :key FOR UPDATE
    """
)
_STORE = text("UPDATE graph_write_pacing SET recent = :recent WHERE budget_key = :key")
_PAUSE = text(
    """
    UPDATE graph_write_pacing
    SET next_at = greatest(next_at, clock_timestamp() + make_interval(secs => CAST(:s AS float8)))
    WHERE budget_key = :key
    """
)


def schedule(
    recent: list[float], now: float, count: int, *, limit: int, horizon: float, not_before: float
) -> tuple[list[float], list[float]]:
    """The moments for `count` more writes, and the recent writes to keep (both ascending).

    A moment is the earliest at or after `now` (and `not_before`) at which fewer than `limit`
    writes fall in the `horizon` seconds before it.
    """
    kept = sorted(t for t in recent if t > now - horizon)
    earliest = max(now, not_before)
    slots: list[float] = []
    for _ in range(count):
        moment = earliest
        if len(kept) >= limit:
            moment = max(moment, kept[-limit] + horizon)
        kept.append(moment)
        slots.append(moment)
    return slots, kept


class SharedWriteBudget:
    """The write windows of each app and tenant, kept in the database all workers share."""

    def __init__(self, db: Database, limit: int, window: float, guard: float = 1.0) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a write budget needs a positive limit and window")
        self.db = db
        self.limit = limit
        self.horizon = window + max(0.0, guard)
        # Its own connection: the schedule must not queue behind the workers' transactions.
        self._engine = create_async_engine(db.url, pool_size=1, max_overflow=1, pool_pre_ping=True)
        self.reserved = 0
        self.round_trips = 0
        self._waiting: dict[str, list[asyncio.Future[float]]] = {}
        self._reserving: dict[str, asyncio.Task[None]] = {}

    async def acquire(self, key: str) -> None:
        """Take the next moment the window of `key` has room for, and wait until it comes."""
        loop = asyncio.get_running_loop()
        slot: asyncio.Future[float] = loop.create_future()
        self._waiting.setdefault(key, []).append(slot)
        reserving = self._reserving.get(key)
        if reserving is None or reserving.done():
            self._reserving[key] = asyncio.create_task(self._reserve(key))
        at = await slot
        wait = at - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _reserve(self, key: str) -> None:
        """Hand the waiting writes their moments, as many at a time as are waiting."""
        loop = asyncio.get_running_loop()
        waiting = self._waiting.setdefault(key, [])
        while waiting:
            batch = waiting[:MAX_SLOTS_AT_ONCE]
            del waiting[: len(batch)]
            try:
                async with self._engine.begin() as connection:
                    waits = await self._take(connection, key, len(batch))
                here = loop.time()
            except BaseException as error:
                for slot in batch:
                    if not slot.done():
                        slot.set_exception(error)
                if isinstance(error, asyncio.CancelledError):
                    raise
                continue
            self.round_trips += 1
            self.reserved += len(batch)
            for slot, wait in zip(batch, waits, strict=True):
                if not slot.done():
                    slot.set_result(here + wait)

    async def _take(self, connection: AsyncConnection, key: str, count: int) -> list[float]:
        await connection.execute(_ENSURE, {"key": key})
        now, not_before, raw = (await connection.execute(_LOCK, {"key": key})).one()
        recent = _floats(raw)
        slots, kept = schedule(
            recent,
            float(now),
            count,
            limit=self.limit,
            horizon=self.horizon,
            not_before=float(not_before),
        )
        await connection.execute(_STORE, {"key": key, "recent": json.dumps(kept)})
        return [slot - float(now) for slot in slots]

    async def close(self) -> None:
        """Let go of the schedule's connection."""
        for task in self._reserving.values():
            task.cancel()
        await self._engine.dispose()

    async def pause(self, key: str, seconds: float) -> None:
        """Graph asked for a pause: no worker writes for `key` before it ends."""
        async with self._engine.begin() as connection:
            await connection.execute(_ENSURE, {"key": key})
            await connection.execute(_PAUSE, {"key": key, "s": max(0.0, seconds)})
        logger.info("Graph writes for one tenant paused %.1fs for every worker", seconds)


def _floats(raw: Any) -> list[float]:
    """The stored moments (JSON, as the driver hands it back), as numbers."""
    value = json.loads(raw) if isinstance(raw, str) else raw
    return [float(t) for t in value] if isinstance(value, list) else []

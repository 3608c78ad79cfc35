"""Write pacing shared by every worker process on every host, through PostgreSQL.

Graph's identity write budget (3,000 per 150 s) belongs to an app in a tenant, not to a
process: two workers pacing themselves to the whole budget each would earn 429s together.
One row per app and tenant holds the moment the next write may leave; each write moves it on
by one interval in a single atomic statement and waits until its own moment (a generic cell
rate schedule, computed on the database's clock so hosts' clocks do not matter). A 429's
Retry-After moves it for everyone.

Writes are spaced evenly, `(window + guard) / limit` apart: in any window at most `limit`
leave, with `guard` seconds to spare for a request that is slower on the way than the next.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text

from services.db import Database

logger = logging.getLogger(__name__)

_RESERVE = text(
    """
    INSERT INTO graph_write_pacing (budget_key, next_at)
    VALUES (:key, clock_timestamp() + make_interval(secs => CAST(:interval AS float8)))
    ON CONFLICT (budget_key) DO UPDATE
        SET next_at = greatest(graph_write_pacing.next_at, clock_timestamp())
            + make_interval(secs => CAST(:interval AS float8))
    RETURNING CAST(extract(epoch FROM next_at - clock_timestamp()) AS float8)
        - CAST(:interval AS float8)
    """
)
_PAUSE = text(
    """
    INSERT INTO graph_write_pacing (budget_key, next_at)
    VALUES (:key, clock_timestamp() + make_interval(secs => CAST(:seconds AS float8)))
    ON CONFLICT (budget_key) DO UPDATE
        SET next_at = greatest(
            graph_write_pacing.next_at,
            clock_timestamp() + make_interval(secs => CAST(:seconds AS float8))
        )
    """
)


class SharedWriteBudget:
    """The write schedule of each app and tenant, kept in the database all workers share."""

    def __init__(self, db: Database, limit: int, window: float, guard: float = 1.0) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a write budget needs a positive limit and window")
        self.db = db
        self.interval = (window + max(0.0, guard)) / limit
        self.reserved = 0

    async def acquire(self, key: str) -> None:
        """Take the next slot of `key`'s schedule and wait until it comes."""
        async with self.db.write_engine.begin() as connection:
            wait = float(
                (
                    await connection.execute(_RESERVE, {"key": key, "interval": self.interval})
                ).scalar_one()
            )
        self.reserved += 1
        if wait > 0:
            await asyncio.sleep(wait)

    async def pause(self, key: str, seconds: float) -> None:
        """Graph asked for a pause: no worker writes for `key` before it ends."""
        async with self.db.write_engine.begin() as connection:
            await connection.execute(_PAUSE, {"key": key, "seconds": max(0.0, seconds)})
        logger.info("Graph writes for one tenant paused %.1fs for every worker", seconds)

"""One PBX writer per enterprise at a time, across processes: a lease row in the directory.

Pushes read the directory's state after taking the lease and write it before giving the lease
back, so the last write to any number or extension always carries the newest state.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.models import PbxLease


async def take_lease(
    session: AsyncSession, enterprise_id: int, holder: str, now: datetime, seconds: float
) -> bool:
    """Take (or renew) the enterprise's lease in the caller's transaction; False if held."""
    expires = now + timedelta(seconds=seconds)
    dialect = session.get_bind().dialect.name
    insert = postgres_insert if dialect == "postgresql" else sqlite_insert
    created = await session.execute(
        insert(PbxLease)
        .values(enterprise_id=enterprise_id, holder=holder, expires_at=expires)
        .on_conflict_do_nothing(index_elements=["enterprise_id"])
    )
    if getattr(created, "rowcount", 0) == 1:
        return True
    taken = await session.execute(
        update(PbxLease)
        .where(
            PbxLease.enterprise_id == enterprise_id,
            or_(PbxLease.holder == holder, PbxLease.expires_at <= now),
        )
        .values(holder=holder, expires_at=expires)
        .execution_options(synchronize_session=False)
    )
    return getattr(taken, "rowcount", 0) == 1


async def give_back(session: AsyncSession, enterprise_id: int, holder: str, now: datetime) -> None:
    """End the lease at once, if this holder still has it."""
    await session.execute(
        update(PbxLease)
        .where(PbxLease.enterprise_id == enterprise_id, PbxLease.holder == holder)
        .values(expires_at=now)
        .execution_options(synchronize_session=False)
    )

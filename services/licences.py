"""Licence pools: Essentials (DDI + extension) and Basic (extension only), per enterprise."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services import journal
from services.db import Database
from services.domain import LicenceProduct
from services.enterprises import load_enterprise
from services.errors import NotEnoughSubscriptionsError, ValidationError
from services.models import LicencePool
from services.views import Actor, PoolView

# Built once, on the table rather than the model: no objects in the session to keep in step.
_POOLS = cast(Table, LicencePool.__table__)
_TAKE = (
    update(_POOLS)
    .where(
        _POOLS.c.enterprise_id == bindparam("ent"),
        _POOLS.c.product == bindparam("pooled"),
        _POOLS.c.used + bindparam("count") <= _POOLS.c.total,
    )
    .values(used=_POOLS.c.used + bindparam("count"))
)


async def take_licences(
    session: AsyncSession, enterprise_id: int, product: LicenceProduct, count: int = 1
) -> None:
    """Take `count` licences from the pool in one atomic step, or refuse with the pool's counts."""
    taken = await session.execute(_TAKE, {"ent": enterprise_id, "pooled": product, "count": count})
    if getattr(taken, "rowcount", 0) == 1:
        return
    pool = await _pool(session, enterprise_id, product)
    total, used = (pool.total, pool.used) if pool else (0, 0)
    raise NotEnoughSubscriptionsError(
        f"Not enough subscriptions in the {product.label} pool: {used} of {total} in use, "
        f"{total - used} free, {count} needed. Ask your service provider for more "
        f"{product.label} licences.",
        field="licence",
    )


async def return_licence(
    session: AsyncSession, enterprise_id: int, product: LicenceProduct
) -> None:
    """Give one licence back to its pool."""
    await session.execute(
        update(LicencePool)
        .where(
            LicencePool.enterprise_id == enterprise_id,
            LicencePool.product == product,
            LicencePool.used > 0,
        )
        .values(used=LicencePool.used - 1)
    )


async def _pool(
    session: AsyncSession, enterprise_id: int, product: LicenceProduct
) -> LicencePool | None:
    return (
        await session.execute(
            select(LicencePool).where(
                LicencePool.enterprise_id == enterprise_id, LicencePool.product == product
            )
        )
    ).scalar_one_or_none()


class Licences:
    """The licence pools of the enterprises."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def set_pool(
        self, actor: Actor, enterprise_id: int, product: LicenceProduct, total: int
    ) -> PoolView:
        """Set how many licences of a product the enterprise's subscription holds."""
        if total < 0:
            raise ValidationError("A pool cannot hold fewer than 0 licences.", field="total")
        async with self.db.unit_of_work() as uow:
            await load_enterprise(uow.session, enterprise_id)
            pool = await _pool(uow.session, enterprise_id, product)
            before = {"total": pool.total} if pool else None
            if pool is None:
                pool = LicencePool(enterprise_id=enterprise_id, product=product, total=0, used=0)
                uow.session.add(pool)
            if total < pool.used:
                raise ValidationError(
                    f"{pool.used} {product.label} licences are in use; "
                    f"the pool cannot shrink below that.",
                    field="total",
                )
            pool.total = total
            journal.audit(
                uow.session,
                actor,
                enterprise_id,
                "licences.set_pool",
                product.value,
                before=before,
                after={"total": total},
            )
            await uow.commit()
            return PoolView(product, pool.total, pool.used)

    async def pools(self, enterprise_id: int) -> list[PoolView]:
        """Every pool of the enterprise, with its counts (empty pools included)."""
        async with self.db.unit_of_work(readonly=True) as uow:
            rows = (
                await uow.session.execute(
                    select(LicencePool).where(LicencePool.enterprise_id == enterprise_id)
                )
            ).scalars()
            found = {pool.product: PoolView(pool.product, pool.total, pool.used) for pool in rows}
        return [found.get(product, PoolView(product, 0, 0)) for product in LicenceProduct]

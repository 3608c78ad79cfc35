"""Hunt groups: create one in an enterprise, give it an extension and a direct number, add
and remove members, list a user's groups.

Every membership change queues a push of the member's line, and every change of the group's
numbers or ring strategy a push of the group, so the PBX queue follows at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services import journal
from services.db import Database
from services.domain import MAX_GROUP_NAME, NumberStatus, RingStrategy
from services.enterprises import load_enterprise
from services.errors import ConflictError, NotFoundError, ValidationError
from services.inventory import claim_extension, claim_number, parse_extension
from services.models import (
    Enterprise,
    Extension,
    HuntGroup,
    HuntGroupMember,
    PhoneNumber,
    User,
    utcnow,
)
from services.pbx.lines import queue_name
from services.phone import to_e164
from services.views import Actor, HuntGroupMemberView, HuntGroupView


def parse_strategy(raw: str | RingStrategy) -> RingStrategy:
    """A ring strategy by its value, or a ValidationError listing the choices."""
    try:
        return RingStrategy(str(raw).strip().lower())
    except ValueError:
        choices = ", ".join(s.value for s in RingStrategy)
        raise ValidationError(
            f"“{str(raw)[:20]}” is not a ring strategy; use one of {choices}.", field="strategy"
        ) from None


def clean_group_name(raw: str) -> str:
    """A hunt group name with its white space tidied, or a ValidationError."""
    name = " ".join((raw or "").split())
    if not name:
        raise ValidationError("Give the hunt group a name, e.g. Sales.", field="name")
    if len(name) > MAX_GROUP_NAME:
        raise ValidationError(
            f"The name has {len(name)} characters; use at most {MAX_GROUP_NAME}.", field="name"
        )
    return name


async def _group(session: AsyncSession, enterprise_id: int, group_id: int) -> HuntGroup:
    group = await session.get(HuntGroup, group_id)
    if group is None or group.enterprise_id != enterprise_id:
        raise NotFoundError("That hunt group does not exist in this enterprise.", field="group")
    return group


async def _member_user(session: AsyncSession, enterprise_id: int, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None or user.enterprise_id != enterprise_id:
        raise NotFoundError("That user does not exist in this enterprise.", field="user")
    return user


async def _views(
    session: AsyncSession, enterprise_id: int, group_ids: Iterable[int] | None = None
) -> list[HuntGroupView]:
    counts = (
        select(HuntGroupMember.group_id, func.count().label("members"))
        .group_by(HuntGroupMember.group_id)
        .subquery()
    )
    query = (
        select(HuntGroup, func.coalesce(counts.c.members, 0), Extension.number, PhoneNumber.e164)
        .outerjoin(counts, counts.c.group_id == HuntGroup.id)
        .outerjoin(Extension, Extension.hunt_group_id == HuntGroup.id)
        .outerjoin(PhoneNumber, PhoneNumber.hunt_group_id == HuntGroup.id)
        .where(HuntGroup.enterprise_id == enterprise_id)
        .order_by(func.lower(HuntGroup.name), HuntGroup.id)
    )
    if group_ids is not None:
        query = query.where(HuntGroup.id.in_(list(group_ids)))
    return [
        HuntGroupView(
            id=group.id,
            enterprise_id=group.enterprise_id,
            name=group.name,
            queue=queue_name(group.enterprise_id, group.id),
            members=int(members),
            strategy=parse_strategy(group.strategy),
            extension=extension,
            number=number,
        )
        for group, members, extension, number in await session.execute(query)
    ]


async def _release_group_extension(session: AsyncSession, group_id: int) -> None:
    await session.execute(
        update(Extension).where(Extension.hunt_group_id == group_id).values(hunt_group_id=None)
    )


async def _release_group_number(session: AsyncSession, group_id: int, quarantine_days: int) -> None:
    """Put the group's direct number into quarantine (or free it when there is none)."""
    resting: dict[str, object] = (
        {
            "status": NumberStatus.QUARANTINED,
            "quarantined_until": utcnow() + timedelta(days=quarantine_days),
        }
        if quarantine_days > 0
        else {"status": NumberStatus.FREE}
    )
    await session.execute(
        update(PhoneNumber)
        .where(PhoneNumber.hunt_group_id == group_id)
        .values(hunt_group_id=None, **resting)
    )


async def _claim_group_extension(
    session: AsyncSession, enterprise: Enterprise, group_id: int, raw: str | int
) -> int:
    return await claim_extension(
        session, enterprise, None, parse_extension(raw), hunt_group_id=group_id
    )


async def _claim_group_number(
    session: AsyncSession, enterprise: Enterprise, group_id: int, raw: str
) -> str:
    return await claim_number(session, enterprise, None, raw, hunt_group_id=group_id)


class HuntGroups:
    """The hunt groups of the enterprises and their members."""

    def __init__(self, db: Database, quarantine_days: int = 90) -> None:
        self.db = db
        self.quarantine_days = quarantine_days

    async def create(
        self,
        actor: Actor,
        enterprise_id: int,
        name: str,
        *,
        extension: str | int | None = None,
        number: str | None = None,
        strategy: str | RingStrategy = RingStrategy.RING_ALL,
    ) -> HuntGroupView:
        """Create an empty hunt group, optionally with its extension and direct number; names
        are unique within the enterprise."""
        clean = clean_group_name(name)
        ring = parse_strategy(strategy)
        async with self.db.unit_of_work() as uow:
            session = uow.session
            enterprise = await load_enterprise(session, enterprise_id)
            taken = await session.execute(
                select(HuntGroup.id).where(
                    HuntGroup.enterprise_id == enterprise_id,
                    func.lower(HuntGroup.name) == clean.lower(),
                )
            )
            if taken.first() is not None:
                raise ConflictError(f"A hunt group called {clean} already exists.", field="name")
            group = HuntGroup(enterprise_id=enterprise_id, name=clean, strategy=ring.value)
            session.add(group)
            try:
                await session.flush()
            except IntegrityError:
                raise ConflictError(
                    f"A hunt group called {clean} already exists.", field="name"
                ) from None
            after: dict[str, object] = {"name": clean, "strategy": ring.value}
            if extension not in (None, ""):
                after["extension"] = await _claim_group_extension(
                    session, enterprise, group.id, extension
                )
            if number:
                after["number"] = await _claim_group_number(session, enterprise, group.id, number)
            journal.audit(session, actor, enterprise_id, "hunt_group.create", clean, after=after)
            journal.enqueue_group_for_pbx(session, enterprise_id, group.id, "hunt_group.create")
            [view] = await _views(session, enterprise_id, [group.id])
            await uow.commit()
        return view

    async def configure(
        self,
        actor: Actor,
        enterprise_id: int,
        group_id: int,
        *,
        extension: str | int | None,
        number: str | None,
        strategy: str | RingStrategy,
    ) -> HuntGroupView:
        """Set where callers reach the group and how it rings; a number it gives up goes into
        quarantine like a user's."""
        ring = parse_strategy(strategy)
        async with self.db.unit_of_work() as uow:
            session = uow.session
            enterprise = await load_enterprise(session, enterprise_id)
            group = await _group(session, enterprise_id, group_id)
            [before] = await _views(session, enterprise_id, [group_id])
            wanted_extension = parse_extension(extension) if extension not in (None, "") else None
            wanted_number = to_e164(number, enterprise.region) if number else None
            if wanted_extension != before.extension:
                await _release_group_extension(session, group_id)
                if wanted_extension is not None:
                    await _claim_group_extension(session, enterprise, group_id, wanted_extension)
            if wanted_number != before.number:
                await _release_group_number(session, group_id, self.quarantine_days)
                if wanted_number is not None:
                    await _claim_group_number(session, enterprise, group_id, wanted_number)
            group.strategy = ring.value
            journal.audit(
                session,
                actor,
                enterprise_id,
                "hunt_group.configure",
                group.name,
                before={
                    "extension": before.extension,
                    "number": before.number,
                    "strategy": before.strategy.value,
                },
                after={
                    "extension": wanted_extension,
                    "number": wanted_number,
                    "strategy": ring.value,
                },
            )
            journal.enqueue_group_for_pbx(session, enterprise_id, group_id, "hunt_group.configure")
            await session.flush()
            [view] = await _views(session, enterprise_id, [group_id])
            await uow.commit()
        return view

    async def delete(self, actor: Actor, enterprise_id: int, group_id: int) -> None:
        """Delete the group: its members stay, its extension is freed, its number rests in
        quarantine, and the PBX queue goes."""
        async with self.db.unit_of_work() as uow:
            session = uow.session
            group = await _group(session, enterprise_id, group_id)
            members = list(
                (
                    await session.execute(
                        select(HuntGroupMember.user_id).where(HuntGroupMember.group_id == group_id)
                    )
                ).scalars()
            )
            await _release_group_extension(session, group_id)
            await _release_group_number(session, group_id, self.quarantine_days)
            await session.execute(
                delete(HuntGroupMember).where(HuntGroupMember.group_id == group_id)
            )
            await session.delete(group)
            for user_id in members:
                journal.enqueue_for_pbx(session, enterprise_id, user_id, "user.hunt_groups")
            journal.enqueue_group_for_pbx(session, enterprise_id, group_id, "hunt_group.delete")
            journal.audit(
                session,
                actor,
                enterprise_id,
                "hunt_group.delete",
                group.name,
                before={"name": group.name},
            )
            await uow.commit()

    async def all(self, enterprise_id: int) -> list[HuntGroupView]:
        """Every hunt group of the enterprise, by name, with its member count."""
        async with self.db.unit_of_work(readonly=True) as uow:
            await load_enterprise(uow.session, enterprise_id)
            return await _views(uow.session, enterprise_id)

    async def members(self, enterprise_id: int, group_id: int) -> list[HuntGroupMemberView]:
        """The members of one hunt group, by name."""
        async with self.db.unit_of_work(readonly=True) as uow:
            await _group(uow.session, enterprise_id, group_id)
            rows = await uow.session.execute(
                select(User.id, User.display_name)
                .join(HuntGroupMember, HuntGroupMember.user_id == User.id)
                .where(HuntGroupMember.group_id == group_id)
                .order_by(func.lower(User.display_name), User.id)
            )
            return [HuntGroupMemberView(row.id, row.display_name) for row in rows]

    async def of_user(self, enterprise_id: int, user_id: int) -> list[HuntGroupView]:
        """The hunt groups the user belongs to (for the user card)."""
        async with self.db.unit_of_work(readonly=True) as uow:
            await _member_user(uow.session, enterprise_id, user_id)
            ids = (
                await uow.session.execute(
                    select(HuntGroupMember.group_id).where(HuntGroupMember.user_id == user_id)
                )
            ).scalars()
            return await _views(uow.session, enterprise_id, list(ids))

    async def add_member(
        self, actor: Actor, enterprise_id: int, group_id: int, user_id: int
    ) -> HuntGroupView:
        """Add a user with a calling licence to the group; adding a member again changes nothing."""
        [view] = await self._change(actor, enterprise_id, user_id, add={group_id}, remove=set())
        return view

    async def remove_member(
        self, actor: Actor, enterprise_id: int, group_id: int, user_id: int
    ) -> HuntGroupView:
        """Take a user out of the group; removing a non-member changes nothing."""
        [view] = await self._change(actor, enterprise_id, user_id, add=set(), remove={group_id})
        return view

    async def set_user_groups(
        self, actor: Actor, enterprise_id: int, user_id: int, group_ids: Iterable[int]
    ) -> list[HuntGroupView]:
        """Make the user a member of exactly these groups (what the user card submits)."""
        wanted = set(group_ids)
        async with self.db.unit_of_work(readonly=True) as uow:
            await _member_user(uow.session, enterprise_id, user_id)
            current = set(
                (
                    await uow.session.execute(
                        select(HuntGroupMember.group_id).where(HuntGroupMember.user_id == user_id)
                    )
                ).scalars()
            )
        if wanted != current:
            await self._change(
                actor, enterprise_id, user_id, add=wanted - current, remove=current - wanted
            )
        return await self.of_user(enterprise_id, user_id)

    async def _change(
        self, actor: Actor, enterprise_id: int, user_id: int, add: set[int], remove: set[int]
    ) -> list[HuntGroupView]:
        """Apply a membership change in one transaction; returns the groups it names."""
        async with self.db.unit_of_work() as uow:
            views = await self.change_in(uow.session, actor, enterprise_id, user_id, add, remove)
            await uow.commit()
        return views

    async def set_user_groups_in(
        self,
        session: AsyncSession,
        actor: Actor,
        enterprise_id: int,
        user_id: int,
        group_ids: Iterable[int],
    ) -> None:
        """Make the user a member of exactly these groups within the caller's transaction (the
        bulk import's), without committing."""
        wanted = set(group_ids)
        current = set(
            (
                await session.execute(
                    select(HuntGroupMember.group_id).where(HuntGroupMember.user_id == user_id)
                )
            ).scalars()
        )
        if wanted != current:
            await self.change_in(
                session,
                actor,
                enterprise_id,
                user_id,
                add=wanted - current,
                remove=current - wanted,
            )

    async def change_in(
        self,
        session: AsyncSession,
        actor: Actor,
        enterprise_id: int,
        user_id: int,
        add: set[int],
        remove: set[int],
    ) -> list[HuntGroupView]:
        """Apply a membership change within the caller's transaction; returns the groups it
        names."""
        user = await _member_user(session, enterprise_id, user_id)
        named = [await _group(session, enterprise_id, g) for g in sorted(add | remove)]
        if add and user.licence is None:
            raise ValidationError(
                f"{user.display_name} has no calling licence, so the PBX cannot ring them; "
                "give them a licence first.",
                field="user",
            )
        current = set(
            (
                await session.execute(
                    select(HuntGroupMember.group_id).where(HuntGroupMember.user_id == user_id)
                )
            ).scalars()
        )
        added = sorted(add - current)
        removed = sorted(remove & current)
        if added or removed:
            for group_id in added:
                session.add(HuntGroupMember(group_id=group_id, user_id=user_id))
            try:
                await session.flush()
            except IntegrityError:
                raise ConflictError(
                    "Someone else changed this user's hunt groups at the same moment; "
                    "reload the user and try again."
                ) from None
            await session.execute(
                delete(HuntGroupMember).where(
                    HuntGroupMember.user_id == user_id,
                    HuntGroupMember.group_id.in_(removed),
                )
            )
            names = {
                row.id: row.name
                for row in await session.execute(
                    select(HuntGroup.id, HuntGroup.name).where(
                        HuntGroup.id.in_(current | set(added))
                    )
                )
            }
            after = (current | set(added)) - set(removed)
            journal.enqueue_for_pbx(session, enterprise_id, user_id, "user.hunt_groups")
            journal.audit(
                session,
                actor,
                enterprise_id,
                "user.hunt_groups",
                user.email,
                before={"groups": sorted(names[g] for g in current)},
                after={"groups": sorted(names[g] for g in after)},
            )
        return await _views(session, enterprise_id, [g.id for g in named])

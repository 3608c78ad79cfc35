"""Hunt groups: create one in an enterprise, add and remove members, list a user's groups.

Every membership change queues a push of the member's line, so the PBX queue follows at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services import journal
from services.db import Database
from services.errors import ConflictError, NotFoundError, ValidationError
from services.inventory import load_enterprise
from services.models import HuntGroup, HuntGroupMember, User
from services.pbx.lines import queue_name
from services.views import Actor

MAX_GROUP_NAME = 64


@dataclass(frozen=True)
class HuntGroupView:
    """A hunt group as admins see it."""

    id: int
    enterprise_id: int
    name: str
    queue: str
    members: int


@dataclass(frozen=True)
class HuntGroupMemberView:
    """A member of a hunt group."""

    user_id: int
    display_name: str


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
        select(HuntGroup, func.coalesce(counts.c.members, 0))
        .outerjoin(counts, counts.c.group_id == HuntGroup.id)
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
        )
        for group, members in await session.execute(query)
    ]


class HuntGroups:
    """The hunt groups of the enterprises and their members."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, actor: Actor, enterprise_id: int, name: str) -> HuntGroupView:
        """Create an empty hunt group; names are unique within the enterprise."""
        clean = clean_group_name(name)
        async with self.db.unit_of_work() as uow:
            session = uow.session
            await load_enterprise(session, enterprise_id)
            taken = await session.execute(
                select(HuntGroup.id).where(
                    HuntGroup.enterprise_id == enterprise_id,
                    func.lower(HuntGroup.name) == clean.lower(),
                )
            )
            if taken.first() is not None:
                raise ConflictError(f"A hunt group called {clean} already exists.", field="name")
            group = HuntGroup(enterprise_id=enterprise_id, name=clean)
            session.add(group)
            try:
                await session.flush()
            except IntegrityError:
                raise ConflictError(
                    f"A hunt group called {clean} already exists.", field="name"
                ) from None
            journal.audit(
                session, actor, enterprise_id, "hunt_group.create", clean, after={"name": clean}
            )
            [view] = await _views(session, enterprise_id, [group.id])
            await uow.commit()
        return view

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
            session = uow.session
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
            views = await _views(session, enterprise_id, [g.id for g in named])
            await uow.commit()
        return views

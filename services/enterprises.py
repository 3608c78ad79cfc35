"""Enterprises and the admins who may act for them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services import journal
from services.db import Database
from services.domain import AdminRole
from services.errors import ConflictError, NotFoundError, ValidationError
from services.models import Admin, Enterprise, Extension
from services.phone import to_e164
from services.provisioning import state
from services.views import Actor, AdminView, EnterpriseView

_ADMINS = cast(Table, Admin.__table__)
_ENTERPRISES = cast(Table, Enterprise.__table__)
_VIEW_FIELDS = tuple(field.name for field in fields(EnterpriseView))
# Who someone is, and the enterprise each of their roles is for (none for a provider admin).
_IDENTIFY = (
    select(
        _ADMINS.c.role,
        _ADMINS.c.display_name.label("admin_name"),
        *(_ENTERPRISES.c[name] for name in _VIEW_FIELDS),
    )
    .select_from(_ADMINS.outerjoin(_ENTERPRISES, _ENTERPRISES.c.id == _ADMINS.c.enterprise_id))
    .where(_ADMINS.c.aad_object_id == bindparam("object_id"))
)


# Rows written per INSERT when an extension range is materialised.
_EXTENSIONS_PER_INSERT = 5_000
MAX_EXTENSION_RANGE = 100_000


async def load_enterprise(session: AsyncSession, enterprise_id: int) -> Enterprise:
    """The enterprise, or a NotFoundError an admin can read."""
    enterprise = await session.get(Enterprise, enterprise_id)
    if enterprise is None:
        raise NotFoundError("That enterprise does not exist (any more).")
    return enterprise


async def ensure_extension_range(session: AsyncSession, enterprise: Enterprise) -> None:
    """Materialise every extension of the enterprise's range, so allocation can lock rows."""
    size = enterprise.extension_end - enterprise.extension_start + 1
    if size > MAX_EXTENSION_RANGE:
        raise ValidationError(
            f"An extension range holds at most {MAX_EXTENSION_RANGE:,} extensions.",
            field="extensions",
        )
    existing = set(
        (
            await session.execute(
                select(Extension.number).where(Extension.enterprise_id == enterprise.id)
            )
        ).scalars()
    )
    missing = [
        {"enterprise_id": enterprise.id, "number": n}
        for n in range(enterprise.extension_start, enterprise.extension_end + 1)
        if n not in existing
    ]
    for start in range(0, len(missing), _EXTENSIONS_PER_INSERT):
        await session.execute(insert(Extension), missing[start : start + _EXTENSIONS_PER_INSERT])


def enterprise_view(enterprise: Enterprise | Row[Any]) -> EnterpriseView:
    """The enterprise (a model, or a row with its columns) as a plain value."""
    return EnterpriseView(**{name: getattr(enterprise, name) for name in _VIEW_FIELDS})


def parse_extension_range(text: str) -> tuple[int, int]:
    """ "1000-1999" as a pair of integers, or a ValidationError."""
    parts = [part.strip() for part in (text or "").replace("–", "-").split("-")]
    if len(parts) != 2 or not all(part.isdigit() and len(part) <= 8 for part in parts):
        raise ValidationError(
            f"“{text}” is not an extension range; write it as FIRST-LAST, e.g. 1000-1999.",
            field="extensions",
        )
    first, last = int(parts[0]), int(parts[1])
    if first > last:
        raise ValidationError(f"The range {text} ends before it starts.", field="extensions")
    return first, last


def _clean_tenant_id(raw: str) -> str:
    tenant = (raw or "").strip().lower()
    if not tenant or len(tenant) > 64 or not all(ch.isalnum() or ch in "-." for ch in tenant):
        raise ValidationError(
            "Give the enterprise's Entra tenant id (a GUID such as "
            "72f988bf-86f1-41af-91ab-2d7cd011db47).",
            field="tenant_id",
        )
    return tenant


class Enterprises:
    """Create and configure enterprises; grant admin roles."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        actor: Actor,
        *,
        name: str,
        tenant_id: str,
        main_number: str,
        extensions: tuple[int, int],
        region: str = "GB",
        consent: bool = False,
    ) -> EnterpriseView:
        """Register an enterprise (its Entra tenant), its main number and extension range."""
        clean_name = " ".join((name or "").split())
        if not clean_name:
            raise ValidationError("Give the enterprise a name.", field="name")
        tenant = _clean_tenant_id(tenant_id)
        region = (region or "GB").upper()
        main = to_e164(main_number, region, field="main_number")
        async with self.db.unit_of_work() as uow:
            enterprise = Enterprise(
                name=clean_name,
                tenant_id=tenant,
                main_number=main,
                region=region,
                extension_start=extensions[0],
                extension_end=extensions[1],
                sp_management_consent=consent,
            )
            uow.session.add(enterprise)
            try:
                await uow.session.flush()
            except IntegrityError:
                raise ConflictError(
                    f"An enterprise with tenant id {tenant} already exists.", field="tenant_id"
                ) from None
            await ensure_extension_range(uow.session, enterprise)
            journal.audit(
                uow.session,
                actor,
                enterprise.id,
                "enterprise.create",
                tenant,
                after={"name": clean_name, "main_number": main},
            )
            await uow.commit()
            return enterprise_view(enterprise)

    async def set_consent(self, actor: Actor, enterprise_id: int, consent: bool) -> EnterpriseView:
        """Record whether the enterprise allows management by the service provider; the
        provider's admins are told when it changes."""
        return await self._set(
            actor,
            enterprise_id,
            "sp_management_consent",
            consent,
            "consent",
            also=lambda session, enterprise, before: state.consent_changed(
                session, enterprise, actor, before=bool(before)
            ),
        )

    async def set_voice_routing_policy(
        self, actor: Actor, enterprise_id: int, name: str | None
    ) -> str | None:
        """Name the enterprise's voice routing policy (None: the provider's default)."""
        cleaned = (name or "").strip() or None
        if cleaned is not None and len(cleaned) > 256:
            raise ValidationError("A voice routing policy name has at most 256 characters.")
        await self._set(
            actor, enterprise_id, "voice_routing_policy", cleaned, "voice_routing_policy"
        )
        return cleaned

    async def _set(
        self,
        actor: Actor,
        enterprise_id: int,
        column: str,
        value: object,
        action: str,
        *,
        also: Callable[[AsyncSession, Enterprise, object], None] | None = None,
    ) -> EnterpriseView:
        """Change one setting of the enterprise, audited with its value before and after;
        `also` writes what else the change calls for, in the same transaction."""
        async with self.db.unit_of_work() as uow:
            enterprise = await load_enterprise(uow.session, enterprise_id)
            before = {column: getattr(enterprise, column)}
            setattr(enterprise, column, value)
            if also is not None and before[column] != value:
                also(uow.session, enterprise, before[column])
            journal.audit(
                uow.session,
                actor,
                enterprise.id,
                f"enterprise.{action}",
                enterprise.tenant_id,
                before=before,
                after={column: value},
            )
            await uow.commit()
            return enterprise_view(enterprise)

    async def set_extension_range(
        self, actor: Actor, enterprise_id: int, first: int, last: int
    ) -> EnterpriseView:
        """Widen or move the extension range (extensions in use stay with their users)."""
        async with self.db.unit_of_work() as uow:
            enterprise = await load_enterprise(uow.session, enterprise_id)
            before = {"extensions": f"{enterprise.extension_start}-{enterprise.extension_end}"}
            enterprise.extension_start, enterprise.extension_end = first, last
            await ensure_extension_range(uow.session, enterprise)
            journal.audit(
                uow.session,
                actor,
                enterprise.id,
                "enterprise.extensions",
                enterprise.tenant_id,
                before=before,
                after={"extensions": f"{first}-{last}"},
            )
            await uow.commit()
            return enterprise_view(enterprise)

    async def get(self, enterprise_id: int) -> EnterpriseView:
        """One enterprise."""
        async with self.db.unit_of_work(readonly=True) as uow:
            return enterprise_view(await load_enterprise(uow.session, enterprise_id))

    async def by_id(self, enterprise_id: int) -> EnterpriseView | None:
        """One enterprise, or None when there is no such enterprise."""
        async with self.db.unit_of_work(readonly=True) as uow:
            enterprise = await uow.session.get(Enterprise, enterprise_id)
            return enterprise_view(enterprise) if enterprise else None

    async def by_tenant(self, tenant_id: str) -> EnterpriseView | None:
        """The enterprise of an Entra tenant, if it is one of ours."""
        async with self.db.unit_of_work(readonly=True) as uow:
            enterprise = (
                await uow.session.execute(
                    select(Enterprise).where(Enterprise.tenant_id == (tenant_id or "").lower())
                )
            ).scalar_one_or_none()
            return enterprise_view(enterprise) if enterprise else None

    async def all(self) -> list[EnterpriseView]:
        """Every enterprise, by name."""
        async with self.db.unit_of_work(readonly=True) as uow:
            rows = await uow.session.execute(select(Enterprise).order_by(Enterprise.name))
            return [enterprise_view(e) for e in rows.scalars()]

    async def grant(
        self,
        actor: Actor,
        *,
        aad_object_id: str,
        role: AdminRole,
        enterprise_id: int | None,
        display_name: str = "",
    ) -> AdminView:
        """Let a Teams user (by Entra object id) use the bot in a role."""
        object_id = (aad_object_id or "").strip().lower()
        if not object_id:
            raise ValidationError("Give the admin's Entra object id.", field="aad_object_id")
        if role is AdminRole.SERVICE_PROVIDER:
            enterprise_id = None
        elif enterprise_id is None:
            raise ValidationError(
                "Enterprise admins and Global Admins belong to an enterprise; name it.",
                field="enterprise",
            )
        async with self.db.unit_of_work() as uow:
            if enterprise_id is not None:
                await load_enterprise(uow.session, enterprise_id)
            admin = (
                await uow.session.execute(
                    select(Admin).where(
                        Admin.aad_object_id == object_id,
                        Admin.enterprise_id.is_(None)
                        if enterprise_id is None
                        else Admin.enterprise_id == enterprise_id,
                    )
                )
            ).scalar_one_or_none()
            if admin is None:
                admin = Admin(aad_object_id=object_id, enterprise_id=enterprise_id, role=role)
                uow.session.add(admin)
            admin.role = role
            admin.display_name = display_name or admin.display_name or ""
            journal.audit(
                uow.session,
                actor,
                enterprise_id,
                "admin.grant",
                object_id,
                after={"role": role.value},
            )
            await uow.commit()
            return AdminView(object_id, admin.display_name, role, enterprise_id)

    async def identify(self, tenant_id: str, aad_object_id: str) -> AdminView | None:
        """Who this Teams user is for the bot: a role in their tenant's enterprise, or provider."""
        object_id = (aad_object_id or "").strip().lower()
        if not object_id:
            return None
        # Every turn asks this: one prepared Core statement, no ORM objects.
        async with self.db.read_engine.connect() as connection:
            rows = (await connection.execute(_IDENTIFY, {"object_id": object_id})).all()
        provider: AdminView | None = None
        for row in rows:
            if row.id is None:
                provider = AdminView(object_id, row.admin_name, row.role, None)
            elif row.tenant_id == (tenant_id or "").lower():
                return AdminView(object_id, row.admin_name, row.role, row.id, enterprise_view(row))
        return provider

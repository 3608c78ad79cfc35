"""Users of an enterprise: create, edit, enable with a licence, list, remove.

Every change runs in one transaction with its licence, number and extension
claims, its audit entry and the outbox row the sync to Microsoft consumes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import (
    Row,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from services import callerid, journal
from services.callerid import CallerIdChange
from services.db import Database
from services.directory import user_view
from services.domain import CallerIdMode, LicenceProduct
from services.enterprises import load_enterprise
from services.errors import (
    BulkRefusedError,
    ConflictError,
    DomainError,
    NotFoundError,
    ValidationError,
)
from services.inventory import (
    Auto,
    claim_extension,
    claim_extensions,
    claim_next_extension,
    claim_next_extensions,
    claim_next_number,
    claim_next_numbers,
    claim_number,
    claim_numbers,
    release_user_extension,
    release_user_number,
    user_extension,
    user_number,
)
from services.licences import return_licence, take_licences
from services.models import Enterprise, User, utcnow
from services.passwords import PasswordVault, generate_password
from services.phone import to_e164
from services.provisioning import state
from services.views import Actor, UserView

_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,63}$")
MAX_NAME = 256


@dataclass(frozen=True)
class Release:
    """Marker: take the user's number, extension or licence away."""


RELEASE = Release()


@dataclass(frozen=True)
class NewUser:
    """What the create-user form carries."""

    display_name: str
    email: str
    licence: LicenceProduct | None = None
    number: Auto | str | None = None
    extension: Auto | int | None = None
    send_password_email: bool = False
    # Where the password e-mail goes when asked for; None: to the new account's own address.
    password_email_to: str | None = None
    notify_user: bool = False


@dataclass(frozen=True)
class UserChanges:
    """An edit: None leaves a field as it is."""

    display_name: str | None = None
    email: str | None = None
    licence: LicenceProduct | Release | None = None
    number: Auto | Release | str | None = None
    extension: Auto | Release | int | None = None
    send_password_email: bool | None = None
    notify_user: bool | None = None


def clean_display_name(raw: str) -> str:
    """A display name with its white space tidied, or a ValidationError."""
    name = " ".join((raw or "").split())
    if not name:
        raise ValidationError("Enter the user's display name.", field="display_name")
    if len(name) > MAX_NAME:
        raise ValidationError(
            f"The display name has {len(name)} characters; use at most {MAX_NAME}.",
            field="display_name",
        )
    return name


def clean_email(raw: str) -> str:
    """The primary e-mail address in lower case, or a ValidationError saying what is wrong."""
    email = (raw or "").strip().lower()
    if not email:
        raise ValidationError("Enter the user's primary e-mail address.", field="email")
    if len(email) > 254 or not _EMAIL.match(email) or ".." in email:
        raise ValidationError(
            f"“{email[:60]}” is not an e-mail address; use the form name@company.com.",
            field="email",
        )
    return email


def refuse_basic_with_number(licence: LicenceProduct | None, number: object | None) -> None:
    """A Basic licence carries no direct number: refuse a new user asking for both."""
    if licence is LicenceProduct.BASIC and number is not None:
        raise ValidationError(
            "Basic licences have no direct number; leave the number empty or choose Essentials.",
            field="number",
        )


async def _load_user(session: AsyncSession, enterprise_id: int, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None or user.enterprise_id != enterprise_id:
        raise NotFoundError("That user does not exist in this enterprise.", field="user")
    return user


async def _email_taken(
    session: AsyncSession, enterprise_id: int, email: str, except_id: int | None = None
) -> bool:
    query = select(User.id).where(User.enterprise_id == enterprise_id, User.email == email)
    if except_id is not None:
        query = query.where(User.id != except_id)
    return (await session.execute(query.limit(1))).first() is not None


def _duplicate_email(email: str) -> ConflictError:
    return ConflictError(f"A user with the e-mail {email} already exists.", field="email")


def _snapshot(user: User, number: str | None, extension: int | None) -> dict[str, Any]:
    return {
        "display_name": user.display_name,
        "email": user.email,
        "licence": user.licence.value if user.licence else None,
        "number": number,
        "extension": extension,
        "callerid_mode": user.callerid_mode.value,
        "callerid_number": user.callerid_number,
        "caller_name": user.caller_name,
        "send_pai": user.send_pai,
        "pai_number": user.pai_number,
    }


def _view(
    user: User | Row[Any], enterprise: Enterprise, number: str | None, extension: int | None
) -> UserView:
    return user_view(user, enterprise.main_number, number, extension)


async def view_of(session: AsyncSession, enterprise: Enterprise, user: User) -> UserView:
    """The user as a plain value, with their number and extension."""
    number = await user_number(session, user.id)
    extension = await user_extension(session, user.id)
    return _view(user, enterprise, number, extension)


async def _give_number(
    session: AsyncSession, enterprise: Enterprise, user: User, choice: Auto | str
) -> str:
    if user.licence is LicenceProduct.BASIC:
        raise ValidationError(
            "Basic licences have no direct number; choose Essentials to give this user a number.",
            field="number",
        )
    if isinstance(choice, Auto):
        return await claim_next_number(session, enterprise.id, user.id)
    return await claim_number(session, enterprise, user.id, choice)


async def _give_extension(
    session: AsyncSession, enterprise: Enterprise, user: User, choice: Auto | int
) -> int:
    if isinstance(choice, Auto):
        return await claim_next_extension(session, enterprise, user.id)
    return await claim_extension(session, enterprise, user.id, choice)


async def _fill_licence_needs(
    session: AsyncSession,
    enterprise: Enterprise,
    user: User,
    number: str | None,
    extension: int | None,
) -> tuple[str | None, int | None]:
    """Give a licensed user what their product includes and they do not have yet."""
    if user.licence is LicenceProduct.ESSENTIALS and number is None:
        number = await claim_next_number(session, enterprise.id, user.id)
    if user.licence is not None and extension is None:
        extension = await claim_next_extension(session, enterprise, user.id)
    return number, extension


def _new_user(
    enterprise: Enterprise, new: NewUser, display_name: str, email: str, password_ciphertext: str
) -> User:
    """The row of a new user, before their number, extension and licence are claimed."""
    return User(
        enterprise_id=enterprise.id,
        display_name=display_name,
        email=email,
        licence=new.licence,
        password_ciphertext=password_ciphertext,
        send_password_email=new.send_password_email,
        password_email_to=clean_email(new.password_email_to)
        if new.send_password_email and new.password_email_to
        else None,
        notify_user=new.notify_user,
        # Decided before the insert, so the row is written once: a licensed Essentials
        # user or a chosen number means a number of their own (or nothing commits).
        callerid_mode=CallerIdMode.OWN_DDI
        if new.number is not None or new.licence is LicenceProduct.ESSENTIALS
        else CallerIdMode.COMPANY_MAIN,
        provisioning_status=state.waiting_status(enterprise),
    )


def _journal_create(
    session: AsyncSession,
    actor: Actor,
    enterprise: Enterprise,
    user: User,
    new: NewUser,
    number: str | None,
    extension: int | None,
) -> None:
    """The outbox rows and the audit entry of a new user."""
    journal.enqueue_for_microsoft(session, enterprise, user, "user.create")
    journal.enqueue_for_pbx(session, enterprise.id, user.id, "user.create")
    journal.audit(
        session,
        actor,
        enterprise.id,
        "user.create",
        user.email,
        after=_snapshot(user, number, extension) | {"send_password_email": new.send_password_email},
    )


# Refuses an e-mail address the enterprise's Microsoft 365 would not accept (tenant id, address).
EmailDomainCheck = Callable[[str, str], Awaitable[None]]


class Users:
    """The users of the enterprises."""

    def __init__(
        self,
        db: Database,
        vault: PasswordVault,
        quarantine_days: int,
        *,
        email_domain_check: EmailDomainCheck | None = None,
    ) -> None:
        self.db = db
        self.vault = vault
        self.quarantine_days = quarantine_days
        # Also checks new and changed addresses against the tenant's verified domains.
        self.email_domain_check = email_domain_check

    async def _check_email_domain(self, enterprise_id: int, email: str) -> None:
        if self.email_domain_check is None:
            return
        async with self.db.unit_of_work(readonly=True) as uow:
            tenant_id = (await load_enterprise(uow.session, enterprise_id)).tenant_id
        await self.email_domain_check(tenant_id, email)

    async def create(self, actor: Actor, enterprise_id: int, new: NewUser) -> UserView:
        """Create a user with a generated password, and give them what the form asked for."""
        display_name = clean_display_name(new.display_name)
        email = clean_email(new.email)
        refuse_basic_with_number(new.licence, new.number)
        await self._check_email_domain(enterprise_id, email)
        # Sealed before the transaction: SQLite has one writer, and it waits for no one's CPU.
        password_ciphertext = self.vault.seal(generate_password())
        async with self.db.unit_of_work() as uow:
            enterprise = await load_enterprise(uow.session, enterprise_id)
            view = await self.create_in(
                uow.session,
                actor,
                enterprise,
                replace(new, display_name=display_name, email=email),
                password_ciphertext,
            )
            await uow.commit()
        return view

    async def create_in(
        self,
        session: AsyncSession,
        actor: Actor,
        enterprise: Enterprise,
        new: NewUser,
        password_ciphertext: str,
    ) -> UserView:
        """Create a user within the caller's transaction (the bulk import's): the same rules
        as `create`, without the e-mail domain check and without committing."""
        display_name = clean_display_name(new.display_name)
        email = clean_email(new.email)
        refuse_basic_with_number(new.licence, new.number)
        user = _new_user(enterprise, new, display_name, email, password_ciphertext)
        session.add(user)
        try:
            await session.flush()
        except IntegrityError:
            # The e-mail's unique constraint is the check: no read before the insert.
            raise _duplicate_email(email) from None
        number = (
            await _give_number(session, enterprise, user, new.number)
            if new.number is not None
            else None
        )
        extension = (
            await _give_extension(session, enterprise, user, new.extension)
            if new.extension is not None
            else None
        )
        number, extension = await _fill_licence_needs(session, enterprise, user, number, extension)
        _journal_create(session, actor, enterprise, user, new, number, extension)
        await session.flush()
        if new.licence is not None:
            # Last: the pool's row stays locked until commit, and every create needs it.
            await take_licences(session, enterprise.id, new.licence)
        return _view(user, enterprise, number, extension)

    async def create_many_in(
        self,
        session: AsyncSession,
        actor: Actor,
        enterprise: Enterprise,
        news: list[NewUser],
        password_ciphertexts: list[str],
    ) -> list[UserView]:
        """Create many users within the caller's transaction, all or none: the rules of
        `create_in`, with each kind of claim made for all of them in one round trip (the
        bulk import's fast path; on any refusal, create them one by one to learn which)."""
        cleaned = []
        for new in news:
            refuse_basic_with_number(new.licence, new.number)
            cleaned.append((clean_display_name(new.display_name), clean_email(new.email)))
        rows = [
            _new_user(enterprise, new, name, email, ciphertext)
            for new, (name, email), ciphertext in zip(
                news, cleaned, password_ciphertexts, strict=True
            )
        ]
        # Inserted in one statement, the ids read back by e-mail (unique in the enterprise),
        # then loaded: the ORM's flush would insert them one by one to read each id.
        columns = [c.key for c in User.__mapper__.column_attrs if c.key != "id"]
        values = [
            {key: value for key in columns if (value := getattr(row, key)) is not None}
            for row in rows
        ]
        ids: dict[str, int] = {}
        try:
            # Rows without a licence leave out that column: one statement per shape.
            for shape in {tuple(row) for row in values}:
                inserted = await session.execute(
                    insert(User).returning(User.id, User.email),
                    [row for row in values if tuple(row) == shape],
                )
                ids |= {email: user_id for user_id, email in inserted}
        except IntegrityError:
            raise ConflictError("One of these e-mail addresses is taken.", field="email") from None
        loaded = {
            user.id: user
            for user in (
                await session.execute(select(User).where(User.id.in_(list(ids.values()))))
            ).scalars()
        }
        users = [loaded[ids[email]] for _, email in cleaned]
        chosen_numbers: dict[int, str] = {}
        for user, new in zip(users, news, strict=True):
            if isinstance(new.number, str):
                chosen_numbers[user.id] = to_e164(new.number, enterprise.region, field="number")
        numbers = await claim_numbers(session, enterprise, chosen_numbers)
        extensions = await claim_extensions(
            session,
            enterprise,
            {
                u.id: n.extension
                for u, n in zip(users, news, strict=True)
                if isinstance(n.extension, int)
            },
        )
        # What each licence includes, as `_fill_licence_needs` gives it one user at a time.
        numbers |= await claim_next_numbers(
            session,
            enterprise.id,
            [
                u.id
                for u, n in zip(users, news, strict=True)
                if u.id not in numbers
                and (isinstance(n.number, Auto) or u.licence is LicenceProduct.ESSENTIALS)
            ],
        )
        extensions |= await claim_next_extensions(
            session,
            enterprise,
            [
                u.id
                for u, n in zip(users, news, strict=True)
                if u.id not in extensions
                and (isinstance(n.extension, Auto) or u.licence is not None)
            ],
        )
        for user, new in zip(users, news, strict=True):
            _journal_create(
                session, actor, enterprise, user, new, numbers.get(user.id), extensions.get(user.id)
            )
        await journal.write_staged(session)
        await session.flush()
        for product in LicenceProduct:
            wanted = sum(1 for user in users if user.licence is product)
            if wanted:
                await take_licences(session, enterprise.id, product, wanted)
        return [
            _view(user, enterprise, numbers.get(user.id), extensions.get(user.id)) for user in users
        ]

    async def get(self, enterprise_id: int, user_id: int) -> UserView:
        """One user of the enterprise."""
        async with self.db.unit_of_work(readonly=True) as uow:
            enterprise = await load_enterprise(uow.session, enterprise_id)
            user = await _load_user(uow.session, enterprise_id, user_id)
            return await view_of(uow.session, enterprise, user)

    async def update(
        self,
        actor: Actor,
        enterprise_id: int,
        user_id: int,
        expected_version: int,
        changes: UserChanges,
    ) -> UserView:
        """Apply an edit made on the version the admin saw; a stale edit is refused."""
        display_name = (
            clean_display_name(changes.display_name) if changes.display_name is not None else None
        )
        email = clean_email(changes.email) if changes.email is not None else None
        if email is not None:
            await self._check_email_domain(enterprise_id, email)
        async with self.db.unit_of_work() as uow:
            enterprise = await load_enterprise(uow.session, enterprise_id)
            view = await self.update_in(
                uow.session,
                actor,
                enterprise,
                user_id,
                expected_version,
                replace(changes, display_name=display_name, email=email),
            )
            try:
                await uow.commit()
            except IntegrityError:
                raise _taken_meanwhile() from None
        return view

    async def update_in(
        self,
        session: AsyncSession,
        actor: Actor,
        enterprise: Enterprise,
        user_id: int,
        expected_version: int,
        changes: UserChanges,
    ) -> UserView:
        """Apply an edit within the caller's transaction (the bulk import's): the same rules
        as `update`, without the e-mail domain check and without committing."""
        try:
            user = await _load_user(session, enterprise.id, user_id)
            _check_version(user, expected_version)
            number = await user_number(session, user.id)
            extension = await user_extension(session, user.id)
            before = _snapshot(user, number, extension)
            if changes.display_name is not None:
                user.display_name = clean_display_name(changes.display_name)
            if changes.email is not None:
                email = clean_email(changes.email)
                if email != user.email:
                    if await _email_taken(session, enterprise.id, email, except_id=user.id):
                        raise _duplicate_email(email)
                    user.email = email
            if changes.send_password_email is not None:
                user.send_password_email = changes.send_password_email
            if changes.notify_user is not None:
                user.notify_user = changes.notify_user
            number, extension = await self._apply_allocations(
                session, enterprise, user, changes, number, extension
            )
            after = _snapshot(user, number, extension)
            if after != before:
                # Numbers and extensions live in their own tables: touch the user row so its
                # version moves, and a card shown before this change is refused, not replayed.
                user.updated_at = utcnow()
                journal.enqueue_for_microsoft(
                    session,
                    enterprise,
                    user,
                    "user.update",
                    fields=sorted(k for k in after if after[k] != before[k]),
                )
                journal.enqueue_for_pbx(session, enterprise.id, user.id, "user.update")
                journal.audit(
                    session, actor, enterprise.id, "user.update", user.email, before, after
                )
            await session.flush()
        except StaleDataError:
            raise _stale() from None
        except IntegrityError:
            raise _taken_meanwhile() from None
        return _view(user, enterprise, number, extension)

    async def _apply_allocations(
        self,
        session: AsyncSession,
        enterprise: Enterprise,
        user: User,
        changes: UserChanges,
        number: str | None,
        extension: int | None,
    ) -> tuple[str | None, int | None]:
        old_licence = user.licence
        if changes.licence is not None:
            new_licence = None if isinstance(changes.licence, Release) else changes.licence
            if new_licence != old_licence:
                if old_licence is not None:
                    await return_licence(session, enterprise.id, old_licence)
                if new_licence is not None:
                    await take_licences(session, enterprise.id, new_licence)
                user.licence = new_licence
                if new_licence is LicenceProduct.BASIC and number is not None:
                    await release_user_number(session, user.id, self.quarantine_days)
                    number = None
        if changes.number is not None:
            wanted = changes.number
            if isinstance(wanted, str):
                wanted = to_e164(wanted, enterprise.region, field="number")
            if not (isinstance(wanted, str) and number is not None and wanted == number):
                if number is not None:
                    await release_user_number(session, user.id, self.quarantine_days)
                    number = None
                if not isinstance(wanted, Release):
                    number = await _give_number(session, enterprise, user, wanted)
        if changes.extension is not None and changes.extension != extension:
            if extension is not None:
                await release_user_extension(session, user.id)
                extension = None
            if not isinstance(changes.extension, Release):
                extension = await _give_extension(session, enterprise, user, changes.extension)
        if (
            user.licence is LicenceProduct.ESSENTIALS
            and number is None
            and isinstance(changes.number, Release)
        ):
            raise ValidationError(
                "An Essentials user needs a direct number; choose another number instead "
                "of none, or switch the licence to Basic.",
                field="number",
            )
        if (
            user.licence is not None
            and extension is None
            and isinstance(changes.extension, Release)
        ):
            raise ValidationError(
                "A licensed user needs an extension; choose one or let Switchboard pick.",
                field="extension",
            )
        number, extension = await _fill_licence_needs(session, enterprise, user, number, extension)
        if number is None and user.callerid_mode is CallerIdMode.OWN_DDI:
            user.callerid_mode = CallerIdMode.COMPANY_MAIN
        return number, extension

    async def set_caller_id(
        self,
        actor: Actor,
        enterprise_id: int,
        user_id: int,
        expected_version: int,
        change: CallerIdChange,
    ) -> UserView:
        """Change what the user presents on outgoing calls."""
        async with self.db.unit_of_work() as uow:
            enterprise = await load_enterprise(uow.session, enterprise_id)
            view = await self.set_caller_id_in(
                uow.session, actor, enterprise, user_id, expected_version, change
            )
            await uow.commit()
        return view

    async def set_caller_id_in(
        self,
        session: AsyncSession,
        actor: Actor,
        enterprise: Enterprise,
        user_id: int,
        expected_version: int,
        change: CallerIdChange,
    ) -> UserView:
        """Change the caller ID within the caller's transaction, without committing."""
        try:
            user = await _load_user(session, enterprise.id, user_id)
            _check_version(user, expected_version)
            number = await user_number(session, user.id)
            extension = await user_extension(session, user.id)
            before = _snapshot(user, number, extension)
            await callerid.apply(session, enterprise, user, number, change)
            after = _snapshot(user, number, extension)
            if after != before:
                journal.enqueue_for_pbx(session, enterprise.id, user.id, "user.caller_id")
                journal.audit(
                    session, actor, enterprise.id, "user.caller_id", user.email, before, after
                )
            await session.flush()
        except StaleDataError:
            raise _stale() from None
        return _view(user, enterprise, number, extension)

    async def remove(
        self, actor: Actor, enterprise_id: int, user_id: int, expected_version: int
    ) -> None:
        """Remove a user: their number goes to quarantine, extension and licence back to pools."""
        async with self.db.unit_of_work() as uow:
            enterprise = await load_enterprise(uow.session, enterprise_id)
            await self.remove_in(uow.session, actor, enterprise, user_id, expected_version)
            await uow.commit()

    async def remove_in(
        self,
        session: AsyncSession,
        actor: Actor,
        enterprise: Enterprise,
        user_id: int,
        expected_version: int,
    ) -> None:
        """Remove a user within the caller's transaction, without committing."""
        try:
            user = await _load_user(session, enterprise.id, user_id)
            _check_version(user, expected_version)
            number = await release_user_number(session, user.id, self.quarantine_days)
            extension = await release_user_extension(session, user.id)
            if user.licence is not None:
                await return_licence(session, enterprise.id, user.licence)
            journal.enqueue_for_microsoft(
                session,
                enterprise,
                user,
                "user.remove",
                email=user.email,
                entra_object_id=user.entra_object_id,
                number=number,
            )
            journal.enqueue_for_pbx(session, enterprise.id, user.id, "user.remove")
            journal.audit(
                session,
                actor,
                enterprise.id,
                "user.remove",
                user.email,
                before=_snapshot(user, number, extension),
            )
            await session.flush()
            await session.delete(user)
            await session.flush()
        except StaleDataError:
            raise _stale() from None

    async def enable(
        self, actor: Actor, enterprise_id: int, user_ids: list[int], product: LicenceProduct
    ) -> list[UserView]:
        """Give many users a calling licence at once: all of them, or none with the reasons."""
        wanted = list(dict.fromkeys(user_ids))
        if not wanted:
            raise ValidationError("Select at least one user to enable.", field="users")
        async with self.db.unit_of_work() as uow:
            session = uow.session
            enterprise = await load_enterprise(session, enterprise_id)
            found = {
                user.id: user
                for user in (
                    await session.execute(
                        select(User).where(User.enterprise_id == enterprise.id, User.id.in_(wanted))
                    )
                ).scalars()
            }
            reasons: dict[int, str] = {}
            for user_id in wanted:
                user = found.get(user_id)
                if user is None:
                    reasons[user_id] = "not a user of this enterprise"
                elif user.licence is not None:
                    reasons[user_id] = f"already has a {user.licence.label} licence"
            if reasons:
                raise BulkRefusedError(
                    f"No user was enabled: {len(reasons)} of {len(wanted)} cannot be.", reasons
                )
            try:
                await take_licences(session, enterprise.id, product, len(wanted))
            except DomainError as error:
                raise BulkRefusedError(
                    error.message, dict.fromkeys(wanted, error.message)
                ) from None
            granted: list[tuple[User, str | None, int | None]] = []
            for user_id in wanted:
                user = found[user_id]
                user.licence = product
                number = await user_number(session, user.id)
                extension = await user_extension(session, user.id)
                try:
                    number, extension = await _fill_licence_needs(
                        session, enterprise, user, number, extension
                    )
                except DomainError as error:
                    raise BulkRefusedError(
                        f"No user was enabled: {error.message}", {user_id: error.message}
                    ) from None
                if number is not None and user.callerid_mode is CallerIdMode.COMPANY_MAIN:
                    user.callerid_mode = CallerIdMode.OWN_DDI
                journal.enqueue_for_microsoft(session, enterprise, user, "user.licence")
                journal.enqueue_for_pbx(session, enterprise.id, user.id, "user.licence")
                journal.audit(
                    session,
                    actor,
                    enterprise.id,
                    "user.enable",
                    user.email,
                    after={"licence": product.value, "number": number, "extension": extension},
                )
                granted.append((user, number, extension))
            await session.flush()
            views = [_view(user, enterprise, number, ext) for user, number, ext in granted]
            await uow.commit()
        return views


def _check_version(user: User, expected_version: int) -> None:
    if user.version != expected_version:
        raise _stale()


def _taken_meanwhile() -> ConflictError:
    return ConflictError(
        "Someone else changed this user or took that number at the same moment. "
        "Reload the user and try again."
    )


def _stale() -> ConflictError:
    return ConflictError(
        "Someone else saved changes to this user after you opened it. "
        "Your changes were not saved: reload the user to see theirs, then edit again.",
        field="version",
    )

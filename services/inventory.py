"""The number inventory (DDIs) and extension ranges of each enterprise.

Allocation never checks first and writes after: a free row is claimed with a
conditional UPDATE (or locked with FOR UPDATE SKIP LOCKED on PostgreSQL), and
unique constraints on `user_id` are the last line of defence.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, Update, bindparam, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services import journal
from services.db import Database
from services.domain import DigitMatch, NumberStatus
from services.enterprises import load_enterprise
from services.errors import NoFreeNumberError, ValidationError
from services.models import Enterprise, Extension, PhoneNumber, User, utcnow
from services.phone import digits_only, expand_range, pretty, reversed_digits, to_e164
from services.views import Actor, ExtensionRanges, ImportReport, Page

MAX_PAGE_SIZE = 100
_INSERT_CHUNK = 5_000
_ANALYZE_AFTER = 10_000


@dataclass(frozen=True)
class Auto:
    """Marker: let Switchboard pick the next free number or extension."""


AUTO = Auto()


def _is_postgres(session: AsyncSession) -> bool:
    """Whether this is PostgreSQL, where row locks and planner statistics are worth having."""
    return session.get_bind().dialect.name == "postgresql"


_NUMBERS = cast(Table, PhoneNumber.__table__)
_EXTENSIONS = cast(Table, Extension.__table__)


def _claim_lowest_statement(
    table: Table,
    conditions: list[ColumnElement[bool]],
    order: ColumnElement[Any],
    values: dict[str, Any],
    postgres: bool,
) -> Update:
    """Claim the first free row of an order in one statement, returning its `order` column.

    On PostgreSQL the row is locked with SKIP LOCKED, so concurrent claims each get another
    row; SQLite's single writer serialises them.
    """
    lowest = select(table.c.id).where(*conditions).order_by(order).limit(1)
    if postgres:
        lowest = lowest.with_for_update(skip_locked=True)
    return (
        update(table).where(table.c.id == lowest.scalar_subquery()).values(values).returning(order)
    )


# Built once per database kind: building a statement costs more than SQLite running it.
@cache
def _next_number_statement(postgres: bool) -> Update:
    return _claim_lowest_statement(
        _NUMBERS,
        [
            _NUMBERS.c.enterprise_id == bindparam("ent"),
            _NUMBERS.c.status == NumberStatus.FREE,
        ],
        _NUMBERS.c.e164,
        {"status": NumberStatus.ASSIGNED, "user_id": bindparam("claimant")},
        postgres,
    )


@cache
def _next_extension_statement(postgres: bool) -> Update:
    return _claim_lowest_statement(
        _EXTENSIONS,
        [
            _EXTENSIONS.c.enterprise_id == bindparam("ent"),
            _EXTENSIONS.c.user_id.is_(None),
            _EXTENSIONS.c.hunt_group_id.is_(None),
            _EXTENSIONS.c.number.between(bindparam("first"), bindparam("last")),
        ],
        _EXTENSIONS.c.number,
        {"user_id": bindparam("claimant")},
        postgres,
    )


async def sweep_quarantine(session: AsyncSession, enterprise_id: int | None) -> int:
    """Free every number whose quarantine has ended (in one enterprise, or in all); returns
    how many."""
    in_enterprise = [] if enterprise_id is None else [PhoneNumber.enterprise_id == enterprise_id]
    result = await session.execute(
        update(PhoneNumber)
        .where(
            *in_enterprise,
            PhoneNumber.status == NumberStatus.QUARANTINED,
            PhoneNumber.quarantined_until <= utcnow(),
        )
        .values(status=NumberStatus.FREE, quarantined_until=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def claim_next_number(session: AsyncSession, enterprise_id: int, user_id: int) -> str:
    """Give the user the lowest free number; race-free across transactions and processes.

    Numbers whose quarantine has ended are freed by housekeeping (`Inventory.sweep`), and
    here too when nothing else is free.
    """
    for attempt in range(2):
        e164 = (
            await session.execute(
                _next_number_statement(_is_postgres(session)),
                {"ent": enterprise_id, "claimant": user_id},
            )
        ).scalar_one_or_none()
        if e164 is not None:
            return str(e164)
        if attempt == 0 and not await sweep_quarantine(session, enterprise_id):
            break
    raise NoFreeNumberError(
        "No free number is left in this enterprise's inventory. "
        "Ask your service provider to add numbers, or release one.",
        field="number",
    )


async def claim_number(
    session: AsyncSession,
    enterprise: Enterprise,
    user_id: int | None,
    raw_number: str,
    *,
    hunt_group_id: int | None = None,
) -> str:
    """Give the user one chosen number, if it is this enterprise's and still free; or hold it
    (reserved) for the hunt group."""
    e164 = to_e164(raw_number, enterprise.region, field="number")
    holder: dict[str, Any] = (
        {"status": NumberStatus.ASSIGNED, "user_id": user_id}
        if hunt_group_id is None
        else {"status": NumberStatus.RESERVED, "hunt_group_id": hunt_group_id}
    )
    claimed = await session.execute(
        update(PhoneNumber)
        .where(
            PhoneNumber.e164 == e164,
            PhoneNumber.enterprise_id == enterprise.id,
            PhoneNumber.status == NumberStatus.FREE,
        )
        .values(holder)
    )
    if getattr(claimed, "rowcount", 0) == 1:
        return e164
    row = (
        await session.execute(
            select(PhoneNumber.status, PhoneNumber.enterprise_id).where(PhoneNumber.e164 == e164)
        )
    ).first()
    raise _not_free(e164, row if row is not None and row.enterprise_id == enterprise.id else None)


def _not_free(e164: str, row: Any) -> ValidationError:
    """Why a number cannot be given: `row` holds its status in this enterprise's inventory,
    or is None when the enterprise has no such number."""
    shown = pretty(e164)
    if row is None:
        return ValidationError(f"{shown} is not in this enterprise's inventory.", field="number")
    if row.status == NumberStatus.ASSIGNED:
        return ValidationError(f"{shown} is already assigned; pick a free number.", field="number")
    return ValidationError(
        f"{shown} is {row.status.value} and cannot be assigned now; pick a free number.",
        field="number",
    )


async def release_user_number(
    session: AsyncSession, user_id: int, quarantine_days: int
) -> str | None:
    """Take the user's number back into quarantine; returns it, or None if they had none."""
    number = (
        await session.execute(select(PhoneNumber).where(PhoneNumber.user_id == user_id))
    ).scalar_one_or_none()
    if number is None:
        return None
    number.user_id = None
    if quarantine_days > 0:
        number.status = NumberStatus.QUARANTINED
        number.quarantined_until = utcnow() + timedelta(days=quarantine_days)
    else:
        number.status = NumberStatus.FREE
    return number.e164


async def user_number(session: AsyncSession, user_id: int) -> str | None:
    """The user's direct number, if any."""
    return (
        await session.execute(select(PhoneNumber.e164).where(PhoneNumber.user_id == user_id))
    ).scalar_one_or_none()


async def claim_next_extension(session: AsyncSession, enterprise: Enterprise, user_id: int) -> int:
    """Give the user the lowest free extension of the enterprise's range."""
    number = (
        await session.execute(
            _next_extension_statement(_is_postgres(session)),
            {
                "ent": enterprise.id,
                "first": enterprise.extension_start,
                "last": enterprise.extension_end,
                "claimant": user_id,
            },
        )
    ).scalar_one_or_none()
    if number is None:
        raise NoFreeNumberError(
            f"Every extension from {enterprise.extension_start} to {enterprise.extension_end} "
            "is taken. Ask your service provider to widen the range.",
            field="extension",
        )
    return int(number)


async def claim_extension(
    session: AsyncSession,
    enterprise: Enterprise,
    user_id: int | None,
    extension: int,
    *,
    hunt_group_id: int | None = None,
) -> int:
    """Give the user (or the hunt group) one chosen extension, if it is in range and free."""
    holder = {"user_id": user_id} if hunt_group_id is None else {"hunt_group_id": hunt_group_id}
    check_extension_range(extension, enterprise.extension_start, enterprise.extension_end)
    claimed = await session.execute(
        update(Extension)
        .where(
            Extension.enterprise_id == enterprise.id,
            Extension.number == extension,
            Extension.user_id.is_(None),
            Extension.hunt_group_id.is_(None),
        )
        .values(holder)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        raise ValidationError(
            f"Extension {extension} is already taken; pick another or let Switchboard choose.",
            field="extension",
        )
    return extension


async def release_user_extension(session: AsyncSession, user_id: int) -> int | None:
    """Free the user's extension; returns it, or None if they had none."""
    row = (
        await session.execute(select(Extension).where(Extension.user_id == user_id))
    ).scalar_one_or_none()
    if row is None:
        return None
    row.user_id = None
    return row.number


async def user_extension(session: AsyncSession, user_id: int) -> int | None:
    """The user's extension, if any."""
    return (
        await session.execute(select(Extension.number).where(Extension.user_id == user_id))
    ).scalar_one_or_none()


class ClaimsShortError(ValidationError):
    """A set of claims (a bulk batch) could not all be made; claim one by one to learn which."""


async def claim_numbers(
    session: AsyncSession, enterprise: Enterprise, wanted: dict[int, str]
) -> dict[int, str]:
    """Give each user (by id) their chosen E.164 number, all or none: the same conditional
    claim as `claim_number`, for many users in one round trip."""
    if not wanted:
        return {}
    await session.execute(
        update(_NUMBERS)
        .where(
            _NUMBERS.c.e164 == bindparam("wanted"),
            _NUMBERS.c.enterprise_id == enterprise.id,
            _NUMBERS.c.status == NumberStatus.FREE,
        )
        .values(status=NumberStatus.ASSIGNED, user_id=bindparam("claimant")),
        [{"wanted": e164, "claimant": user_id} for user_id, e164 in wanted.items()],
    )
    return await _claimed(session, _NUMBERS, _NUMBERS.c.e164, wanted, "numbers")


async def claim_next_numbers(
    session: AsyncSession, enterprise_id: int, user_ids: list[int]
) -> dict[int, str]:
    """Give each user the next lowest free number, all or none (see `claim_next_number`)."""
    if not user_ids:
        return {}
    for attempt in range(2):
        lowest = (
            select(_NUMBERS.c.id, _NUMBERS.c.e164)
            .where(
                _NUMBERS.c.enterprise_id == enterprise_id,
                _NUMBERS.c.status == NumberStatus.FREE,
            )
            .order_by(_NUMBERS.c.e164)
            .limit(len(user_ids))
        )
        if _is_postgres(session):
            lowest = lowest.with_for_update(skip_locked=True)
        free = (await session.execute(lowest)).all()
        if len(free) == len(user_ids):
            break
        if attempt == 0 and not await sweep_quarantine(session, enterprise_id):
            break
    if len(free) < len(user_ids):
        raise ClaimsShortError(
            "Not enough free numbers are left in this enterprise's inventory.", field="number"
        )
    await session.execute(
        update(_NUMBERS)
        .where(_NUMBERS.c.id == bindparam("row"))
        .values(status=NumberStatus.ASSIGNED, user_id=bindparam("claimant")),
        [{"row": row.id, "claimant": user_id} for user_id, row in zip(user_ids, free, strict=True)],
    )
    return {user_id: row.e164 for user_id, row in zip(user_ids, free, strict=True)}


async def claim_extensions(
    session: AsyncSession, enterprise: Enterprise, wanted: dict[int, int]
) -> dict[int, int]:
    """Give each user their chosen extension, all or none (see `claim_extension`)."""
    if not wanted:
        return {}
    await session.execute(
        update(_EXTENSIONS)
        .where(
            _EXTENSIONS.c.enterprise_id == enterprise.id,
            _EXTENSIONS.c.number == bindparam("wanted"),
            _EXTENSIONS.c.number.between(enterprise.extension_start, enterprise.extension_end),
            _EXTENSIONS.c.user_id.is_(None),
            _EXTENSIONS.c.hunt_group_id.is_(None),
        )
        .values(user_id=bindparam("claimant")),
        [{"wanted": number, "claimant": user_id} for user_id, number in wanted.items()],
    )
    return await _claimed(session, _EXTENSIONS, _EXTENSIONS.c.number, wanted, "extensions")


async def claim_next_extensions(
    session: AsyncSession, enterprise: Enterprise, user_ids: list[int]
) -> dict[int, int]:
    """Give each user the next lowest free extension, all or none."""
    if not user_ids:
        return {}
    lowest = (
        select(_EXTENSIONS.c.id, _EXTENSIONS.c.number)
        .where(
            _EXTENSIONS.c.enterprise_id == enterprise.id,
            _EXTENSIONS.c.user_id.is_(None),
            _EXTENSIONS.c.hunt_group_id.is_(None),
            _EXTENSIONS.c.number.between(enterprise.extension_start, enterprise.extension_end),
        )
        .order_by(_EXTENSIONS.c.number)
        .limit(len(user_ids))
    )
    if _is_postgres(session):
        lowest = lowest.with_for_update(skip_locked=True)
    free = (await session.execute(lowest)).all()
    if len(free) < len(user_ids):
        raise ClaimsShortError(
            f"Not enough free extensions are left from {enterprise.extension_start} to "
            f"{enterprise.extension_end}.",
            field="extension",
        )
    await session.execute(
        update(_EXTENSIONS)
        .where(_EXTENSIONS.c.id == bindparam("row"))
        .values(user_id=bindparam("claimant")),
        [{"row": row.id, "claimant": user_id} for user_id, row in zip(user_ids, free, strict=True)],
    )
    return {user_id: int(row.number) for user_id, row in zip(user_ids, free, strict=True)}


async def _claimed(
    session: AsyncSession, table: Table, value: Any, wanted: dict[int, Any], what: str
) -> dict[int, Any]:
    """What the users now hold; refused unless every one holds what they asked for (an
    executemany's row count is not reported by every driver, so it is read back)."""
    held = {
        row.user_id: row.value
        for row in await session.execute(
            select(table.c.user_id, value.label("value")).where(table.c.user_id.in_(list(wanted)))
        )
    }
    if held != wanted:
        raise ClaimsShortError(f"Some of the chosen {what} are no longer free.")
    return held


def check_extension_range(extension: int, start: int, end: int) -> None:
    """Refuse an extension outside the enterprise's range `start`–`end`."""
    if not start <= extension <= end:
        raise ValidationError(
            f"Extension {extension} is outside this enterprise's range {start}–{end}.",
            field="extension",
        )


def parse_extension(raw: str | int, *, field: str = "extension") -> int:
    """An extension as typed: digits only, up to 8 of them."""
    text = str(raw).strip()
    if not text.isdigit() or len(text) > 8:
        raise ValidationError(f"“{text[:20]}” is not an extension; use digits only.", field=field)
    return int(text)


def _free_filter(enterprise_id: int, digits: str, match: DigitMatch) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [
        PhoneNumber.enterprise_id == enterprise_id,
        PhoneNumber.status == NumberStatus.FREE,
    ]
    if digits and match is DigitMatch.ENDS_WITH:
        prefix = digits[::-1]
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        conditions += [PhoneNumber.reversed_digits >= prefix, PhoneNumber.reversed_digits < upper]
    elif digits:
        conditions.append(PhoneNumber.e164.contains(digits, autoescape=True))
    return conditions


class Inventory:
    """Numbers and extensions of the enterprises: import, search, release."""

    def __init__(self, db: Database, quarantine_days: int) -> None:
        self.db = db
        self.quarantine_days = quarantine_days

    async def import_range(
        self, actor: Actor, enterprise_id: int, first: str, last: str
    ) -> ImportReport:
        """Add every number from `first` to `last` to the enterprise's inventory."""
        async with self.db.unit_of_work() as uow:
            enterprise = await load_enterprise(uow.session, enterprise_id)
            numbers = expand_range(first, last, enterprise.region)
            report = await self._add(uow.session, enterprise, numbers)
            journal.audit(
                uow.session,
                actor,
                enterprise.id,
                "numbers.import",
                f"{numbers[0]}..{numbers[-1]}",
                after={"added": report.added, "already_present": report.already_present},
            )
            await uow.commit()
        return report

    async def import_csv(self, actor: Actor, enterprise_id: int, text: str) -> ImportReport:
        """Add the numbers of a CSV (first column; a header line is allowed). All or nothing."""
        async with self.db.unit_of_work() as uow:
            enterprise = await load_enterprise(uow.session, enterprise_id)
            numbers, problems = [], []
            for line_no, row in enumerate(csv.reader(io.StringIO(text)), start=1):
                cell = row[0].strip() if row else ""
                if not cell or (line_no == 1 and not any(ch.isdigit() for ch in cell)):
                    continue
                try:
                    numbers.append(to_e164(cell, enterprise.region))
                except ValidationError as error:
                    problems.append(f"line {line_no}: {error.message}")
            if problems:
                shown = "; ".join(problems[:5])
                more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
                raise ValidationError(f"Nothing was imported. Fix {shown}{more}.", field="csv")
            if not numbers:
                raise ValidationError("The file holds no phone numbers.", field="csv")
            report = await self._add(uow.session, enterprise, sorted(set(numbers)))
            journal.audit(
                uow.session,
                actor,
                enterprise.id,
                "numbers.import_csv",
                f"{len(numbers)} numbers",
                after={"added": report.added, "already_present": report.already_present},
            )
            await uow.commit()
        return report

    async def _add(
        self, session: AsyncSession, enterprise: Enterprise, numbers: list[str]
    ) -> ImportReport:
        owners: dict[str, int] = {}
        for start in range(0, len(numbers), _INSERT_CHUNK):
            chunk = numbers[start : start + _INSERT_CHUNK]
            rows = await session.execute(
                select(PhoneNumber.e164, PhoneNumber.enterprise_id).where(
                    PhoneNumber.e164.in_(chunk)
                )
            )
            owners.update({row.e164: row.enterprise_id for row in rows})
        refused = sorted(n for n, owner in owners.items() if owner != enterprise.id)
        if refused:
            raise ValidationError(
                f"{len(refused)} of these numbers belong to another enterprise "
                f"(first: {refused[0]}). Nothing was imported.",
                field="numbers",
            )
        new = [n for n in numbers if n not in owners]
        for start in range(0, len(new), _INSERT_CHUNK):
            await session.execute(
                insert(PhoneNumber),
                [
                    {
                        "enterprise_id": enterprise.id,
                        "e164": n,
                        "reversed_digits": reversed_digits(n),
                        "status": NumberStatus.FREE,
                        "updated_at": utcnow(),
                    }
                    for n in new[start : start + _INSERT_CHUNK]
                ],
            )
        if len(new) >= _ANALYZE_AFTER and _is_postgres(session):
            # PostgreSQL: fresh statistics let the planner pick the digit index over the
            # ordered scan. (SQLite's statistics would count the NULL holders of free numbers
            # as one huge group and stop using the user_id index for joins.)
            await session.execute(text("ANALYZE phone_numbers"))
        return ImportReport(added=len(new), already_present=len(numbers) - len(new))

    async def search_free(
        self,
        enterprise_id: int,
        digits: str = "",
        *,
        match: DigitMatch = DigitMatch.ENDS_WITH,
        page: int = 1,
        page_size: int = 15,
        with_total: bool = True,
    ) -> Page[str]:
        """Free numbers whose digits end with (or contain) `digits`, a page at a time."""
        wanted = digits_only(digits) if digits.strip() else ""
        page = max(1, page)
        page_size = max(1, min(MAX_PAGE_SIZE, page_size))
        conditions = _free_filter(enterprise_id, wanted, match)
        async with self.db.unit_of_work(readonly=True) as uow:
            query = (
                select(PhoneNumber.e164)
                .where(*conditions)
                .order_by(PhoneNumber.e164)
                .offset((page - 1) * page_size)
                .limit(page_size)
            )
            items = list((await uow.session.execute(query)).scalars())
            total = len(items)
            if with_total:
                count_query = select(func.count()).select_from(PhoneNumber).where(*conditions)
                total = int((await uow.session.execute(count_query)).scalar_one())
        return Page(items=items, total=total, page=page, page_size=page_size)

    async def check_free(self, enterprise_id: int, raw_number: str) -> str:
        """`raw_number` as E.164 if it is this enterprise's and free now, else the refusal that
        claiming it would meet; nothing is claimed."""
        async with self.db.unit_of_work(readonly=True) as uow:
            enterprise = await load_enterprise(uow.session, enterprise_id)
            e164 = to_e164(raw_number, enterprise.region, field="number")
            row = (
                await uow.session.execute(
                    select(PhoneNumber.status, PhoneNumber.enterprise_id).where(
                        PhoneNumber.e164 == e164
                    )
                )
            ).first()
        if row is not None and row.enterprise_id == enterprise_id:
            if row.status == NumberStatus.FREE:
                return e164
            raise _not_free(e164, row)
        raise _not_free(e164, None)

    async def free_number_ending(self, enterprise_id: int, typed: str, *, field: str) -> str:
        """The one free number ending in the typed digits, or a ValidationError saying why not
        (naming the numbers that end in them but are taken)."""
        digits = digits_only(typed, field=field)
        page = await self.search_free(enterprise_id, digits, page_size=6, with_total=False)
        if not page.items:
            raise ValidationError(
                f"No free number ends in {digits}"
                + await self._taken_ending(enterprise_id, digits),
                field=field,
            )
        if len(page.items) > 1:
            listed = ", ".join(pretty(n) for n in page.items[:5])
            raise ValidationError(
                f"Several free numbers end in {digits} ({listed}"
                f"{', …' if len(page.items) > 5 else ''}); type more digits or pick one.",
                field=field,
            )
        return page.items[0]

    async def free_extensions(self, enterprise_id: int) -> ExtensionRanges:
        """The enterprise's free extensions as runs of consecutive ones, and how many are
        taken (by users or hunt groups)."""
        async with self.db.unit_of_work(readonly=True) as uow:
            enterprise = await load_enterprise(uow.session, enterprise_id)
            start, end = enterprise.extension_start, enterprise.extension_end
            taken = set(
                (
                    await uow.session.execute(
                        select(Extension.number).where(
                            Extension.enterprise_id == enterprise_id,
                            (Extension.user_id.is_not(None))
                            | (Extension.hunt_group_id.is_not(None)),
                        )
                    )
                ).scalars()
            )
        runs: list[tuple[int, int]] = []
        for extension in range(start, end + 1):
            if extension in taken:
                continue
            if runs and runs[-1][1] == extension - 1:
                runs[-1] = (runs[-1][0], extension)
            else:
                runs.append((extension, extension))
        in_range = len([t for t in taken if start <= t <= end])
        return ExtensionRanges(start, end, tuple(runs), in_range)

    async def _taken_ending(self, enterprise_id: int, digits: str) -> str:
        """The end of the "no free number" sentence: which numbers ending in `digits` exist but
        are taken, or just a full stop."""
        prefix = digits[::-1]
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        async with self.db.unit_of_work(readonly=True) as uow:
            rows = (
                await uow.session.execute(
                    select(PhoneNumber.e164, PhoneNumber.status, User.display_name)
                    .outerjoin(User, User.id == PhoneNumber.user_id)
                    .where(
                        PhoneNumber.enterprise_id == enterprise_id,
                        PhoneNumber.reversed_digits >= prefix,
                        PhoneNumber.reversed_digits < upper,
                    )
                    .order_by(PhoneNumber.e164)
                    .limit(3)
                )
            ).all()
        if not rows:
            return "."
        taken = ", ".join(
            f"{pretty(row.e164)} is "
            + (
                f"{row.display_name}'s number"
                if row.status == NumberStatus.ASSIGNED and row.display_name
                else row.status.value
            )
            for row in rows
        )
        return f": {taken}."

    async def sweep(self, enterprise_id: int | None) -> int:
        """Return numbers whose quarantine has ended to the free pool (None: every
        enterprise's)."""
        async with self.db.unit_of_work() as uow:
            freed = await sweep_quarantine(uow.session, enterprise_id)
            await uow.commit()
        return freed

"""Caller ID: which number a user presents, under which name, and the PAI header."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.domain import MAX_CALLER_NAME, CallerIdMode
from services.errors import ValidationError
from services.models import Enterprise, PhoneNumber, User
from services.phone import digits_only, pretty
from services.views import CallerIdView

_FORBIDDEN_IN_NAME = set('"<>\\;\r\n\t')


@dataclass(frozen=True)
class CallerIdChange:
    """What an admin asks for on the caller ID card."""

    mode: CallerIdMode
    number_digits: str = ""
    caller_name: str = ""
    send_pai: bool = False
    pai_digits: str = ""


def describe(user: User | Row[Any], own_number: str | None, main_number: str) -> CallerIdView:
    """The user's caller ID (a model, or a row with its columns) with the number actually
    presented resolved; `main_number` is the enterprise's."""
    presented: str | None
    if user.callerid_mode is CallerIdMode.OWN_DDI:
        presented = own_number
    elif user.callerid_mode is CallerIdMode.COMPANY_MAIN:
        presented = main_number
    elif user.callerid_mode is CallerIdMode.OTHER:
        presented = user.callerid_number
    else:
        presented = None
    return CallerIdView(
        mode=user.callerid_mode,
        presented_number=presented,
        chosen_number=user.callerid_number,
        caller_name=user.caller_name,
        send_pai=user.send_pai,
        pai_number=(user.pai_number or presented or own_number or main_number)
        if user.send_pai
        else None,
        presents_company_main=presented == main_number,
    )


async def find_owned_number(
    session: AsyncSession, enterprise: Enterprise, typed: str, *, field: str
) -> str:
    """The one number of the enterprise ending in the typed digits (its main number included)."""
    digits = digits_only(typed, field=field)
    prefix = digits[::-1]
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    rows = await session.execute(
        select(PhoneNumber.e164)
        .where(
            PhoneNumber.enterprise_id == enterprise.id,
            PhoneNumber.reversed_digits >= prefix,
            PhoneNumber.reversed_digits < upper,
        )
        .order_by(PhoneNumber.e164)
        .limit(6)
    )
    matches = list(rows.scalars())
    if enterprise.main_number.endswith(digits) and enterprise.main_number not in matches:
        matches.insert(0, enterprise.main_number)
    if not matches:
        raise ValidationError(
            f"No number of this enterprise ends in {digits}. "
            "Only the enterprise's own numbers can be presented.",
            field=field,
        )
    if len(matches) > 1:
        listed = ", ".join(pretty(n) for n in matches[:5])
        raise ValidationError(
            f"Several numbers end in {digits} ({listed}{', …' if len(matches) > 5 else ''}); "
            "type more digits.",
            field=field,
        )
    return matches[0]


def clean_caller_name(raw: str) -> str | None:
    """A caller name the PBX can carry safely, or None to use the display name."""
    name = " ".join((raw or "").split())
    if not name:
        return None
    if len(name) > MAX_CALLER_NAME:
        raise ValidationError(
            f"The caller name has {len(name)} characters; use at most {MAX_CALLER_NAME}.",
            field="caller_name",
        )
    if any(ch in _FORBIDDEN_IN_NAME for ch in name):
        raise ValidationError(
            "The caller name cannot contain quotes, angle brackets, backslashes or semicolons.",
            field="caller_name",
        )
    return name


async def apply(
    session: AsyncSession,
    enterprise: Enterprise,
    user: User,
    own_number: str | None,
    change: CallerIdChange,
) -> None:
    """Validate a caller ID change against what the enterprise owns and store it on the user."""
    chosen: str | None = None
    if change.mode is CallerIdMode.OWN_DDI and own_number is None:
        raise ValidationError(
            f"{user.display_name} has no direct number of their own yet; assign one first "
            "or present another number.",
            field="mode",
        )
    if change.mode is CallerIdMode.OTHER:
        chosen = await find_owned_number(session, enterprise, change.number_digits, field="number")
    pai: str | None = None
    if change.send_pai and change.pai_digits.strip():
        pai = await find_owned_number(session, enterprise, change.pai_digits, field="pai_number")
    user.callerid_mode = change.mode
    user.callerid_number = chosen
    user.caller_name = clean_caller_name(change.caller_name)
    user.send_pai = change.send_pai
    user.pai_number = pai

"""Phone number parsing and formatting: E.164 in storage, the admin's own style on input."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

from services.errors import ValidationError

MAX_RANGE = 1_000_000


def to_e164(raw: str, region: str, *, field: str = "number") -> str:
    """Parse a number as an admin types it ("020 7946 0000", "+44 20 7946 0000") into E.164."""
    text = (raw or "").strip()
    if not text:
        raise ValidationError("Enter a phone number.", field=field)
    try:
        parsed = phonenumbers.parse(text, region.upper() or None)
    except phonenumbers.NumberParseException:
        raise ValidationError(
            f"“{text[:40]}” is not a phone number. "
            "Use the international form, e.g. +44 20 7946 0000.",
            field=field,
        ) from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationError(
            f"“{text[:40]}” is not a valid number for its country; check the digits.", field=field
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=65_536)
def pretty(e164: str) -> str:
    """The number in international format for display ("+44 20 7946 0000").

    Cached: every directory page and card shows numbers, and formatting one means parsing it
    against the numbering plan of its country, which costs more than building its card row.
    """
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def reversed_digits(e164: str) -> str:
    """The digits of a number, last first: trailing-digit search becomes a prefix search."""
    return e164.lstrip("+")[::-1]


def digits_only(text: str, *, field: str = "digits") -> str:
    """Keep the digits an admin typed to search by; refuse anything that has none."""
    digits = "".join(ch for ch in (text or "") if ch.isdigit())
    if not digits:
        raise ValidationError("Type one or more digits of the number.", field=field)
    if len(digits) > 15:
        raise ValidationError("A phone number has at most 15 digits.", field=field)
    return digits


def expand_range(first: str, last: str, region: str) -> list[str]:
    """Every number from `first` to `last` inclusive, as E.164, for an inventory import."""
    start = to_e164(first, region, field="first")
    end = to_e164(last, region, field="last")
    if len(start) != len(end):
        raise ValidationError(
            f"{start} and {end} have different lengths; a range keeps the same prefix.",
            field="last",
        )
    low, high = int(start[1:]), int(end[1:])
    if high < low:
        raise ValidationError(f"The range ends ({end}) before it starts ({start}).", field="last")
    count = high - low + 1
    if count > MAX_RANGE:
        raise ValidationError(
            f"That range holds {count:,} numbers; import at most {MAX_RANGE:,} at a time.",
            field="last",
        )
    width = len(start) - 1
    return [f"+{value:0{width}d}" for value in range(low, high + 1)]

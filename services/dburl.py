"""Database URLs as operators write them, made into the URL of the installed async driver."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from services.errors import ValidationError

_ASYNC_DRIVERS = {"postgresql": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}
_SPELLINGS = {
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "pgsql": "postgresql",
    "sqlite": "sqlite",
    "sqlite3": "sqlite",
}


def async_database_url(url: str, *, setting: str, kinds: Sequence[str] = ("postgresql",)) -> str:
    """The URL with the installed async driver (`postgresql://`, `postgres://`,
    `postgresql+psycopg2://` all become `postgresql+asyncpg://`), or a ValidationError that
    names the setting and what it accepts."""
    accepted = " or ".join(f"{kind}://..." for kind in kinds)
    scheme = url.split("://", 1)[0] if "://" in url else ""
    kind = _SPELLINGS.get(scheme.split("+", 1)[0].lower())
    if kind is None or kind not in kinds:
        shown = f"“{scheme}://...”" if scheme else "not a URL"
        raise ValidationError(f"{setting} is {shown}; use {accepted}.", field=setting)
    rewritten = _ASYNC_DRIVERS[kind] + url[len(scheme) :]
    try:
        make_url(rewritten)
    except ArgumentError:
        raise ValidationError(
            f"{setting} is not a valid database URL; use {accepted}.", field=setting
        ) from None
    return rewritten

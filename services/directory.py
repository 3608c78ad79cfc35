"""The directory: an enterprise's users as admins look them up, a page at a time, sorted and
searched, or a few at a time as they type. Read only; changes go through services/users.py."""

from __future__ import annotations

import enum
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    SQLColumnExpression,
    String,
    bindparam,
    cast,
    func,
    or_,
    select,
)

from services import callerid
from services.db import Database
from services.domain import DirectorySort
from services.errors import NotFoundError
from services.models import Enterprise, Extension, PhoneNumber, User
from services.views import Page, UserView

MAX_PAGE_SIZE = 100


def user_view(
    user: User | Row[Any], main_number: str, number: str | None, extension: int | None
) -> UserView:
    """The user (a model, or a row with its columns) as a plain value."""
    return UserView(
        id=user.id,
        enterprise_id=user.enterprise_id,
        display_name=user.display_name,
        email=user.email,
        licence=user.licence,
        number=number,
        extension=extension,
        caller_id=callerid.describe(user, number, main_number),
        status=user.provisioning_status,
        status_error=user.provisioning_error,
        send_password_email=user.send_password_email,
        notify_user=user.notify_user,
        version=user.version,
        created_at=user.created_at,
        password_email_to=user.password_email_to,
    )


class Directory:
    """An enterprise's users, paged, sorted and searched."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def page(
        self,
        enterprise_id: int,
        *,
        search: str = "",
        sort: DirectorySort = DirectorySort.NAME,
        descending: bool = False,
        page: int = 1,
        page_size: int = 20,
        unlicensed_only: bool = False,
    ) -> Page[UserView]:
        """All users with name, number and extension: searchable, sortable, paged."""
        page = max(1, page)
        page_size = max(1, min(MAX_PAGE_SIZE, page_size))
        shape, params = _search_params(search)
        page_query, count_query = _directory_queries(sort, descending, shape, unlicensed_only)
        params["enterprise_id"] = enterprise_id
        async with self.db.unit_of_work(readonly=True) as uow:
            main_number = (
                await uow.session.execute(_MAIN_NUMBER, {"enterprise_id": enterprise_id})
            ).scalar_one_or_none()
            if main_number is None:
                raise NotFoundError("That enterprise does not exist (any more).")
            rows = await uow.session.execute(
                page_query, {**params, "offset": (page - 1) * page_size, "limit": page_size}
            )
            items = [user_view(row, main_number, row.number, row.extension) for row in rows]
            total = int((await uow.session.execute(count_query, params)).scalar_one())
        return Page(items=items, total=total, page=page, page_size=page_size)

    async def search(self, enterprise_id: int, text: str, limit: int = 15) -> list[UserView]:
        """Users whose name, e-mail, number or extension contains the text (type-ahead)."""
        return (await self.page(enterprise_id, search=text, page_size=limit)).items


_MAIN_NUMBER = select(Enterprise.main_number).where(Enterprise.id == bindparam("enterprise_id"))
# What a directory row shows of a user, read as columns: building models for a page of users
# cost more than the rest of the query.
_DIRECTORY_COLUMNS = (
    User.id,
    User.enterprise_id,
    User.display_name,
    User.email,
    User.licence,
    User.callerid_mode,
    User.callerid_number,
    User.caller_name,
    User.send_pai,
    User.pai_number,
    User.provisioning_status,
    User.provisioning_error,
    User.send_password_email,
    User.password_email_to,
    User.notify_user,
    User.version,
    User.created_at,
    PhoneNumber.e164.label("number"),
    Extension.number.label("extension"),
)

_SORT_KEYS: dict[DirectorySort, SQLColumnExpression[Any]] = {
    DirectorySort.NAME: func.lower(User.display_name),
    DirectorySort.EMAIL: User.email,
    DirectorySort.NUMBER: PhoneNumber.e164,
    DirectorySort.EXTENSION: Extension.number,
    DirectorySort.STATUS: User.provisioning_status,
}


class _Search(enum.Enum):
    """What a directory search looks at: nothing, names and e-mails, or numbers as well."""

    NONE = "none"
    TEXT = "text"
    TEXT_AND_DIGITS = "digits"


def _contains_pattern(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, its wildcards escaped with "/"."""
    escaped = text.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return f"%{escaped}%"


def _search_params(search: str) -> tuple[_Search, dict[str, Any]]:
    """How a typed search matches, and the values its query binds."""
    text = " ".join((search or "").split()).lower()[:100]
    if not text:
        return _Search.NONE, {}
    params = {"text": _contains_pattern(text)}
    digits = "".join(ch for ch in text if ch.isdigit())
    if digits and len(digits) == len(text.replace("+", "").replace(" ", "")):
        return _Search.TEXT_AND_DIGITS, params | {"digits": _contains_pattern(digits)}
    return _Search.TEXT, params


@lru_cache(maxsize=64)
def _directory_queries(
    sort: DirectorySort, descending: bool, search: _Search, unlicensed_only: bool
) -> tuple[Select[*tuple[Any, ...]], Select[int]]:
    """The page and count queries of one shape of directory view, built once: the values
    (enterprise, search text, page) are bound when they run."""
    conditions: list[ColumnElement[bool]] = [User.enterprise_id == bindparam("enterprise_id")]
    if search is not _Search.NONE:
        options = [
            func.lower(User.display_name).like(bindparam("text"), escape="/"),
            User.email.like(bindparam("text"), escape="/"),
        ]
        if search is _Search.TEXT_AND_DIGITS:
            options.append(PhoneNumber.e164.like(bindparam("digits"), escape="/"))
            options.append(cast(Extension.number, String).like(bindparam("digits"), escape="/"))
        conditions.append(or_(*options))
    if unlicensed_only:
        conditions.append(User.licence.is_(None))
    key = _SORT_KEYS[sort]
    first = key.desc() if descending else key.asc()
    if sort in (DirectorySort.NUMBER, DirectorySort.EXTENSION):
        # Users without one come last either way; the other columns are never empty, and an
        # order without NULLS LAST can be read straight off an index.
        first = first.nulls_last()
    page = (
        select(*_DIRECTORY_COLUMNS)
        .select_from(User)
        .outerjoin(PhoneNumber, PhoneNumber.user_id == User.id)
        .outerjoin(Extension, Extension.user_id == User.id)
        .where(*conditions)
        .order_by(first, User.display_name, User.id)
        .offset(bindparam("offset"))
        .limit(bindparam("limit"))
    )
    count = (
        select(func.count())
        .select_from(User)
        .outerjoin(PhoneNumber, PhoneNumber.user_id == User.id)
        .outerjoin(Extension, Extension.user_id == User.id)
        .where(*conditions)
    )
    return page, count

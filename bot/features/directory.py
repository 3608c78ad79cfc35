"""The directory: all users in a sortable, searchable, paged table."""

from __future__ import annotations

from bot.router import Router
from cards.actions import MAX_PAGE, OpenDirectory
from cards.common import Card, Errors
from cards.directory import directory_card
from services.directory import Directory
from services.domain import DirectorySort
from services.views import EnterpriseView, Page, UserView

router = Router()
PAGE_SIZE = 20
MAX_QUERY = 100


def directory_sort(raw: str, errors: Errors) -> DirectorySort:
    """The column a view asks for; an unknown one falls back to the name, with a message."""
    try:
        return DirectorySort((raw or "").strip().lower())
    except ValueError:
        shown = (raw or "").strip()[:30]
        errors["sort"] = (
            f"“{shown}” is not a column of the directory, so it is sorted by name. "
            "Sort by name, e-mail, number, extension or status."
        )
        return DirectorySort.NAME


@router.action(OpenDirectory)
async def open_directory(
    data: OpenDirectory, enterprise: EnterpriseView, directory: Directory
) -> Card:
    """One page of the directory; a page that does not exist shows the nearest one that does."""
    errors: Errors = {}
    sort = directory_sort(data.sort, errors)
    query = " ".join(data.query.split())[:MAX_QUERY]
    page = data.page
    if page < 1:
        errors["page"] = "Pages are counted from 1, so this is the first page."
        page = 1

    async def load(number: int) -> Page[UserView]:
        return await directory.page(
            enterprise.id,
            search=query,
            sort=sort,
            descending=data.desc,
            page=number,
            page_size=PAGE_SIZE,
        )

    users = await load(min(page, MAX_PAGE))
    if page > users.pages:
        missing = f"There is no page {page}" if page <= MAX_PAGE else "That page does not exist"
        errors["page"] = (
            f"{missing}: "
            + ("the search finds" if query else "the directory has")
            + f" {users.pages} page{'s' if users.pages != 1 else ''}, so this is the last one."
        )
        users = await load(users.pages)
    return directory_card(
        enterprise, users, sort=sort, descending=data.desc, query=query, errors=errors
    )

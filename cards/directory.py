"""The directory card: every user with number, extension, licence and status in a sortable,
paged table that reads at the narrowest chat width."""

from __future__ import annotations

from functools import lru_cache

from microsoft_teams.cards import (
    ActionSet,
    CardElement,
    ColumnDefinition,
    ExecuteAction,
    Table,
    TableCell,
    TableRow,
    TextBlock,
)

from cards.actions import (
    ExportDirectory,
    OpenCreateUser,
    OpenDirectory,
    OpenExtensions,
    OpenNumbers,
    OpenUnlicensed,
)
from cards.common import (
    Card,
    Errors,
    action_row,
    breakable_email,
    button,
    choice_input,
    columns,
    field_error,
    frame,
    number_text,
    paragraph,
    plain,
    text_input,
    user_link_cell,
    user_status_label,
)
from services.domain import DirectorySort
from services.views import EnterpriseView, Page, UserView

DIRECTORY_HELP = (
    "Every user of the enterprise with their direct number and extension, their calling licence "
    "and their Teams sync status. "
    "A number or extension shown here is taken: it can never be given to someone else.\n\n"
    "Press a column heading to sort by it; press it again to reverse the order. You can also "
    "choose the sort and order below the table, and search by part of a name or e-mail, or by "
    "digits of a number or extension.\n\n"
    "Select a name to open that user. Status: ⚪ not synced, 🟡 pending, 🔵 in progress, "
    "🟢 provisioned, 🔴 failed (with the reason)."
)

SORT_NAMES: dict[DirectorySort, str] = {
    DirectorySort.NAME: "Name",
    DirectorySort.EMAIL: "E-mail",
    DirectorySort.NUMBER: "Number",
    DirectorySort.EXTENSION: "Extension",
    DirectorySort.STATUS: "Status",
}
# The table's columns, each sortable from its heading; e-mail and extension sort from the
# choice below. Three columns, each holding two short lines (name and e-mail; number and
# extension; status and licence), keep every number, extension and status word whole at the
# narrowest chat width, where the card's full-width request is not honoured.
TABLE_COLUMNS: list[tuple[DirectorySort, float]] = [
    (DirectorySort.NAME, 4),
    (DirectorySort.NUMBER, 4),
    (DirectorySort.STATUS, 3),
]
# Column headings are buttons: short words keep them whole in a narrow card.
HEADINGS = dict(SORT_NAMES)
ORDER_CHOICES = [("Ascending (A to Z, lowest first)", "false"), ("Descending", "true")]


def _view_button(
    title: str,
    ent: int,
    *,
    sort: DirectorySort,
    desc: bool,
    page: int,
    query: str,
    primary: bool = False,
) -> ExecuteAction:
    """A button that shows another view of the directory and ignores the card's inputs.

    The sort and search inputs would otherwise override the view the button carries.
    """
    action = button(
        title,
        OpenDirectory(ent=ent, sort=sort.value, desc=desc, page=page, query=query),
        primary=primary,
    )
    action.associated_inputs = "none"
    return action


# Rows and headings are immutable once built, and a page mostly shows users seen before:
# each is built once and shared by every card that shows it. A user who changes is a new
# view, hence a new row.
_ROWS_KEPT = 4096


@lru_cache(maxsize=256)
def _heading_cell(
    column: DirectorySort, ent: int, sort: DirectorySort, desc: bool, query: str
) -> TableCell:
    current = column is sort
    arrow = (" ▼" if desc else " ▲") if current else ""
    return TableCell(
        items=[
            ActionSet(
                actions=[
                    _view_button(
                        f"{HEADINGS[column]}{arrow}",
                        ent,
                        sort=column,
                        desc=not desc if current else False,
                        page=1,
                        query=query,
                    )
                ]
            )
        ]
    )


@lru_cache(maxsize=_ROWS_KEPT)
def _user_row(user: UserView, ent: int) -> TableRow:
    name_cell = user_link_cell(
        user.display_name,
        ent,
        user.id,
        TextBlock(
            text=breakable_email(user.email),
            wrap=True,
            is_subtle=True,
            size="Small",
            spacing="None",
        ),
        bold=True,
    )
    extension = f"ext {user.extension}" if user.extension is not None else "no extension"
    licence = user.licence.label if user.licence else "No licence"
    return TableRow(
        cells=[
            name_cell,
            TableCell(
                items=[
                    TextBlock(text=number_text(user.number), wrap=True),
                    _second_line(extension),
                ]
            ),
            TableCell(
                items=[TextBlock(text=user_status_label(user), wrap=True), _second_line(licence)]
            ),
        ]
    )


def _second_line(text: str) -> TextBlock:
    return TextBlock(text=plain(text), wrap=True, is_subtle=True, size="Small", spacing="None")


def _table(users: Page[UserView], ent: int, sort: DirectorySort, desc: bool, query: str) -> Table:
    # The first row is the heading row: hosts style it as headers by default.
    heading_row = TableRow(
        cells=[_heading_cell(column, ent, sort, desc, query) for column, _ in TABLE_COLUMNS]
    )
    return Table(
        columns=[ColumnDefinition(width=width) for _, width in TABLE_COLUMNS],
        rows=[heading_row, *(_user_row(user, ent) for user in users.items)],
    )


def directory_card(
    enterprise: EnterpriseView,
    users: Page[UserView],
    *,
    sort: DirectorySort = DirectorySort.NAME,
    descending: bool = False,
    query: str = "",
    errors: Errors | None = None,
) -> Card:
    """One page of the directory as a table, with sort headings, search and paging."""
    ent = enterprise.id
    errors = errors or {}
    body: list[CardElement] = []
    if users.total == 0 and not query:
        body.append(
            paragraph(
                f"**{plain(enterprise.name)}** has no users yet. Create the first one to start."
            )
        )
    elif users.total == 0:
        body.append(paragraph(f"No user matches “{plain(query)}”.", subtle=True))
    else:
        found = f"{users.total} user{'s' if users.total != 1 else ''}"
        body.append(
            paragraph(
                f"**{plain(enterprise.name)}**: {found}"
                + (f" matching “{plain(query)}”" if query else "")
                + f", sorted by {SORT_NAMES[sort].lower()} "
                + ("(descending)." if descending else "(ascending)."),
                subtle=True,
            )
        )
        body.append(_table(users, ent, sort, descending, query))
    body.extend(_paging(users, ent, sort, descending, query))
    body.extend(field_error(errors, "page"))
    body.extend(
        [
            columns(
                text_input(
                    "query",
                    "Search",
                    query,
                    errors,
                    placeholder="Name, e-mail, number or extension",
                ),
                choice_input(
                    "sort",
                    "Sort by",
                    [(title, column.value) for column, title in SORT_NAMES.items()],
                    sort.value,
                    errors,
                ),
                choice_input(
                    "desc", "Order", ORDER_CHOICES, "true" if descending else "false", errors
                ),
            ),
            action_row(
                button("Search and sort", OpenDirectory(ent=ent), primary=True),
                *(
                    [
                        _view_button(
                            "Show everyone", ent, sort=sort, desc=descending, page=1, query=""
                        )
                    ]
                    if query
                    else []
                ),
            ),
            *field_error(errors, "form"),
        ]
    )
    return frame(
        "Directory",
        body,
        help_text=DIRECTORY_HELP,
        ent=ent,
        notice="Showing the directory with the view corrected: see ⚠ below." if errors else None,
        actions=[
            button("Create user", OpenCreateUser(ent=ent)),
            button("Free numbers", OpenNumbers(ent=ent)),
            button("Free extensions", OpenExtensions(ent=ent)),
            button("Unlicensed users", OpenUnlicensed(ent=ent)),
            button("Export", ExportDirectory(ent=ent)),
        ],
    )


def _paging(
    users: Page[UserView], ent: int, sort: DirectorySort, desc: bool, query: str
) -> list[CardElement]:
    if users.pages <= 1:
        return []
    page = min(users.page, users.pages)
    buttons = []
    if page > 1:
        buttons.append(
            _view_button("◀ Previous", ent, sort=sort, desc=desc, page=page - 1, query=query)
        )
    if page < users.pages:
        buttons.append(
            _view_button("Next ▶", ent, sort=sort, desc=desc, page=page + 1, query=query)
        )
    return [
        paragraph(f"Page {page} of {users.pages}", subtle=True),
        ActionSet(actions=buttons),
    ]

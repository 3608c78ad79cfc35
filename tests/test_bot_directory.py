"""The directory card over real HTTP: a Table of every user, sorted by each column both ways,
paged, searched, empty, and forgiving of views that do not exist."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from cards.actions import Verb
from services.domain import LicenceProduct, ProvisioningStatus
from services.models import User
from services.users import NewUser
from tests.botkit import BotHarness, card_text, find_input
from tests.conftest import PROVIDER

ON_SQLITE = pytest.mark.parametrize("database", ["sqlite"], indirect=True)
ON_POSTGRES = pytest.mark.parametrize(
    "database", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)

# Four users whose order differs for every column.
PEOPLE: list[dict[str, Any]] = [
    {
        "name": "Cara Diaz",
        "email": "a.cara@contoso.com",
        "licence": LicenceProduct.ESSENTIALS,
        "number": "+442079460030",
        "extension": 1010,
        "status": ProvisioningStatus.PROVISIONED,
    },
    {
        "name": "Alan Brook",
        "email": "c.alan@contoso.com",
        "licence": LicenceProduct.BASIC,
        "number": None,
        "extension": 1050,
        "status": ProvisioningStatus.NOT_SYNCED,
    },
    {
        "name": "Bea Chen",
        "email": "d.bea@contoso.com",
        "licence": LicenceProduct.ESSENTIALS,
        "number": "+442079460010",
        "extension": 1030,
        "status": ProvisioningStatus.FAILED,
        "error": "Entra refused the licence",
    },
    {
        "name": "Dan Evans",
        "email": "b.dan@contoso.com",
        "licence": None,
        "number": None,
        "extension": None,
        "status": ProvisioningStatus.PENDING,
    },
]
ALAN, BEA, CARA, DAN = "Alan Brook", "Bea Chen", "Cara Diaz", "Dan Evans"
# Empty numbers and extensions come last either way; ties by name.
EXPECTED = {
    "name": ([ALAN, BEA, CARA, DAN], [DAN, CARA, BEA, ALAN]),
    "email": ([CARA, DAN, ALAN, BEA], [BEA, ALAN, DAN, CARA]),
    "number": ([BEA, CARA, ALAN, DAN], [CARA, BEA, ALAN, DAN]),
    "extension": ([CARA, BEA, ALAN, DAN], [ALAN, BEA, CARA, DAN]),
    "status": ([BEA, ALAN, DAN, CARA], [CARA, DAN, ALAN, BEA]),
}
HEADINGS = {"name": "Name", "number": "Number", "status": "Status"}


async def _seed_people(harness: BotHarness) -> dict[str, int]:
    ids: dict[str, int] = {}
    for person in PEOPLE:
        user = await harness.services.users.create(
            PROVIDER,
            harness.ent,
            NewUser(
                person["name"],
                person["email"],
                licence=person["licence"],
                number=person["number"],
                extension=person["extension"],
            ),
        )
        ids[person["name"]] = user.id
        # The state the sync engine would leave behind.
        async with harness.services.db.unit_of_work() as uow:
            await uow.session.execute(
                update(User)
                .where(User.id == user.id)
                .values(
                    provisioning_status=person["status"], provisioning_error=person.get("error")
                )
            )
            await uow.commit()
    return ids


def _table(card: dict[str, Any]) -> dict[str, Any]:
    tables = [element for element in card["body"] if element.get("type") == "Table"]
    assert len(tables) == 1, "the directory shows exactly one Table"
    assert "firstRowAsHeaders" not in tables[0]
    return tables[0]


def _names(card: dict[str, Any]) -> list[str]:
    """The names in the table's rows, top to bottom (the first row holds the headings)."""
    return [row["cells"][0]["items"][0]["text"] for row in _table(card)["rows"][1:]]


def _row_texts(card: dict[str, Any]) -> dict[str, list[str]]:
    rows = _table(card)["rows"][1:]
    return {
        row["cells"][0]["items"][0]["text"]: [card_text(cell) for cell in row["cells"]]
        for row in rows
    }


def _heading_button(card: dict[str, Any], column: str) -> dict[str, Any]:
    """The Action.Execute in the table heading of a column."""
    for cell in _table(card)["rows"][0]["cells"]:
        [action] = cell["items"][0]["actions"]
        if action["title"].split()[0] == HEADINGS[column]:
            assert action["associatedInputs"] == "none"
            return action
    raise AssertionError(f"no heading for {column}")


def _execute_actions(card: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    stack: list[Any] = [card]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "Action.Execute":
                found.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return found


def _button(card: dict[str, Any], title: str) -> dict[str, Any]:
    [action] = [a for a in _execute_actions(card) if a["title"] == title]
    return action


@ON_SQLITE
async def test_table_shows_every_column_and_opens_a_user(harness: BotHarness) -> None:
    ids = await _seed_people(harness)
    card = await harness.say("directory")
    assert _names(card) == EXPECTED["name"][0]
    rows = _row_texts(card)
    # number over extension, status over licence: short lines that stay whole when narrow
    assert rows[CARA][1:] == ["+44 20 7946 0030\next 1010", "🟢 Provisioned\nEssentials"]
    assert rows[ALAN][1:] == ["—\next 1050", "⚪ Not synced\nBasic"]
    assert rows[BEA][2].startswith("🔴 Failed: Entra refused the licence\n")
    assert rows[DAN][1:] == ["—\nno extension", "🟡 Pending\nNo licence"]
    # the e-mail may wrap after its "@" and dots (zero-width spaces), never inside a word
    assert "d.bea@contoso.com" in rows[BEA][0].replace("\u200b", "")
    assert "4 users" in card_text(card)
    # each name opens its user
    open_bea = _table(card)["rows"][2]["cells"][0]["selectAction"]
    assert open_bea["verb"] == Verb.USER_OPEN.value
    assert open_bea["data"]["user_id"] == ids[BEA]
    opened = await harness.act(open_bea["verb"], open_bea["data"])
    assert "Bea Chen" in card_text(opened) and "Save" in card_text(opened)


@ON_SQLITE
async def test_a_user_changed_since_the_last_view_is_shown_as_they_are_now(
    harness: BotHarness,
) -> None:
    ids = await _seed_people(harness)
    before = _row_texts(await harness.say("directory"))
    assert before[BEA][1:] == [
        "+44 20 7946 0010\next 1030",
        "🔴 Failed: Entra refused the licence\nEssentials",
    ]
    async with harness.services.db.unit_of_work() as uow:
        await uow.session.execute(
            update(User)
            .where(User.id == ids[BEA])
            .values(provisioning_status=ProvisioningStatus.PROVISIONED, provisioning_error=None)
        )
        await uow.commit()

    after = _row_texts(await harness.say("directory"))

    assert after[BEA][1:] == ["+44 20 7946 0010\next 1030", "🟢 Provisioned\nEssentials"]
    assert after[CARA] == before[CARA]


@ON_SQLITE
@pytest.mark.parametrize("column", ["name", "number", "status"])
async def test_heading_sorts_by_its_column_both_ways(harness: BotHarness, column: str) -> None:
    await _seed_people(harness)
    card = await harness.act(Verb.DIRECTORY_OPEN)
    ascending, descending = EXPECTED[column]
    heading = _heading_button(card, column)
    if column != "name":  # name is already the ascending sort; its heading reverses it
        card = await harness.act(heading["verb"], heading["data"])
        assert _names(card) == ascending
        assert _heading_button(card, column)["title"] == f"{HEADINGS[column]} ▲"
        heading = _heading_button(card, column)
    card = await harness.act(heading["verb"], heading["data"])
    assert _names(card) == descending
    assert _heading_button(card, column)["title"] == f"{HEADINGS[column]} ▼"
    again = _heading_button(card, column)
    assert _names(await harness.act(again["verb"], again["data"])) == ascending


@ON_SQLITE
@pytest.mark.parametrize("column", sorted(EXPECTED))
async def test_sort_choice_sorts_by_each_column_both_ways(harness: BotHarness, column: str) -> None:
    await _seed_people(harness)
    card = await harness.act(Verb.DIRECTORY_OPEN)
    submit = _button(card, "Search and sort")
    assert {c["value"] for c in find_input(card, "sort")["choices"]} == set(EXPECTED)
    ascending, descending = EXPECTED[column]
    # the card's inputs arrive merged into the button's data
    up = await harness.act(submit["verb"], {**submit["data"], "sort": column, "desc": "false"})
    assert _names(up) == ascending
    down = await harness.act(submit["verb"], {**submit["data"], "sort": column, "desc": "true"})
    assert _names(down) == descending
    assert find_input(down, "sort")["value"] == column
    assert find_input(down, "desc")["value"] == "true"


@ON_SQLITE
async def test_paging_keeps_sort_and_search(harness: BotHarness) -> None:
    for i in range(45):
        await harness.services.users.create(
            PROVIDER, harness.ent, NewUser(f"Person {i:02d}", f"p{i:02d}@contoso.com")
        )
    first = await harness.act(Verb.DIRECTORY_OPEN, {"sort": "name", "desc": True})
    assert len(_names(first)) == 20 and _names(first)[0] == "Person 44"
    assert "Page 1 of 3" in card_text(first)
    assert not [a for a in _execute_actions(first) if a["title"] == "◀ Previous"]
    nxt = _button(first, "Next ▶")
    assert nxt["associatedInputs"] == "none"
    second = await harness.act(nxt["verb"], nxt["data"])
    assert _names(second)[0] == "Person 24" and "Page 2 of 3" in card_text(second)
    third = await harness.act(_button(second, "Next ▶")["verb"], _button(second, "Next ▶")["data"])
    assert _names(third) == [f"Person {i:02d}" for i in range(4, -1, -1)]
    assert not [a for a in _execute_actions(third) if a["title"] == "Next ▶"]
    back = _button(third, "◀ Previous")
    assert _names(await harness.act(back["verb"], back["data"]))[0] == "Person 24"
    # a search pages too, and its buttons carry the search
    searched = await harness.act(Verb.DIRECTORY_OPEN, {"query": "person 1"})
    assert _names(searched) == [f"Person {i}" for i in range(10, 20)]
    assert "10 users matching “person 1”" in card_text(searched)


@ON_SQLITE
async def test_search_by_name_email_number_and_extension(harness: BotHarness) -> None:
    await _seed_people(harness)
    assert _names(await harness.act(Verb.DIRECTORY_OPEN, {"query": "bea"})) == [BEA]
    assert _names(await harness.act(Verb.DIRECTORY_OPEN, {"query": "b.dan@"})) == [DAN]
    assert _names(await harness.act(Verb.DIRECTORY_OPEN, {"query": "0030"})) == [CARA]
    card = await harness.act(Verb.DIRECTORY_OPEN, {"query": "1050", "sort": "status"})
    assert _names(card) == [ALAN]
    assert find_input(card, "query")["value"] == "1050"
    # sorting from a heading keeps the search
    heading = _heading_button(card, "number")
    assert heading["data"]["query"] == "1050"
    nothing = await harness.act(Verb.DIRECTORY_OPEN, {"query": "zebra"})
    assert "No user matches “zebra”" in card_text(nothing)
    everyone = _button(nothing, "Show everyone")
    assert _names(await harness.act(everyone["verb"], everyone["data"])) == EXPECTED["name"][0]


@ON_SQLITE
async def test_empty_directory(harness: BotHarness) -> None:
    card = await harness.say("directory")
    text = card_text(card)
    assert "has no users yet" in text
    assert not [e for e in card["body"] if e.get("type") == "Table"]
    assert "Create user" in {a["title"] for a in _execute_actions(card)}


@ON_SQLITE
async def test_views_that_do_not_exist_get_a_clear_message(harness: BotHarness) -> None:
    await _seed_people(harness)
    bad_sort = await harness.act(Verb.DIRECTORY_OPEN, {"sort": "shoe_size", "desc": True})
    assert "“shoe_size” is not a column" in card_text(bad_sort)
    assert _names(bad_sort) == EXPECTED["name"][1]
    assert find_input(bad_sort, "sort")["value"] == "name"
    beyond = await harness.act(Verb.DIRECTORY_OPEN, {"page": 9})
    assert "There is no page 9" in card_text(beyond) and "1 page" in card_text(beyond)
    assert _names(beyond) == EXPECTED["name"][0]
    huge = await harness.act(Verb.DIRECTORY_OPEN, {"page": 10**30})
    assert "That page does not exist" in card_text(huge) and _names(huge) == EXPECTED["name"][0]
    zero = await harness.act(Verb.DIRECTORY_OPEN, {"page": -3})
    assert "counted from 1" in card_text(zero) and _names(zero) == EXPECTED["name"][0]
    garbage = await harness.act(Verb.DIRECTORY_OPEN, {"page": "three", "desc": "maybe"})
    assert "incomplete" in card_text(garbage) and "page" in card_text(garbage)


@ON_POSTGRES
async def test_directory_main_flow_on_postgres(harness: BotHarness) -> None:
    await _seed_people(harness)
    card = await harness.say("directory")
    assert _names(card) == EXPECTED["name"][0]
    for column in ("number", "status"):
        ascending, descending = EXPECTED[column]
        heading = _heading_button(card, column)
        up = await harness.act(heading["verb"], heading["data"])
        assert _names(up) == ascending
        heading = _heading_button(up, column)
        assert _names(await harness.act(heading["verb"], heading["data"])) == descending
    assert _names(await harness.act(Verb.DIRECTORY_OPEN, {"query": "0010"})) == [BEA]

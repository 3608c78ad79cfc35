"""Properties of the bulk parser and row checks: any bytes are read or refused in one line,
generated files read back cell for cell, generated rows never crash the preview, and a row
with a bad cell always gets a reason of its own."""

from __future__ import annotations

import codecs
import csv
import io
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.bulk.service import Bulk
from services.bulk.sheet import Column, FileRefusedError, parse_sheet
from services.bulk.values import RowAction
from services.container import Services
from tests.conftest import PROVIDER, seed_enterprise

EXAMPLES = int(os.environ.get("SWITCHBOARD_PROPERTY_EXAMPLES", "40"))
PROPERTIES = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
COLUMNS = list(Column)
_cell_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40
)


@PROPERTIES
@given(data=st.binary(max_size=3000))
def test_any_bytes_are_read_or_refused_in_one_line(data: bytes) -> None:
    try:
        sheet = parse_sheet(data)
    except FileRefusedError as error:
        assert error.message and "\n" not in error.message
        return
    assert sheet.rows and all(row.line >= 2 for row in sheet.rows)


@PROPERTIES
@given(
    rows=st.lists(st.lists(_cell_text, min_size=len(COLUMNS), max_size=len(COLUMNS)), max_size=8),
    delimiter=st.sampled_from([",", ";", "\t"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le"]),
)
def test_a_written_file_reads_back_cell_for_cell(
    rows: list[list[str]], delimiter: str, encoding: str
) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow([c.header for c in COLUMNS])
    writer.writerows(rows)
    data = buffer.getvalue().encode(encoding)
    kept = [row for row in rows if any(cell.strip() for cell in row)]
    if not kept:
        with pytest.raises(FileRefusedError):
            parse_sheet(data)
        return
    sheet = parse_sheet(data)
    assert sheet.columns == tuple(COLUMNS)
    assert [[row.cells[c] for c in COLUMNS] for row in sheet.rows] == kept
    assert sheet.notes == []
    lines = [row.line for row in sheet.rows]
    assert lines == sorted(set(lines))
    if encoding == "utf-8-sig":
        assert data.startswith(codecs.BOM_UTF8)


@pytest.fixture
async def ent(services: Services) -> int:
    ent = await seed_enterprise(services)
    await services.hunt_groups.create(PROVIDER, ent, "Sales")
    return ent


def _choice(*values: str) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(values), _cell_text)


_row = st.fixed_dictionaries(
    {
        Column.NAME: _choice("Ann", "", "Zoë Ångström", "x" * 300),
        Column.EMAIL: st.one_of(
            st.from_regex(r"[a-c]{1,2}@contoso\.example", fullmatch=True), _cell_text
        ),
        Column.LICENCE: _choice("Essentials", "basic", "", "none", "gold"),
        Column.NUMBER: _choice(
            "",
            "auto",
            "020 7946 0001",
            "+44 20 7946 0002",
            "00 44 20 7946 0003",
            "4.42E+11",
            "+44 20 7946 5555",
            "12",
        ),
        Column.EXTENSION: _choice("", "auto", "1001", "5000", "abc", "1050"),
        Column.CALLERID_MODE: _choice(
            "", "Own number", "Anonymous", "Another company number", "loud"
        ),
        Column.CALLERID_NUMBER: _choice("", "0001", "9999", "1000"),
        Column.CALLER_NAME: _cell_text,
        Column.PAI: _choice("", "yes", "no", "maybe"),
        Column.PAI_NUMBER: _choice("", "0002"),
        Column.HUNT_GROUPS: _choice("", "Sales", "Nope", "sales; nope"),
        Column.ACTION: _choice("", "remove", "archive"),
    }
)


def _file(rows: list[dict[Column, str]]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.header for c in COLUMNS])
    writer.writerows([[row[c] for c in COLUMNS] for row in rows])
    return buffer.getvalue().encode()


@PROPERTIES
@given(rows=st.lists(_row, min_size=1, max_size=12))
async def test_generated_rows_never_crash_and_every_rejection_says_why(
    services: Services, ent: int, rows: list[dict[Column, str]]
) -> None:
    data = _file(rows)
    try:
        sheet = parse_sheet(data)
    except FileRefusedError:
        return  # every row blank
    preview = await Bulk.of(services).preview(ent, data)
    assert [row.line for row in preview.rows] == [row.line for row in sheet.rows]
    for row in preview.rows:
        assert (row.action is RowAction.REJECTED) == bool(row.reasons), row
        assert all(reason.strip() and "\n" not in reason for reason in row.reasons)
        if row.action in (RowAction.CREATE, RowAction.UPDATE, RowAction.REMOVE):
            assert row.plan["kind"] == row.action.value
    assert sum(preview.count(action) for action in RowAction) == len(preview.rows)


_NOT_KEYWORDS = {"auto", "automatic", "next", "nextfree", "any"}
_BAD_CELLS = st.one_of(
    st.tuples(
        st.just(Column.LICENCE),
        st.from_regex(r"[a-z]{3,10}", fullmatch=True).filter(
            lambda t: (
                t
                not in {
                    "essentials",
                    "essential",
                    "basic",
                    "none",
                    "nolicence",
                    "nolicense",
                    "unlicensed",
                }
            )
        ),
        st.just("is not a licence"),
    ),
    st.tuples(
        st.just(Column.EMAIL),
        _cell_text.filter(lambda t: "@" not in t and t.strip() != ""),
        st.just("is not an e-mail address"),
    ),
    st.tuples(
        st.just(Column.NUMBER),
        st.from_regex(r"[A-Za-z]{2,10}", fullmatch=True).filter(
            lambda t: t.lower() not in _NOT_KEYWORDS
        ),
        st.just("is not a phone number"),
    ),
    st.tuples(
        st.just(Column.EXTENSION),
        st.from_regex(r"[0-9]{0,3}[a-z]{1,4}", fullmatch=True).filter(
            lambda t: t not in _NOT_KEYWORDS
        ),
        st.just("is not an extension"),
    ),
    st.tuples(
        st.just(Column.EXTENSION),
        st.integers(0, 99_999_999).filter(lambda n: not 1000 <= n <= 1099).map(str),
        st.just("is outside this enterprise's range"),
    ),
)


@PROPERTIES
@given(bad=_BAD_CELLS, index=st.integers(0, 4))
async def test_a_bad_cell_always_gets_a_row_level_reason(
    services: Services, ent: int, bad: tuple[Column, str, str], index: int
) -> None:
    column, value, expected = bad
    rows = [
        {c: "" for c in COLUMNS}
        | {Column.NAME: f"User {i}", Column.EMAIL: f"u{i}@contoso.example", Column.LICENCE: ""}
        for i in range(5)
    ]
    rows[index][column] = value
    if column is Column.NUMBER:
        rows[index][Column.LICENCE] = "Essentials"
    preview = await Bulk.of(services).preview(ent, _file(rows))
    by_line = {row.line: row for row in preview.rows}
    bad_row = by_line[index + 2]
    assert bad_row.action is RowAction.REJECTED
    assert expected in bad_row.reason, (value, bad_row.reason)
    assert preview.count(RowAction.CREATE) == 4

"""The files people actually send: encodings, delimiters, quoting, headers, size."""

from __future__ import annotations

import codecs

import pytest

from services.bulk.sheet import COLUMN_HELP, MAX_FILE_BYTES, Column, FileRefusedError, parse_sheet

ROWS = "Name,E-mail,Licence,Number\nZoë Ångström,zoe@contoso.example,Essentials,+44 20 7946 0001\n"


def _emails(data: bytes) -> list[str]:
    return [row.get(Column.EMAIL) for row in parse_sheet(data).rows]


def test_utf8_with_and_without_byte_order_mark() -> None:
    for data in (ROWS.encode(), codecs.BOM_UTF8 + ROWS.encode()):
        sheet = parse_sheet(data)
        assert sheet.columns == (Column.NAME, Column.EMAIL, Column.LICENCE, Column.NUMBER)
        assert sheet.rows[0].get(Column.NAME) == "Zoë Ångström"
        assert sheet.rows[0].line == 2
        assert sheet.notes == []


def test_excel_unicode_text_utf16_with_tabs() -> None:
    text = ROWS.replace(",", "\t").replace("\n", "\r\n")
    for data in (text.encode("utf-16"), text.encode("utf-16-le"), text.encode("utf-16-be")):
        sheet = parse_sheet(data)
        assert sheet.rows[0].get(Column.NAME) == "Zoë Ångström"
        assert sheet.rows[0].get(Column.NUMBER) == "+44 20 7946 0001"


def test_windows_1252_is_read_with_a_note() -> None:
    sheet = parse_sheet(ROWS.encode("cp1252"))
    assert sheet.rows[0].get(Column.NAME) == "Zoë Ångström"
    assert "read as Windows-1252" in sheet.notes[0]


def test_semicolons_and_commas_inside_cells() -> None:
    data = b'name;email;licence\n"Smith, Ann";ann@contoso.example;Basic\n'
    sheet = parse_sheet(data)
    assert sheet.rows[0].get(Column.NAME) == "Smith, Ann"
    assert _emails(data) == ["ann@contoso.example"]


def test_excel_sep_line_names_the_delimiter() -> None:
    data = b"sep=;\r\nName;E-mail;Hunt groups\r\nAnn;ann@contoso.example;Sales, North\r\n"
    sheet = parse_sheet(data)
    assert sheet.rows[0].get(Column.HUNT_GROUPS) == "Sales, North"
    assert sheet.rows[0].line == 3


def test_quoted_cells_with_line_breaks_keep_the_line_numbers_right() -> None:
    data = (
        b'Name,E-mail,Caller name\r\n"Ann\r\nSmith",ann@contoso.example,"A\nS"\r\n'
        b"\r\nBob,bob@contoso.example,\r\n"
    )
    sheet = parse_sheet(data)
    assert [(r.line, r.get(Column.EMAIL)) for r in sheet.rows] == [
        (2, "ann@contoso.example"),
        (6, "bob@contoso.example"),
    ]
    assert sheet.rows[0].get(Column.NAME) == "Ann\r\nSmith"


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_any_line_ending(newline: str) -> None:
    data = ROWS.replace("\n", newline).encode()
    assert _emails(data) == ["zoe@contoso.example"]


def test_header_names_in_any_case_and_common_spellings() -> None:
    data = (
        b"DISPLAY NAME,Email Address,LICENSE,DDI,Ext,callerID,Caller-ID Number,"
        b"caller_name,Send PAI,PAI Number,Hunt Group,ACTION\n"
        b"Ann,ann@contoso.example,Basic,,1001,Anonymous,,,no,,,\n"
    )
    sheet = parse_sheet(data)
    assert sheet.columns == tuple(Column)
    assert sheet.rows[0].get(Column.EXTENSION) == "1001"


def test_extra_columns_and_cells_are_ignored_with_a_note() -> None:
    data = (
        b"Name,Department,E-mail,Notes\n"
        b"Ann,Sales,ann@contoso.example,likes tea\n"
        b"Bob,IT,bob@contoso.example,,surplus\n"
    )
    sheet = parse_sheet(data)
    assert sheet.columns == (Column.NAME, Column.EMAIL)
    assert sheet.notes == [
        "Columns ignored (not Switchboard's): “Department”, “Notes”.",
        "Line 3 has more cells than the first line has columns; the extra cells were ignored.",
    ]
    assert sheet.rows[1].cells == {Column.NAME: "Bob", Column.EMAIL: "bob@contoso.example"}


def test_a_file_over_5_mb_is_refused_before_it_is_read() -> None:
    data = ROWS.encode() + b"x" * (MAX_FILE_BYTES - len(ROWS) + 1)
    with pytest.raises(FileRefusedError, match=r"5\.0 MB; Switchboard takes files of up to 5 MB"):
        parse_sheet(data)
    big = (ROWS + "Ann,ann@contoso.example,Basic,\n" * 1000).encode()
    assert len(parse_sheet(big).rows) == 1001


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "The file is empty"),
        (b"\r\n \r\n", "The file is empty"),
        (b";;;\n", "The file is empty"),
        (b"Name,E-mail\n", "no users below them"),
        (b"Name,Phone\nAnn,1\n", "it has no E-mail column"),
        (b"Who,Phone\nAnn,1\n", "it has no Name or E-mail column"),
        (b"Name,E-mail,Mail\nA,a@b.example,c\n", "“E-mail” and “Mail” both mean E-mail"),
        (b'Name,E-mail\n"Ann,ann@contoso.example\n', "a quote is opened and never closed"),
        (b'Name,E-mail\n"Ann"x,ann@contoso.example\n', "text after its closing quote"),
        (b"Name,E-mail\nA\x00n,a@b.example\n", "binary data"),
        (b"\xff\xfeN\x00\x00\xd8", "not text Switchboard can read"),
    ],
)
def test_unreadable_files_are_refused_with_one_clear_line(data: bytes, message: str) -> None:
    with pytest.raises(FileRefusedError, match=message):
        parse_sheet(data)


def test_every_column_is_explained_for_the_card() -> None:
    assert set(COLUMN_HELP) == set(Column)
    assert all(text.endswith(".") and "\n" not in text for text in COLUMN_HELP.values())

"""The spreadsheet of a bulk import or export: its columns, and the files people actually
send (UTF-8 with or without BOM, Excel's UTF-16 and Windows-1252, comma, semicolon or tab,
quoted cells with line breaks, header names in any case)."""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass, field
from enum import StrEnum

from services.errors import ValidationError

MAX_FILE_BYTES = 5 * 1024 * 1024
_MAX_NOTES = 5


class Column(StrEnum):
    """A column of the bulk spreadsheet."""

    NAME = "name"
    EMAIL = "email"
    LICENCE = "licence"
    NUMBER = "number"
    EXTENSION = "extension"
    CALLERID_MODE = "callerid_mode"
    CALLERID_NUMBER = "callerid_number"
    CALLER_NAME = "caller_name"
    PAI = "pai"
    PAI_NUMBER = "pai_number"
    HUNT_GROUPS = "hunt_groups"
    ACTION = "action"

    @property
    def header(self) -> str:
        """The column's name in the first line of an exported file."""
        return HEADERS[self]


HEADERS = {
    Column.NAME: "Name",
    Column.EMAIL: "E-mail",
    Column.LICENCE: "Licence",
    Column.NUMBER: "Number",
    Column.EXTENSION: "Extension",
    Column.CALLERID_MODE: "Caller ID",
    Column.CALLERID_NUMBER: "Caller ID number",
    Column.CALLER_NAME: "Caller name",
    Column.PAI: "PAI",
    Column.PAI_NUMBER: "PAI number",
    Column.HUNT_GROUPS: "Hunt groups",
    Column.ACTION: "Action",
}

# What each column means, for the card that offers the template (the file itself carries
# nothing but the column names).
COLUMN_HELP = {
    Column.NAME: "The user's display name.",
    Column.EMAIL: "Their primary e-mail address: it says which user the row is.",
    Column.LICENCE: "Essentials (direct number and extension), Basic (extension only) or empty.",
    Column.NUMBER: "Their direct number (+44 20 …, 020 …, 00 44 …); empty: Switchboard picks "
    "one for Essentials, none otherwise.",
    Column.EXTENSION: "Their extension; empty: Switchboard picks one for a licensed user.",
    Column.CALLERID_MODE: "Own number, Company main number, Another company number or "
    "Anonymous; empty leaves it as it is.",
    Column.CALLERID_NUMBER: "For Another company number: that number, or its last digits.",
    Column.CALLER_NAME: "The name shown on calls; empty: their display name.",
    Column.PAI: "Yes to send the P-Asserted-Identity header, No not to.",
    Column.PAI_NUMBER: "The number the PAI header asserts; empty: the number presented.",
    Column.HUNT_GROUPS: "The hunt groups they belong to, separated by semicolons.",
    Column.ACTION: "remove to remove the user; empty to create or update them.",
}

# Header names as people write them, lower case with everything but letters and digits dropped.
_ALIASES: dict[str, Column] = {
    "name": Column.NAME,
    "displayname": Column.NAME,
    "fullname": Column.NAME,
    "email": Column.EMAIL,
    "emailaddress": Column.EMAIL,
    "primaryemail": Column.EMAIL,
    "mail": Column.EMAIL,
    "upn": Column.EMAIL,
    "userprincipalname": Column.EMAIL,
    "licence": Column.LICENCE,
    "license": Column.LICENCE,
    "callinglicence": Column.LICENCE,
    "callinglicense": Column.LICENCE,
    "number": Column.NUMBER,
    "phonenumber": Column.NUMBER,
    "directnumber": Column.NUMBER,
    "ddi": Column.NUMBER,
    "did": Column.NUMBER,
    "extension": Column.EXTENSION,
    "ext": Column.EXTENSION,
    "callerid": Column.CALLERID_MODE,
    "calleridmode": Column.CALLERID_MODE,
    "calleridnumber": Column.CALLERID_NUMBER,
    "callername": Column.CALLER_NAME,
    "calleridname": Column.CALLER_NAME,
    "pai": Column.PAI,
    "sendpai": Column.PAI,
    "painumber": Column.PAI_NUMBER,
    "huntgroups": Column.HUNT_GROUPS,
    "huntgroup": Column.HUNT_GROUPS,
    "groups": Column.HUNT_GROUPS,
    "action": Column.ACTION,
}
_NOT_NAME_CHARS = re.compile(r"[^a-z0-9]")
REQUIRED = (Column.NAME, Column.EMAIL)


class FileRefusedError(ValidationError):
    """The file as a whole cannot be read as a bulk spreadsheet; nothing was looked at."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="file")


@dataclass(frozen=True)
class SheetRow:
    """One record of the file: the line it starts on, and its cells by column."""

    line: int
    cells: dict[Column, str]

    def get(self, column: Column) -> str:
        """The cell's text with its white space trimmed ("" when the column is absent)."""
        return self.cells.get(column, "").strip()


@dataclass(frozen=True)
class Sheet:
    """A bulk spreadsheet as read: its columns, its records, and what was noticed on the way."""

    columns: tuple[Column, ...]
    rows: list[SheetRow]
    notes: list[str] = field(default_factory=list)


def header_key(raw: str) -> str:
    """A header cell reduced to what identifies it: lower case letters and digits."""
    return _NOT_NAME_CHARS.sub("", raw.strip().lower())


def decode(data: bytes) -> tuple[str, str | None]:
    """The file's text, and a note when it was not UTF-8 (Excel's "CSV" is Windows-1252)."""
    if data.startswith(codecs.BOM_UTF8):
        return _strict(data[len(codecs.BOM_UTF8) :], "utf-8"), None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _strict(data, "utf-16"), None
    if len(data) >= 4 and data.count(b"\x00") * 3 >= len(data):
        # UTF-16 without its byte order mark: ASCII text has a zero in every other byte.
        little = data[1::2].count(0) >= data[0::2].count(0)
        return _strict(data, "utf-16-le" if little else "utf-16-be"), None
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    text = _strict(data, "cp1252")
    return text, (
        "The file is not UTF-8; it was read as Windows-1252 (Excel's plain “CSV” format). "
        "Check accented names, or save it as “CSV UTF-8” next time."
    )


def _strict(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        raise FileRefusedError(
            "The file is not text Switchboard can read; in Excel, save it as “CSV UTF-8”."
        ) from None


def _delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def parse_sheet(data: bytes) -> Sheet:
    """Read a bulk spreadsheet; a file that cannot be read as one is refused as a whole."""
    if len(data) > MAX_FILE_BYTES:
        raise FileRefusedError(
            f"The file is {len(data) / 1024 / 1024:.1f} MB; Switchboard takes files of up to "
            f"{MAX_FILE_BYTES // 1024 // 1024} MB. Split it into smaller files."
        )
    text, encoding_note = decode(data)
    if "\x00" in text:
        raise FileRefusedError(
            "The file holds binary data (NUL characters); export it from the spreadsheet as CSV."
        )
    notes = [encoding_note] if encoding_note else []
    lines = text.splitlines()
    skip = 0
    while skip < len(lines) and not lines[skip].strip():
        skip += 1
    if skip == len(lines):
        raise FileRefusedError("The file is empty; start from the template.")
    first = lines[skip].strip()
    delimiter: str | None = None
    if first.lower().startswith("sep=") and len(first) == 5:
        # Excel's own hint for the delimiter, on a line of its own.
        delimiter = first[4]
        text = "\n".join(lines[skip + 1 :])
        offset = skip + 1
        skip = 0
        lines = lines[offset:]
        while skip < len(lines) and not lines[skip].strip():
            skip += 1
        if skip == len(lines):
            raise FileRefusedError("The file is empty; start from the template.")
    else:
        offset = 0
    if delimiter is None:
        delimiter = _delimiter(lines[skip])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records: list[tuple[int, list[str]]] = []
    try:
        while True:
            start = reader.line_num + 1 + offset
            try:
                record = next(reader)
            except StopIteration:
                break
            if any(cell.strip() for cell in record):
                records.append((start, record))
    except csv.Error:
        raise FileRefusedError(
            f"Line {reader.line_num + offset} cannot be read: a quote is opened and never "
            "closed, or a quoted cell has text after its closing quote."
        ) from None
    if not records:
        raise FileRefusedError("The file is empty; start from the template.")
    header = records[0][1]
    columns, ignored = _columns(header)
    if ignored:
        notes.append(f"Columns ignored (not Switchboard's): {', '.join(ignored)}.")
    rows: list[SheetRow] = []
    long_lines: list[int] = []
    width = len(header)
    for line, record in records[1:]:
        if len(record) > width and any(cell.strip() for cell in record[width:]):
            long_lines.append(line)
        cells = {
            column: record[index]
            for index, column in enumerate(columns)
            if column is not None and index < len(record)
        }
        rows.append(SheetRow(line, cells))
    if long_lines:
        shown = ", ".join(str(n) for n in long_lines[:_MAX_NOTES])
        more = f" and {len(long_lines) - _MAX_NOTES} more" if len(long_lines) > _MAX_NOTES else ""
        subject = f"Line {shown} has" if len(long_lines) == 1 else f"Lines {shown}{more} have"
        notes.append(
            f"{subject} more cells than the first line has columns; the extra cells were ignored."
        )
    if not rows:
        raise FileRefusedError(
            "The file has its column names but no users below them; add one user a line."
        )
    return Sheet(tuple(c for c in columns if c is not None), rows, notes)


def _columns(header: list[str]) -> tuple[list[Column | None], list[str]]:
    columns: list[Column | None] = []
    ignored: list[str] = []
    seen: dict[Column, str] = {}
    for raw in header:
        column = _ALIASES.get(header_key(raw))
        if column is None:
            if raw.strip():
                ignored.append(f"“{raw.strip()[:40]}”")
            columns.append(None)
            continue
        if column in seen:
            raise FileRefusedError(
                f"The columns “{seen[column]}” and “{raw.strip()}” both mean {column.header}; "
                "keep one of them."
            )
        seen[column] = raw.strip()
        columns.append(column)
    missing = [column.header for column in REQUIRED if column not in seen]
    if missing:
        raise FileRefusedError(
            f"The first line must name the columns, and it has no {' or '.join(missing)} "
            "column. Start from the template: Name, E-mail, Licence, Number, Extension, …"
        )
    return columns, ignored


def write_sheet(rows: list[list[str]], headers: list[str]) -> bytes:
    """A CSV file Excel opens as it is: UTF-8 with a byte order mark, comma separated."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return codecs.BOM_UTF8 + buffer.getvalue().encode("utf-8")

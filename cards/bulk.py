"""Many users at once from a spreadsheet: the export card (with what each column means), the
import card (a paste box, or a file attached in the chat), the preview, the progress of an
apply and its result."""

from __future__ import annotations

from collections.abc import Sequence

from microsoft_teams.cards import CardElement, TextInput

from cards.actions import (
    MAX_PASTE,
    ApplyImport,
    ExportDirectory,
    ImportRef,
    ImportResultFile,
    OpenDirectory,
    OpenImport,
    OpenSync,
    PreviewFile,
    PreviewPasted,
)
from cards.common import Card, Errors, button, facts, field_error, frame, paragraph, plain
from services.bulk.sheet import COLUMN_HELP, MAX_FILE_BYTES, Column
from services.bulk.values import ImportProgress, Preview, RowAction
from services.views import EnterpriseView

# What one card shows before pointing at the file with every row: a card has to stay small
# enough for Teams (about 28 KB).
SHOWN_REJECTED = 20
SHOWN_CHANGES = 10
SHOWN_FAILED = 20
MAX_SHOWN_TEXT = 300

BULK_HELP = (
    "**Export** gives the directory as a CSV file: edit it in Excel or any spreadsheet, then "
    "send it back with **import**. The blank template has the same columns.\n\n"
    "Rows are matched by **e-mail**: a new address creates a user, a known one updates them, "
    "and **remove** in the Action column removes them. Empty cells leave things as they are "
    "or let Switchboard pick (numbers and extensions).\n\n"
    "Nothing changes until you press **Apply** on the preview, and only while the preview is "
    "still current."
)
IMPORT_HELP = (
    "Attach the CSV file to a message in your personal chat with Switchboard (up to "
    f"{MAX_FILE_BYTES // (1024 * 1024)} MB), or paste it into the box. Comma or semicolon, "
    "UTF-8 or Excel's own formats, any case in the header names: all are fine. Columns "
    "Switchboard does not know are ignored, with a note.\n\n"
    "The preview shows every row that cannot be applied, with its line number and why; the "
    "others are applied when you press Apply, each with the same rules as the single-user "
    "forms. A row that fails does not undo the others."
)


def _short(text: str) -> str:
    """`text` cut to what a card line shows."""
    return text if len(text) <= MAX_SHOWN_TEXT else text[: MAX_SHOWN_TEXT - 1] + "…"


def column_facts() -> CardElement:
    """Every column of the spreadsheet and what it means."""
    return facts([(column.header, COLUMN_HELP[column]) for column in Column])


def export_card(
    enterprise: EnterpriseView, *, template: bool, sent: bool, notice: str | None = None
) -> Card:
    """What the exported file (or the template) holds, column by column; the file itself comes
    as a separate message Teams asks to save."""
    what = "The blank template" if template else f"The directory of {plain(enterprise.name)}"
    body: list[CardElement] = []
    if sent:
        body.append(
            paragraph(
                f"{what} is on its way as a CSV file: press **Allow** on the file card so "
                "Teams saves it to your OneDrive, then open it in Excel."
            )
        )
    body += [
        paragraph("**The columns**"),
        column_facts(),
        paragraph(
            "Edit the rows, add new people, or put **remove** in the Action column; then type "
            "**import** and send the file back.",
            subtle=True,
        ),
    ]
    ent = enterprise.id
    return frame(
        "Blank template" if template else "Export the directory",
        body,
        help_text=BULK_HELP,
        notice=notice,
        actions=(
            button("Import", OpenImport(ent=ent), primary=True),
            button(
                "Export" if template else "Blank template",
                ExportDirectory(ent=ent, template=not template),
            ),
            button("Directory", OpenDirectory(ent=ent)),
        ),
        ent=ent,
    )


def paste_box(sheet: str, errors: Errors) -> list[CardElement]:
    """The multi-line box a CSV is pasted into, with its error."""
    box = TextInput(
        id="sheet",
        label="Or paste the CSV here",
        value=sheet or None,
        placeholder="Name,E-mail,Licence,Number,Extension\nAda Lovelace,ada@contoso.example,Essentials,,",
        is_multiline=True,
        max_length=MAX_PASTE,
    )
    return [box, *field_error(errors, "sheet")]


def import_card(
    enterprise: EnterpriseView,
    *,
    sheet: str = "",
    errors: Errors | None = None,
    personal: bool = True,
) -> Card:
    """How to send a spreadsheet: attach it in the personal chat, or paste it."""
    errors = errors or {}
    ent = enterprise.id
    limit = MAX_FILE_BYTES // (1024 * 1024)
    attach = (
        f"Attach the CSV file to a message here (📎, up to {limit} MB): Switchboard previews it."
        if personal
        else "Files can be attached in your personal chat with Switchboard only; here, paste "
        "the CSV below."
    )
    body: list[CardElement] = [
        paragraph(attach),
        *paste_box(sheet, errors),
        paragraph(
            f"The box takes up to {MAX_PASTE:,} characters (about 120 users); attach larger "
            "files. Nothing changes until you press Apply on the preview.",
            subtle=True,
        ),
    ]
    return frame(
        "Import users",
        body,
        help_text=IMPORT_HELP,
        notice=errors.get("form"),
        actions=(
            button("Preview", PreviewPasted(ent=ent), primary=True),
            button("Export", ExportDirectory(ent=ent)),
            button("Blank template", ExportDirectory(ent=ent, template=True)),
        ),
        ent=ent,
    )


def _count_facts(preview: Preview) -> CardElement:
    return facts(
        [
            ("Create", str(preview.count(RowAction.CREATE))),
            ("Update", str(preview.count(RowAction.UPDATE))),
            ("Remove", str(preview.count(RowAction.REMOVE))),
            ("Unchanged", str(preview.count(RowAction.UNCHANGED))),
            ("Rejected", str(preview.count(RowAction.REJECTED))),
        ]
    )


def preview_card(
    enterprise: EnterpriseView,
    preview: Preview,
    *,
    file_name: str,
    sheet: str = "",
    upload: str = "",
    notice: str | None = None,
    success: str | None = None,
) -> Card:
    """What applying the file would do: the counts, every rejected row (the first ones here,
    all in the file), the first changes; Apply carries the preview's token."""
    ent = enterprise.id
    body: list[CardElement] = [paragraph(f"**{plain(file_name)}**"), _count_facts(preview)]
    for note in preview.notes:
        body.append(paragraph(f"ℹ {plain(_short(note))}", subtle=True))
    rejected = preview.rejected
    if rejected:
        body.append(paragraph(f"**Rejected rows ({len(rejected)})**: these are not applied."))
        body.append(
            paragraph(
                "\n\n".join(
                    f"Line {row.line} ({plain(_short(row.email) or 'no e-mail')}): "
                    f"{plain(_short(row.reason))}"
                    for row in rejected[:SHOWN_REJECTED]
                ),
                color="Attention",
            )
        )
        if len(rejected) > SHOWN_REJECTED:
            body.append(
                paragraph(
                    f"… and {len(rejected) - SHOWN_REJECTED} more rejected rows: every one is "
                    "in the full list.",
                    subtle=True,
                )
            )
    changing = preview.changing
    if changing:
        body.append(paragraph("**What changes**"))
        body.append(
            paragraph(
                "\n\n".join(
                    f"Line {row.line}, {row.action.value} {plain(_short(row.email))}"
                    + (f": {plain(_short('; '.join(row.changes)))}" if row.changes else "")
                    for row in changing[:SHOWN_CHANGES]
                )
            )
        )
        if len(changing) > SHOWN_CHANGES:
            body.append(
                paragraph(
                    f"… and {len(changing) - SHOWN_CHANGES} more changes: every one is in the "
                    "full list.",
                    subtle=True,
                )
            )
    else:
        body.append(paragraph("Nothing to apply: no row changes the directory."))
    if not upload:
        body += paste_box(sheet, {})
    actions = []
    if changing:
        actions.append(
            button(
                f"Apply {len(changing)} changes",
                ApplyImport(ent=ent, token=preview.token, upload=upload, file_name=file_name),
                primary=True,
            )
        )
    actions.append(button("Full list as a file", PreviewFile(ent=ent, upload=upload)))
    if not upload:
        actions.append(button("Preview again", PreviewPasted(ent=ent)))
    return frame(
        "Preview of the import",
        body,
        help_text=IMPORT_HELP,
        notice=notice,
        success=success,
        actions=actions,
        ent=ent,
    )


def _percent(progress: ImportProgress) -> int:
    todo = progress.total - progress.rejected - progress.unchanged
    done = progress.applied + progress.failed
    return 100 if todo <= 0 else min(100, round(100 * done / todo))


def progress_card(
    enterprise: EnterpriseView, progress: ImportProgress, *, file_name: str, resumed: bool = False
) -> Card:
    """How far an apply has got; the bot updates this card in place as batches finish."""
    ent = enterprise.id
    percent = _percent(progress)
    filled = percent // 5
    lead = (
        "Switchboard restarted during this import and carries on where it stopped: no row is "
        "applied twice. "
        if resumed
        else ""
    )
    body: list[CardElement] = [
        paragraph(f"**{plain(file_name or f'Import {progress.import_id}')}**"),
        paragraph(f"{'█' * filled}{'░' * (20 - filled)} {percent}%"),
        facts(
            [
                ("Applied", str(progress.applied)),
                ("Failed", str(progress.failed)),
                ("Still to apply", str(progress.pending)),
            ]
        ),
        paragraph(
            lead + "This card follows the import; the result comes as a card and a file.",
            subtle=True,
        ),
    ]
    return frame(
        "Import finished" if progress.finished else "Applying the import",
        body,
        help_text=IMPORT_HELP,
        actions=(button("Refresh", ImportRef(ent=ent, import_id=progress.import_id)),),
        ent=ent,
    )


def result_card(
    enterprise: EnterpriseView,
    progress: ImportProgress,
    failures: Sequence[tuple[str, str, str]],
    *,
    file_name: str,
    notice: str | None = None,
) -> Card:
    """How an import ended: how many rows were applied, and each failed row with the reason
    (line, e-mail, reason); the result file has every row."""
    ent = enterprise.id
    body: list[CardElement] = [
        paragraph(f"**{plain(file_name or f'Import {progress.import_id}')}**"),
        facts(
            [
                ("Applied", str(progress.applied)),
                ("Failed", str(progress.failed)),
                ("Rejected in the preview", str(progress.rejected)),
                ("Unchanged", str(progress.unchanged)),
            ]
        ),
    ]
    if not progress.finished:
        body.append(paragraph(f"Still applying: {progress.pending} rows to go."))
    if failures:
        body.append(paragraph(f"**Failed rows ({len(failures)})**"))
        body.append(
            paragraph(
                "\n\n".join(
                    f"Line {plain(line)} ({plain(_short(email))}): {plain(_short(reason))}"
                    for line, email, reason in failures[:SHOWN_FAILED]
                ),
                color="Attention",
            )
        )
        if len(failures) > SHOWN_FAILED:
            body.append(
                paragraph(
                    f"… and {len(failures) - SHOWN_FAILED} more: every row is in the result file.",
                    subtle=True,
                )
            )
    body.append(
        paragraph(
            "The PBX has the changes now; Microsoft gets them all with the next sync.",
            subtle=True,
        )
    )
    return frame(
        "Import result" if progress.finished else "Import under way",
        body,
        help_text=IMPORT_HELP,
        notice=notice,
        success=(f"{progress.applied} rows applied." if progress.finished and not notice else None),
        actions=(
            button("Result as a file", ImportResultFile(ent=ent, import_id=progress.import_id)),
            button("Directory", OpenDirectory(ent=ent)),
            button("Sync status", OpenSync(ent=ent)),
        ),
        ent=ent,
    )

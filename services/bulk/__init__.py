"""Bulk import and export of users from and to a spreadsheet.

The flow, for the CLI and the bot alike (`Bulk.of(directory)`):

- `export(enterprise_id)` and `template()`: CSV bytes to send the admin.
- `preview(enterprise_id, data)`: a `Preview` (counts, rejected rows with line and reason,
  changes, notes on the file, and a `token`); `preview_csv(preview)` is the whole list as a
  file. A file that cannot be read at all raises `FileRefusedError` (one line to show).
- `start(actor, enterprise_id, data, token, file_name)`: records the rows to apply, or raises
  `StalePreviewError` when the preview shown is no longer what the file would do; returns the
  import's id. `run(import_id, on_batch=...)` applies it (`on_batch` hears an
  `ImportProgress` after each batch); `apply(...)` is both.
- `unfinished()` lists imports cut short (run them again at startup); `progress(import_id)`
  and `result_csv(import_id)` report.
"""

from services.bulk.models import BulkImport, BulkImportRow, ImportStatus, RowAction, RowStatus
from services.bulk.plan import Preview, RowPlan
from services.bulk.service import (
    AlreadyAppliedError,
    Bulk,
    ImportProgress,
    ProgressListener,
    StalePreviewError,
    preview_csv,
    read_result,
    template,
)
from services.bulk.sheet import (
    COLUMN_HELP,
    MAX_FILE_BYTES,
    Column,
    FileRefusedError,
    parse_sheet,
)

__all__ = [
    "COLUMN_HELP",
    "MAX_FILE_BYTES",
    "AlreadyAppliedError",
    "Bulk",
    "BulkImport",
    "BulkImportRow",
    "Column",
    "FileRefusedError",
    "ImportProgress",
    "ImportStatus",
    "Preview",
    "ProgressListener",
    "RowAction",
    "RowPlan",
    "RowStatus",
    "StalePreviewError",
    "parse_sheet",
    "preview_csv",
    "read_result",
    "template",
]

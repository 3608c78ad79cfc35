"""Bulk import and export of users from and to a spreadsheet."""

from services.bulk.models import BulkImport, BulkImportRow, ImportStatus, RowAction, RowStatus
from services.bulk.plan import Preview, RowPlan
from services.bulk.service import (
    Bulk,
    ImportProgress,
    StalePreviewError,
    preview_csv,
    read_result,
    template,
)
from services.bulk.sheet import MAX_FILE_BYTES, Column, FileRefusedError, parse_sheet

__all__ = [
    "MAX_FILE_BYTES",
    "Bulk",
    "BulkImport",
    "BulkImportRow",
    "Column",
    "FileRefusedError",
    "ImportProgress",
    "ImportStatus",
    "Preview",
    "RowAction",
    "RowPlan",
    "RowStatus",
    "StalePreviewError",
    "parse_sheet",
    "preview_csv",
    "read_result",
    "template",
]

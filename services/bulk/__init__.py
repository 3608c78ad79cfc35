"""Bulk import and export of users from and to a spreadsheet.

The flow, for the CLI and the bot alike (`Bulk.of(services)`, services/bulk/service.py):

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

Each name is imported from its own module (`values` for what the cards show, `sheet` for reading
files, `plan` for the preview, `service` for applying, `models` for the tables), so a card
loads no database code.
"""

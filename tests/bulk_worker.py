"""A process that applies a bulk import and stops dead in the middle of a batch, for the
resume test: once it has marked `stop_after` rows applied inside its transactions (not yet
committed) it prints "stalled" and blocks, holding its open transaction, until it is killed.

    python -m tests.bulk_worker DATABASE_URL KEY_FILE IMPORT_ID BATCH_SIZE STOP_AFTER
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event

from services.bulk.service import Bulk
from services.config import Settings
from services.container import Services
from services.db import Database
from services.passwords import PasswordVault


async def main(url: str, key_file: str, import_id: int, batch_size: int, stop_after: int) -> None:
    db = Database(url)
    marked = 0

    @event.listens_for(db.write_engine.sync_engine, "after_cursor_execute")
    def _count(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool
    ) -> None:
        nonlocal marked
        if statement.lstrip().upper().startswith("UPDATE BULK_IMPORT_ROWS"):
            was = marked
            marked += len(parameters) if many else 1
            if was < stop_after <= marked:
                print("stalled", flush=True)
                time.sleep(3600)

    settings = Settings(database_url=url, secret_key_file=Path(key_file), quarantine_days=30)
    services = Services.build(db, settings, PasswordVault.from_settings("", Path(key_file)))
    await Bulk.of(services, batch_size=batch_size).run(import_id)
    print("finished", flush=True)


if __name__ == "__main__":
    url, key_file, import_id, batch_size, stop_after = sys.argv[1:]
    asyncio.run(main(url, key_file, int(import_id), int(batch_size), int(stop_after)))

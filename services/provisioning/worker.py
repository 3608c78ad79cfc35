"""Running sync workers outside the bot process (`python -m services.provisioning`)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from services.config import Settings
from services.db import Database
from services.graph import GraphService
from services.passwords import PasswordVault
from services.provisioning.engine import ProvisioningEngine

# One logger for the whole engine, named as it was before the package split.
logger = logging.getLogger("services.provisioning")


# --- running outside the bot ---------------------------------------------------------------------


async def run_workers(settings: Settings, stop: asyncio.Event) -> None:
    """Open the database and Graph, run the configured workers until `stop` is set."""
    db = Database(settings.database_url)
    await db.migrate()
    vault = PasswordVault.from_settings(settings.secret_key, settings.secret_key_file)
    graph = GraphService(settings.graph) if settings.graph.enabled else None
    if graph is None:
        logger.warning("Microsoft Graph is not configured: syncs wait and become overdue")
    count = 1 if db.is_sqlite else settings.sync.workers
    engines = [ProvisioningEngine(db, vault, graph, settings) for _ in range(count)]
    try:
        for engine in engines:
            await engine.start()
        await stop.wait()
    finally:
        for engine in engines:
            await engine.stop()
        if graph is not None:
            await graph.close()
        await db.dispose()


def main() -> None:
    """`python -m services.provisioning`: run sync workers until SIGTERM or SIGINT."""
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_workers(Settings.from_env(), stop)

    asyncio.run(serve())

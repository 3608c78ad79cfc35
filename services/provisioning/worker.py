"""Running sync workers outside the bot process (`python -m services.provisioning`)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from services.config import Settings, SettingsError
from services.container import open_services

# One logger for the whole engine, named as it was before the package split.
logger = logging.getLogger("services.provisioning")


# --- running outside the bot ---------------------------------------------------------------------


async def run_workers(settings: Settings, stop: asyncio.Event) -> None:
    """Open the services from the composition root, run the configured workers until `stop`
    is set."""
    services = await open_services(settings)
    if services.graph is None:
        logger.warning("Microsoft Graph is not configured: syncs wait and become overdue")
    engines = services.sync_workers()
    try:
        for engine in engines:
            await engine.start()
        await stop.wait()
    finally:
        for engine in engines:
            await engine.stop()
        await services.close()


def main() -> None:
    """`python -m services.provisioning`: run sync workers until SIGTERM or SIGINT; bad
    settings exit with code 2 and one line each (`switchboard worker` does the same)."""
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        for problem in error.problems:
            print(f"switchboard: error: {problem}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_workers(settings, stop)

    asyncio.run(serve())

"""The bot application: the services from the composition root (services/container.py), the
bot and its routes, and the background work that lives as long as the app serves."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from bot.auth import BotSettings
from bot.features import build_router
from bot.features.bulk import serve_bulk_imports
from bot.http import BOT_ADAPTER_KEY, BOT_SETTINGS_KEY, READINESS_KEY, create_bot_app
from bot.notifier import ProactiveNotifier
from bot.switchboard import SwitchboardBot
from services.config import Settings
from services.container import Services, open_services
from services.db import is_unreachable
from services.pbx.factory import Pbx
from services.provisioning import ProvisioningEngine
from services.retry import run_passes

logger = logging.getLogger(__name__)

SERVICES_KEY = web.AppKey("switchboard.services", Services)
HOUSEKEEPING_SECONDS = 300.0


async def keep_house(services: Services, stop: asyncio.Event, interval: float) -> None:
    """Every `interval` seconds: free numbers whose quarantine has ended, and forget handled
    activities older than the ledger keeps them."""

    async def one_round() -> None:
        freed = await services.inventory.sweep(None)
        forgotten = await services.ledger.prune()
        if freed or forgotten:
            logger.info(
                "Housekeeping: %d numbers out of quarantine, %d old activities forgotten",
                freed,
                forgotten,
            )

    # Nothing wakes it early: it runs every `interval`, a failed round tried at the next.
    await run_passes(
        one_round,
        wake=asyncio.Event(),
        interval=interval,
        logger=logger,
        failure="Housekeeping failed",
        stop=stop,
        expected=is_unreachable,
    )


def build_app(services: Services, bot_settings: BotSettings) -> web.Application:
    """The bot application over open services."""
    bot = SwitchboardBot(services, build_router())
    app = create_bot_app(bot_settings, bot)
    app[SERVICES_KEY] = services
    serve_bulk_imports(app, services)  # files through Teams; imports applied in the background
    app[READINESS_KEY] = services.db.ping

    async def keep_last_answers(_: web.Application) -> None:
        await services.ledger.flush()

    # Registered before anything that closes the services, so the last answers are written.
    app.on_cleanup.append(keep_last_answers)
    return app


class BackgroundWork:
    """The PBX pusher, housekeeping, the proactive notifier and the sync workers, living as
    long as the app serves. Every instance of the bot runs its own; they share the work
    through the database (docs/SCALING.md)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.engines: list[ProvisioningEngine] = []
        self.notifier: ProactiveNotifier | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def pbx(self) -> Pbx:
        """The PBX the pusher applies the directory's changes to."""
        return self.services.pbx

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: start everything on startup, stop it all on cleanup."""
        await self.start(app)
        try:
            yield
        finally:
            await self.stop()

    async def start(self, app: web.Application) -> None:
        """Start the PBX pusher, housekeeping, the notifier, then the sync workers (they wake
        the notifier)."""
        services = self.services
        self._stop.clear()
        self._tasks = [
            # The PBX applies changes at once: its pusher wakes on every commit.
            asyncio.create_task(services.pbx.pusher.run_forever(self._stop)),
            asyncio.create_task(keep_house(services, self._stop, HOUSEKEEPING_SECONDS)),
        ]
        if services.graph is None:
            logger.warning(
                "Microsoft Graph is not configured (GRAPH_CLIENT_ID): syncs stay requested "
                "and overdue ones are escalated"
            )
        self.notifier = ProactiveNotifier(
            app[BOT_ADAPTER_KEY], app[BOT_SETTINGS_KEY].app_id, services, services.settings.sync
        )
        await self.notifier.start()
        self.engines = services.sync_workers(on_notice=self.notifier.wake)
        for engine in self.engines:
            await engine.start()

    async def stop(self) -> None:
        """Stop the workers (their items go back to the queue), the pusher, the notifier."""
        for engine in self.engines:
            await engine.stop()
        self.engines = []
        self._stop.set()
        for task in self._tasks:
            await task
        self._tasks = []
        if self.notifier is not None:
            await self.notifier.stop()
            self.notifier = None


BACKGROUND_KEY = web.AppKey("switchboard.background", BackgroundWork)


def start_background_work(app: web.Application, services: Services) -> BackgroundWork:
    """Run the background work with `app` (started on startup, stopped on cleanup)."""
    work = BackgroundWork(services)
    app[BACKGROUND_KEY] = work
    app.cleanup_ctx.append(work.context)
    return work


async def create_app(settings: Settings, bot_settings: BotSettings) -> web.Application:
    """Build the whole bot application from the one settings object; nothing is built at
    import time. The services are closed when the app is."""
    services = await open_services(settings)
    app = build_app(services, bot_settings)
    start_background_work(app, services)

    async def close_services(_: web.Application) -> None:
        await services.close()

    app.on_cleanup.append(close_services)
    return app

"""The composition root: settings, database, services, bot, routes and background work."""

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
from services.graph import GlobalAdminCheck, GraphService, VerifiedDomains
from services.passwords import PasswordVault
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
    """The PBX pusher, the sync workers and the proactive notifier, living as long as the app
    serves."""

    def __init__(
        self,
        services: Services,
        settings: Settings,
        *,
        graph: GraphService | None = None,
        vault: PasswordVault | None = None,
    ) -> None:
        self.services = services
        self.settings = settings
        self.graph = graph
        self.vault = vault or services.users.vault
        self.engines: list[ProvisioningEngine] = []
        self.notifier: ProactiveNotifier | None = None
        self.pbx: Pbx | None = None
        self._stop = asyncio.Event()
        self._pbx_task: asyncio.Task[None] | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._own_graph = False

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: start everything on startup, stop it all on cleanup."""
        await self.start(app)
        try:
            yield
        finally:
            await self.stop()

    async def start(self, app: web.Application) -> None:
        """Start the PBX pusher, the notifier, then the sync workers (they wake the notifier)."""
        settings = self.settings
        # The PBX applies changes at once: its pusher wakes on every commit.
        self.pbx = Pbx.build(settings, self.services.db)
        self._stop.clear()
        self._pbx_task = asyncio.create_task(self.pbx.pusher.run_forever(self._stop))
        self._housekeeping = asyncio.create_task(
            keep_house(self.services, self._stop, HOUSEKEEPING_SECONDS)
        )
        if self.graph is None and settings.graph.enabled:
            self.graph = GraphService(settings.graph)
            self._own_graph = True
        if self.graph is None:
            logger.warning(
                "Microsoft Graph is not configured (GRAPH_CLIENT_ID): syncs stay requested "
                "and overdue ones are escalated"
            )
        else:
            self.services.users.use_email_domain_check(VerifiedDomains(self.graph))
            if settings.graph.check_global_admin:
                self.services.syncs.use_global_admin_check(GlobalAdminCheck(self.graph))
        self.notifier = ProactiveNotifier(
            app[BOT_ADAPTER_KEY], app[BOT_SETTINGS_KEY].app_id, self.services, settings.sync
        )
        await self.notifier.start()
        db = self.services.db
        count = 1 if db.is_sqlite else settings.sync.workers
        self.engines = [
            ProvisioningEngine(db, self.vault, self.graph, settings, on_notice=self.notifier.wake)
            for _ in range(count)
        ]
        for engine in self.engines:
            await engine.start()

    async def stop(self) -> None:
        """Stop the workers (their items go back to the queue), the notifier, Graph, the PBX."""
        for engine in self.engines:
            await engine.stop()
        self.engines = []
        self._stop.set()
        for task in (self._pbx_task, self._housekeeping):
            if task is not None:
                await task
        self._pbx_task = self._housekeeping = None
        if self.pbx is not None:
            await self.pbx.close()
            self.pbx = None
        if self.notifier is not None:
            await self.notifier.stop()
            self.notifier = None
        self.services.syncs.use_global_admin_check(None)
        self.services.users.use_email_domain_check(None)
        if self.graph is not None and self._own_graph:
            await self.graph.close()
            self.graph = None


BACKGROUND_KEY = web.AppKey("switchboard.background", BackgroundWork)


def start_background_work(
    app: web.Application,
    services: Services,
    settings: Settings,
    *,
    graph: GraphService | None = None,
) -> BackgroundWork:
    """Run the sync workers and the notifier with `app` (started on startup, stopped on cleanup).

    `graph` replaces the Graph client built from `settings` (tests point one at the sandbox).
    """
    work = BackgroundWork(services, settings, graph=graph)
    app[BACKGROUND_KEY] = work
    app.cleanup_ctx.append(work.context)
    return work


async def create_app(settings: Settings, bot_settings: BotSettings) -> web.Application:
    """Build the whole bot application from settings; nothing is built at import time."""
    services = await open_services(settings)
    app = build_app(services, bot_settings)
    start_background_work(app, services, settings)

    async def close_services(_: web.Application) -> None:
        await services.db.dispose()

    app.on_cleanup.append(close_services)
    return app

"""The composition root: settings, database, directory, bot, routes and background work."""

from __future__ import annotations

import logging

from aiohttp import web

from bot.auth import BotSettings
from bot.features import build_router
from bot.http import create_bot_app
from bot.switchboard import SwitchboardBot
from services.config import Settings
from services.directory import Directory, open_directory

logger = logging.getLogger(__name__)

DIRECTORY_KEY = web.AppKey("switchboard.directory", Directory)


def build_app(directory: Directory, bot_settings: BotSettings) -> web.Application:
    """The bot application over an open directory."""
    bot = SwitchboardBot(directory, build_router())
    app = create_bot_app(bot_settings, bot)
    app[DIRECTORY_KEY] = directory
    return app


async def create_app(settings: Settings, bot_settings: BotSettings) -> web.Application:
    """Build the whole bot application from settings; nothing is built at import time."""
    directory = await open_directory(settings)
    app = build_app(directory, bot_settings)

    async def close_directory(_: web.Application) -> None:
        await directory.db.dispose()

    app.on_cleanup.append(close_directory)
    return app

"""`python -m bot`: serve the bot on BOT_HOST:BOT_PORT (default 127.0.0.1:3978)."""

from __future__ import annotations

import logging
import os
import sys

from aiohttp import web

from bot.app import create_app
from bot.auth import BotSettings
from bot.request_context import LOG_FORMAT, install_request_id_log_records
from services.config import Settings, SettingsError


def _port(raw: str) -> int:
    if not raw.strip().isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"BOT_PORT must be a port number, not {raw!r}")
    return int(raw)


def main() -> None:
    """Read the environment and serve until interrupted; a bad setting exits with one line."""
    # Before the first record: the database migrations log before the app is built.
    install_request_id_log_records()
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format=LOG_FORMAT)
    host = os.environ.get("BOT_HOST", "127.0.0.1")
    try:
        port = _port(os.environ.get("BOT_PORT", "3978"))
        settings = Settings.from_env()
        bot_settings = BotSettings.from_env()
    except SettingsError as bad:
        sys.exit(f"switchboard: error: {bad.message}")
    except ValueError as bad:  # BOT_PORT, MicrosoftAppType: their messages name them
        sys.exit(f"switchboard: error: {bad}")
    web.run_app(
        create_app(settings, bot_settings),
        host=host,
        port=port,
        print=lambda text: logging.getLogger("bot").info("%s", text),
    )


if __name__ == "__main__":
    main()

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


def main() -> None:
    """Read the environment and serve until interrupted; a bad setting exits with one line."""
    # Before the first record: the database migrations log before the app is built.
    install_request_id_log_records()
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format=LOG_FORMAT)
    host = os.environ.get("BOT_HOST", "127.0.0.1")
    try:
        port = int(os.environ.get("BOT_PORT", "3978"))
        settings = Settings.from_env()
    except SettingsError as bad:
        sys.exit(f"switchboard: error: {bad.message}")
    except ValueError:
        sys.exit(
            f"switchboard: error: BOT_PORT must be a port number, not {os.environ['BOT_PORT']!r}"
        )
    web.run_app(
        create_app(settings, BotSettings.from_env()),
        host=host,
        port=port,
        print=lambda text: logging.getLogger("bot").info("%s", text),
    )


if __name__ == "__main__":
    main()

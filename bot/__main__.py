"""`python -m bot`: serve the bot on BOT_HOST:BOT_PORT (default 127.0.0.1:3978)."""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from bot.app import create_app
from bot.auth import PUBLIC_OPENID_METADATA_URL, AppType, BotSettings
from bot.request_context import LOG_FORMAT, install_request_id_log_records
from services.config import BotEndpointSettings, Settings, SettingsError, read_environment


def bot_settings_from(endpoint: BotEndpointSettings) -> BotSettings:
    """The bot's identity as botbuilder's adapter takes it; ValueError names what is missing
    (a password for the app id, a tenant for a single-tenant app)."""
    return BotSettings(
        app_id=endpoint.app_id,
        app_password=endpoint.app_password,
        app_type=AppType.parse(endpoint.app_type),
        app_tenant_id=endpoint.app_tenant_id,
        openid_metadata_url=endpoint.openid_metadata_url or PUBLIC_OPENID_METADATA_URL,
        token_authority=endpoint.token_authority or None,
        token_authority_ca_bundle=endpoint.token_authority_ca_bundle or None,
    )


def read_settings() -> tuple[Settings, BotSettings]:
    """Every setting, read and checked once; SettingsError lists every bad value, the bot's
    identity (an app id without its password, a single-tenant app without its tenant) with
    the others."""
    problems: list[str] = []
    settings: Settings | None = None
    try:
        settings = Settings.from_env()
    except SettingsError as bad:
        problems.extend(bad.problems)
    bot_settings: BotSettings | None = None
    try:
        endpoint = settings.bot if settings else read_environment(BotEndpointSettings)
        bot_settings = bot_settings_from(endpoint)
    except SettingsError:
        pass  # its bad values are among the problems already
    except ValueError as bad:
        problems.append(str(bad))
    if problems or settings is None or bot_settings is None:
        raise SettingsError(problems)
    return settings, bot_settings


def main() -> None:
    """Read the environment and serve until interrupted; bad settings exit with code 2 and
    one line each on stderr."""
    try:
        settings, bot_settings = read_settings()
    except SettingsError as bad:
        for problem in bad.problems:
            print(f"switchboard: error: {problem}", file=sys.stderr)
        sys.exit(2)
    # Before the first record: the database migrations log before the app is built.
    install_request_id_log_records()
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT)
    web.run_app(
        create_app(settings, bot_settings),
        host=settings.bot.host,
        port=settings.bot.port,
        print=lambda text: logging.getLogger("bot").info("%s", text),
    )


if __name__ == "__main__":
    main()

"""Pytest fixtures for bot tests over real HTTP.

Load them with ``pytest_plugins = ["tests.support.fixtures"]`` (in ``tests/conftest.py``).

- ``identity``: the OpenID metadata server, signing keys and https token authority
  (one per session, each on its own thread).
- ``fake_connector``: a started FakeConnector on the test's event loop.
- ``bot_settings``: BotSettings with an app id, trusting the local identity services;
  ``open_bot_settings``: an empty app id (no authentication).
- ``token_minter``: signs channel tokens for ``bot_settings`` and the fake connector.
- ``teams``: builds Teams activities addressed through the fake connector.
- ``serve_bot``: ``await serve_bot(bot_or_app, settings=...)`` serves a bot on a
  loopback port and returns a RunningBot to POST activities to.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from aiohttp import web
from botbuilder.core import Bot
from botframework.connector.auth import JwtTokenExtractor

from bot.auth import BotSettings
from bot.http import create_bot_app
from tests.support.activities import TeamsActivities
from tests.support.botclient import RunningBot, ServeBot, serve
from tests.support.connector import FakeConnector
from tests.support.identity import (
    TEST_APP_ID,
    TEST_APP_PASSWORD,
    ChannelTokenMinter,
    IdentityStandIns,
)


def bot_settings_for(identity: IdentityStandIns, app_id: str = TEST_APP_ID) -> BotSettings:
    """Return bot settings that trust ``identity``'s keys and authority."""
    return BotSettings(
        app_id=app_id,
        app_password=identity.authority.clients.get(app_id, TEST_APP_PASSWORD),
        openid_metadata_url=identity.openid.metadata_url,
        token_authority=identity.authority.authority_url(),
        token_authority_ca_bundle=str(identity.authority.ca_bundle_path),
    )


@pytest.fixture(scope="session")
def identity(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityStandIns]:
    """The session's local OpenID metadata server, keys and token authority."""
    stand_ins = IdentityStandIns.start(tmp_path_factory.mktemp("identity"))
    yield stand_ins
    stand_ins.close()


@pytest.fixture(autouse=True)
def fresh_signing_key_cache() -> Iterator[None]:
    """Empty botbuilder's process-wide signing-key cache around every test."""
    JwtTokenExtractor.metadataCache.clear()
    yield
    JwtTokenExtractor.metadataCache.clear()


@pytest.fixture
async def fake_connector() -> AsyncIterator[FakeConnector]:
    """A started fake Bot Connector."""
    connector = await FakeConnector().start()
    yield connector
    await connector.close()


@pytest.fixture
def bot_settings(identity: IdentityStandIns) -> BotSettings:
    """Settings with an app id: tokens required, replies authenticated locally."""
    return bot_settings_for(identity)


@pytest.fixture
def open_bot_settings() -> BotSettings:
    """Settings with an empty app id: no authentication (local demo mode)."""
    return BotSettings()


@pytest.fixture
def token_minter(
    identity: IdentityStandIns, bot_settings: BotSettings, fake_connector: FakeConnector
) -> ChannelTokenMinter:
    """Mints tokens for ``bot_settings.app_id`` with the fake connector as serviceurl."""
    return ChannelTokenMinter(identity.keys, bot_settings.app_id, fake_connector.url)


@pytest.fixture
def teams(fake_connector: FakeConnector, bot_settings: BotSettings) -> TeamsActivities:
    """Builds Teams activities whose serviceUrl is the fake connector."""
    return TeamsActivities(service_url=fake_connector.url, bot_app_id=bot_settings.app_id)


@pytest.fixture
async def serve_bot(
    identity: IdentityStandIns, bot_settings: BotSettings
) -> AsyncIterator[ServeBot]:
    """Serve bots on loopback ports for the test; all are stopped afterwards.

    Given a Bot, builds the app with ``create_bot_app(settings, bot)``; given an app,
    serves it as is (``settings`` then only tells which app id to mint tokens for).
    Settings default to ``bot_settings``.
    """
    running: list[RunningBot] = []

    async def start(
        bot_or_app: Bot | web.Application, *, settings: BotSettings | None = None
    ) -> RunningBot:
        effective = settings or bot_settings
        app = (
            bot_or_app
            if isinstance(bot_or_app, web.Application)
            else create_bot_app(effective, bot_or_app)
        )
        mint: Callable[[str], str] | None = None
        if effective.auth_enabled:
            minter = ChannelTokenMinter(identity.keys, effective.app_id, "")

            def mint(service_url: str) -> str:
                return minter.authorization(service_url=service_url)

        bot = await serve(app, mint_authorization=mint)
        running.append(bot)
        return bot

    yield start
    for bot in reversed(running):
        await bot.close()

"""Serve an aiohttp app on a loopback port and talk to it over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from botbuilder.core import Bot
from multidict import CIMultiDict

from bot.auth import BotSettings
from bot.http import HEALTH_PATH, MESSAGES_PATH

# Pass as ``authorization`` to send a valid token minted for the activity's serviceUrl.
VALID_TOKEN = "valid-token"


@dataclass(frozen=True)
class BotResponse:
    """What the bot answered to one HTTP request."""

    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes

    @property
    def text(self) -> str:
        """The body as text."""
        return self.body.decode()

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class RunningBot:
    """A bot app listening on loopback, with an HTTP client posting activities to it.

    ``mint_authorization`` turns a service URL into a valid ``Authorization`` header;
    None for an unauthenticated bot.
    """

    def __init__(
        self,
        runner: web.AppRunner,
        session: aiohttp.ClientSession,
        mint_authorization: Callable[[str], str] | None,
    ) -> None:
        self.runner = runner
        self.session = session
        self._mint_authorization = mint_authorization
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    @property
    def app(self) -> web.Application:
        """The aiohttp application being served."""
        app = self.runner.app
        assert isinstance(app, web.Application)
        return app

    @property
    def messages_url(self) -> str:
        """The URL of /api/messages."""
        return f"{self.url}{MESSAGES_PATH}"

    async def post(
        self,
        activity: Mapping[str, Any],
        *,
        authorization: str | None = VALID_TOKEN,
        headers: Mapping[str, str] | None = None,
    ) -> BotResponse:
        """POST an activity; by default with a valid token (if the bot needs one).

        ``authorization`` is the exact ``Authorization`` header to send, or None for none.
        """
        if authorization == VALID_TOKEN:
            authorization = (
                self._mint_authorization(str(activity["serviceUrl"]))
                if self._mint_authorization
                else None
            )
        return await self.post_raw(
            json.dumps(activity).encode(), authorization=authorization, headers=headers
        )

    async def post_raw(
        self,
        body: bytes,
        *,
        content_type: str = "application/json",
        authorization: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> BotResponse:
        """POST raw bytes to /api/messages."""
        all_headers = {"Content-Type": content_type, **(headers or {})}
        if authorization is not None:
            all_headers["Authorization"] = authorization
        async with self.session.post(self.messages_url, data=body, headers=all_headers) as resp:
            return BotResponse(resp.status, CIMultiDict(resp.headers), await resp.read())

    async def get(self, path: str = HEALTH_PATH, **kwargs: Any) -> BotResponse:
        """GET ``path`` on the bot."""
        async with self.session.get(f"{self.url}{path}", **kwargs) as resp:
            return BotResponse(resp.status, CIMultiDict(resp.headers), await resp.read())

    async def close(self) -> None:
        """Close the client and stop the server."""
        await self.session.close()
        await self.runner.cleanup()


async def serve(
    app: web.Application,
    *,
    mint_authorization: Callable[[str], str] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> RunningBot:
    """Start ``app`` on a loopback port (a free one by default) and return a client for it."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return RunningBot(runner, aiohttp.ClientSession(), mint_authorization)


class ServeBot(Protocol):
    """The ``serve_bot`` fixture: serves a bot (or a ready app) and returns a client."""

    async def __call__(
        self, bot_or_app: Bot | web.Application, *, settings: BotSettings | None = None
    ) -> RunningBot: ...

"""The benchmark baseline: a bare botbuilder echo bot on botbuilder's stock aiohttp route.

It answers a message with ``echo: <text>`` and an ``adaptiveCard/action`` invoke with
a one-line card, through ``CloudAdapter.process`` exactly as Microsoft's samples do.
Give it the same BotSettings as the bot under test so both check tokens against the same
keys. Its authentication is botbuilder's own class, which builds a connector client and a
user-token client for every turn; only its outbound token comes from Switchboard's msal
factory (botbuilder's own cannot reach a local authority, and would fetch a new token on
every turn). With ``reuse_clients`` it authenticates as Switchboard does instead, keeping
those clients from turn to turn: the benchmark shows both, so the part of the difference
that is client reuse can be told apart.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiohttp import web
from botbuilder.core import ActivityHandler, InvokeResponse, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.schema import AdaptiveCardInvokeResponse
from botframework.connector.auth import BotFrameworkAuthentication

from bot.auth import (
    BotSettings,
    bot_framework_configuration,
    create_bot_framework_authentication,
    create_credentials_factory,
)

CARD_ACTION_INVOKE = "adaptiveCard/action"


class EchoBot(ActivityHandler):  # type: ignore[misc]
    """Echoes messages; answers card actions with a card naming the verb."""

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        """Reply ``echo: <text>``."""
        await turn_context.send_activity(f"echo: {turn_context.activity.text}")

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        """Answer ``adaptiveCard/action`` with a card; other invokes as botbuilder does.

        The body is a botbuilder model, which the stock route serializes correctly
        (a dict body, or one returned from ``on_adaptive_card_invoke``, makes it fail).
        """
        activity = turn_context.activity
        if activity.name != CARD_ACTION_INVOKE:
            response: InvokeResponse = await super().on_invoke_activity(turn_context)
            return response
        verb = (activity.value or {}).get("action", {}).get("verb", "")
        return InvokeResponse(
            status=200,
            body=AdaptiveCardInvokeResponse(
                status_code=200,
                type="application/vnd.microsoft.card.adaptive",
                value=_echo_card(verb),
            ),
        )


def _echo_card(verb: str) -> dict[str, Any]:
    return {
        "type": "AdaptiveCard",
        "version": "1.5",
        "body": [{"type": "TextBlock", "text": f"echo: {verb}"}],
    }


def create_echo_app(
    settings: BotSettings | None = None, *, reuse_clients: bool = False
) -> web.Application:
    """Return an app serving the echo bot at /api/messages through ``CloudAdapter.process``."""
    authentication: BotFrameworkAuthentication
    if settings is not None and reuse_clients:
        authentication = create_bot_framework_authentication(settings)
    elif settings is not None and settings.auth_enabled:
        authentication = ConfigurationBotFrameworkAuthentication(
            bot_framework_configuration(settings),
            credentials_factory=create_credentials_factory(settings),
        )
    else:
        # botbuilder's default (public cloud) authentication, with no app id.
        authentication = ConfigurationBotFrameworkAuthentication(
            SimpleNamespace(APP_ID="", APP_PASSWORD="")
        )
    adapter = CloudAdapter(authentication)
    bot = EchoBot()

    async def messages(request: web.Request) -> web.StreamResponse:
        response = await adapter.process(request, bot)
        return response if response is not None else web.Response(status=201)

    app = web.Application()
    app.router.add_post("/api/messages", messages)
    return app


async def start_echo_bot(
    port: int = 0,
    *,
    settings: BotSettings | None = None,
    host: str = "127.0.0.1",
    reuse_clients: bool = False,
) -> web.AppRunner:
    """Serve the echo bot on ``host:port`` (0: a free port; see ``runner.addresses``).

    Replies go to each activity's ``serviceUrl``, so point activities at the fake
    connector. Without settings the bot runs unauthenticated. Stop it with
    ``await runner.cleanup()``.
    """
    runner = web.AppRunner(create_echo_app(settings, reuse_clients=reuse_clients), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner

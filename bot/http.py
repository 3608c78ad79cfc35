"""The bot's HTTP surface: ``POST /api/messages`` and ``GET /healthz``.

The messages handler is written here rather than using ``CloudAdapter.process``,
which answers forged or expired tokens with 500 instead of 401 and serializes
invoke bodies twice.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web
from botbuilder.core import Bot, InvokeResponse
from botbuilder.core import serializer_helper as to_json_dict
from botbuilder.integration.aiohttp import CloudAdapter
from msrest.serialization import Model

from bot.adapter import ReplyNotDeliveredError, create_adapter
from bot.auth import (
    AuthenticationFailed,
    AuthenticationUnavailable,
    BotSettings,
    authenticate_activity,
    check_token,
    use_nonblocking_signing_keys,
)
from bot.inbound import MAX_BODY_BYTES, MalformedActivityError, parse_activity
from bot.request_context import (
    REQUEST_ID_HEADER,
    current_request_id,
    install_request_id_log_records,
    request_id_from_header,
    request_id_scope,
)

logger = logging.getLogger(__name__)

MESSAGES_PATH = "/api/messages"
HEALTH_PATH = "/healthz"
LIVENESS_PATH = "/healthz/live"
READINESS_PATH = "/healthz/ready"
READINESS_TIMEOUT_SECONDS = 2.0
# When a reply could not reach the Bot Connector: how soon Teams may deliver the activity again.
REPLY_RETRY_AFTER_SECONDS = 5
_JSON = "application/json"

BOT_SETTINGS_KEY = web.AppKey("switchboard.bot_settings", BotSettings)
BOT_ADAPTER_KEY = web.AppKey("switchboard.bot_adapter", CloudAdapter)
BOT_KEY = web.AppKey("switchboard.bot", Bot)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# What must answer before the bot is ready for turns (the database); raises when it cannot.
ReadinessCheck = Callable[[], Awaitable[None]]
READINESS_KEY = web.AppKey("switchboard.readiness", ReadinessCheck)


def create_bot_app(
    settings: BotSettings, bot: Bot, *, adapter: CloudAdapter | None = None
) -> web.Application:
    """Return an aiohttp app serving ``bot`` at /api/messages, plus /healthz.

    The adapter (for proactive messages) is at ``app[BOT_ADAPTER_KEY]``. Add routes,
    startup hooks or cleanup contexts to the returned app as needed.
    """
    install_request_id_log_records()
    adapter = adapter or create_adapter(settings)
    app = web.Application(middlewares=[request_id_middleware], client_max_size=MAX_BODY_BYTES)
    app[BOT_SETTINGS_KEY] = settings
    app[BOT_ADAPTER_KEY] = adapter
    app[BOT_KEY] = bot
    app.router.add_post(MESSAGES_PATH, MessagesEndpoint(settings, adapter, bot).handle)
    app.router.add_get(HEALTH_PATH, health)
    app.router.add_get(LIVENESS_PATH, health)
    app.router.add_get(READINESS_PATH, readiness)
    app.on_startup.append(_announce_security_mode)
    app.on_startup.append(_settle_heap)
    return app


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run the request under its request id and return that id as a response header."""
    with request_id_scope(request_id_from_header(request.headers.get(REQUEST_ID_HEADER))) as rid:
        try:
            response = await handler(request)
        except web.HTTPException as http_error:
            http_error.headers[REQUEST_ID_HEADER] = rid
            raise
        response.headers[REQUEST_ID_HEADER] = rid
        return response


async def health(request: web.Request) -> web.Response:
    """Liveness: answer 200 while the process can serve requests (restart it when not)."""
    return web.json_response({"status": "ok"})


async def readiness(request: web.Request) -> web.Response:
    """Readiness: 200 while what turns need answers (the database), 503 while it does not, so
    a load balancer sends turns elsewhere instead of the process being restarted."""
    check = request.app.get(READINESS_KEY)
    if check is not None:
        try:
            await asyncio.wait_for(check(), timeout=READINESS_TIMEOUT_SECONDS)
        except Exception as error:
            logger.warning("Not ready: the database cannot be reached (%s)", type(error).__name__)
            return web.json_response(
                {"status": "unavailable", "unavailable": ["database"]},
                status=HTTPStatus.SERVICE_UNAVAILABLE,
            )
    return web.json_response({"status": "ready"})


class MessagesEndpoint:
    """``POST /api/messages``: parse, authenticate (401 on any failure), run the turn."""

    def __init__(self, settings: BotSettings, adapter: CloudAdapter, bot: Bot) -> None:
        self._settings = settings
        self._adapter = adapter
        self._bot = bot

    async def handle(self, request: web.Request) -> web.Response:
        """Handle one inbound activity."""
        auth_header = request.headers.get("Authorization")
        if self._settings.auth_enabled:
            if not auth_header:
                logger.warning("Rejected an activity without an Authorization header")
                return _unauthorized()
            # Cheap when already in place; survives tests clearing botbuilder's key cache.
            use_nonblocking_signing_keys(self._settings)
            # The token first: nothing of the body is read for a request without a good one.
            try:
                await check_token(self._adapter.bot_framework_authentication, auth_header)
            except (AuthenticationFailed, AuthenticationUnavailable) as failure:
                return _refused(failure)

        # Then the body, bounded in size and nesting, and the token's claims that name the
        # activity (its service URL) against it.
        try:
            activity = parse_activity(await request.read())
        except MalformedActivityError as malformed:
            logger.warning("Rejected a malformed activity: %s", malformed)
            return _error(HTTPStatus.BAD_REQUEST, str(malformed))
        try:
            auth_result = await authenticate_activity(
                self._adapter.bot_framework_authentication, activity, auth_header
            )
        except (AuthenticationFailed, AuthenticationUnavailable) as failure:
            return _refused(failure)

        try:
            invoke_response = await self._adapter.process_activity(
                auth_result, activity, self._bot.on_turn
            )
            return _http_response(invoke_response)
        except ReplyNotDeliveredError as lost:
            logger.warning(
                "The Bot Connector did not take the reply to a %s activity (reference %s): %s",
                activity.type,
                current_request_id(),
                lost,
            )
            # 503 with Retry-After, not 500: the failure is the connector's and passing, not a
            # bug of ours. Teams treats a 5xx as "not delivered" and may deliver the activity
            # again, which is what could still bring the admin the reply; redelivery is safe,
            # since a change runs once and a redelivered change gets its first answer (the
            # delivery ledger). A 200 would tell Teams all went well, and the reply would be
            # lost for good.
            response = _error(HTTPStatus.SERVICE_UNAVAILABLE, "reply not delivered")
            response.headers["Retry-After"] = str(REPLY_RETRY_AFTER_SECONDS)
            return response
        except Exception:
            logger.exception(
                "Failed to process a %s activity (reference %s)",
                activity.type,
                current_request_id(),
            )
            return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")


def _refused(failure: AuthenticationFailed | AuthenticationUnavailable) -> web.Response:
    """401 for a bad token; 503 when the signing keys cannot be had to judge it."""
    if isinstance(failure, AuthenticationUnavailable):
        logger.error("Cannot authenticate activities: %s", failure)
        return _error(HTTPStatus.SERVICE_UNAVAILABLE, "authentication unavailable")
    logger.warning("Rejected an activity with an invalid token: %s", failure)
    return _unauthorized()


def _http_response(invoke_response: InvokeResponse | None) -> web.Response:
    if invoke_response is None:
        return web.Response(status=HTTPStatus.OK)
    status = int(invoke_response.status or HTTPStatus.OK)
    if invoke_response.body is None:
        return web.Response(status=status)
    return web.Response(body=_dumps(invoke_response.body), status=status, content_type=_JSON)


def _model_to_json(value: Any) -> Any:
    if isinstance(value, Model):
        return to_json_dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _dumps(value: Any) -> bytes:
    """JSON for an invoke body: plain values as they are, botbuilder models serialized once."""
    try:
        return orjson.dumps(value, default=_model_to_json)
    except orjson.JSONEncodeError:
        # Integers beyond 64 bits, which orjson refuses (and anything it cannot serialize,
        # which the standard library refuses just the same).
        return json.dumps(value, default=_model_to_json).encode()


def _error(status: HTTPStatus, message: str) -> web.Response:
    body: dict[str, Any] = {"error": message}
    reference = current_request_id()
    if reference and status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        body["reference"] = reference
    return web.json_response(body, status=status)


def _unauthorized() -> web.Response:
    response = _error(HTTPStatus.UNAUTHORIZED, "unauthorized")
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def _settle_heap(app: web.Application) -> None:
    """Set what startup built aside from the garbage collector: every turn allocates
    thousands of short-lived objects, and full collections would otherwise walk all of the
    imported libraries again and again."""
    gc.collect()
    gc.freeze()


async def _announce_security_mode(app: web.Application) -> None:
    settings = app[BOT_SETTINGS_KEY]
    if settings.auth_enabled:
        logger.info("Bot endpoint requires Bot Framework tokens for app id %s", settings.app_id)
        return
    logger.warning(
        "!!! MicrosoftAppId is empty: %s accepts UNAUTHENTICATED requests from anyone. "
        "Use this only for the local demo; set MicrosoftAppId and MicrosoftAppPassword "
        "for any other deployment. !!!",
        MESSAGES_PATH,
    )

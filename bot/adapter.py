"""The botbuilder CloudAdapter, with reference ids and a turn error handler fit for users."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import aiohttp
from botbuilder.core import InvokeResponse, MessageFactory, Middleware, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import Activity, ActivityTypes
from msrest.exceptions import ClientRequestError, HttpOperationError
from msrest.universal_http.requests import ClientRetryPolicy

from bot.auth import BotSettings, create_bot_framework_authentication
from bot.request_context import current_request_id, request_id_scope

logger = logging.getLogger(__name__)

REFERENCE_ID_KEY = "switchboard.reference_id"
SEARCH_INVOKE_NAME = "application/search"

TurnErrorHandler = Callable[[TurnContext, Exception], Awaitable[None]]


class ReplyNotDeliveredError(Exception):
    """The Bot Connector could not take a turn's reply: out of reach, or failing (5xx, 429)."""


def connector_unreachable(error: BaseException) -> bool:
    """Whether a failed call to the Bot Connector means it is out of reach or failing right
    now (no connection, a timeout, a 5xx or 429 answer), rather than a request of ours it
    refused (a 4xx: a bug)."""
    if isinstance(error, ClientRequestError | OSError | TimeoutError | aiohttp.ClientError):
        return True
    if isinstance(error, HttpOperationError):
        status = getattr(error.response, "status_code", None) or getattr(
            error.response, "status", None
        )
        return isinstance(status, int) and (status >= 500 or status == 429)
    return False


def reference_id(turn_context: TurnContext) -> str:
    """Return the id to quote to the user for this turn (the request id of its HTTP call)."""
    stored = turn_context.turn_state.get(REFERENCE_ID_KEY)
    if isinstance(stored, str):
        return stored
    return current_request_id() or "-"


def apology_text(reference: str) -> str:
    """Return the message a user sees when their request failed unexpectedly."""
    return (
        "Sorry, something went wrong on our side and your request was not completed. "
        f"If it keeps happening, contact support and quote reference {reference}."
    )


def invoke_error_body(reference: str) -> dict[str, Any]:
    """Return the Universal Actions error response Teams shows for a failed invoke."""
    return {
        "statusCode": int(HTTPStatus.INTERNAL_SERVER_ERROR),
        "type": "application/vnd.microsoft.error",
        "value": {"code": "InternalError", "message": apology_text(reference)},
    }


class ReferenceIdMiddleware(Middleware):  # type: ignore[misc]
    """Put the request id on every turn; proactive turns, which have none, get a fresh one."""

    async def on_turn(self, context: TurnContext, logic: Callable[[], Awaitable[None]]) -> None:
        """Record the reference id in the turn state, then run the rest of the pipeline."""
        existing = current_request_id()
        if existing is not None:
            context.turn_state[REFERENCE_ID_KEY] = existing
            await logic()
            return
        with request_id_scope() as fresh:
            context.turn_state[REFERENCE_ID_KEY] = fresh
            await logic()


def make_turn_error_handler() -> TurnErrorHandler:
    """Return an ``on_turn_error`` that logs the failure and apologises with a reference id.

    The exception text never reaches the user: it may hold internal details. For an
    invoke the handler also sets an error invoke response, so the card shows the
    failure; type-ahead searches get only that, not a chat message per keystroke.
    """

    async def on_turn_error(turn_context: TurnContext, error: Exception) -> None:
        if isinstance(error, ReplyNotDeliveredError):
            raise error  # not a bug, and no apology could reach the admin: the HTTP edge says so
        reference = reference_id(turn_context)
        with request_id_scope(reference):
            await _report_turn_error(turn_context, error, reference)

    return on_turn_error


async def _report_turn_error(turn_context: TurnContext, error: Exception, reference: str) -> None:
    activity = turn_context.activity
    logger.error(
        "Unhandled error in a %s turn (reference %s)",
        activity.name or activity.type,
        reference,
        exc_info=error,
    )
    if activity.type == ActivityTypes.invoke:
        await turn_context.send_activity(
            Activity(
                type=ActivityTypes.invoke_response,
                value=InvokeResponse(status=int(HTTPStatus.OK), body=invoke_error_body(reference)),
            )
        )
        if activity.name == SEARCH_INVOKE_NAME:
            return
    await turn_context.send_activity(MessageFactory.text(apology_text(reference)))


def _cheap_retry_policies() -> None:
    """Make building msrest's retry policy cheap: botbuilder builds two per turn, and each
    scans 999 status codes against a 500-item list (milliseconds of CPU on every turn)."""
    if not isinstance(ClientRetryPolicy.safe_codes, frozenset):
        ClientRetryPolicy.safe_codes = frozenset(ClientRetryPolicy.safe_codes)  # type: ignore[assignment]


def create_adapter(settings: BotSettings) -> CloudAdapter:
    """Return a CloudAdapter authenticating with ``settings``, with the error handler installed."""
    _cheap_retry_policies()
    adapter = CloudAdapter(create_bot_framework_authentication(settings))
    adapter.use(ReferenceIdMiddleware())
    adapter.on_turn_error = make_turn_error_handler()
    return adapter

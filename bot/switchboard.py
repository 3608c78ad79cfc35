"""The Teams bot: each turn goes through the pipeline (bot/pipeline.py), and its answer goes
back as a card (a reply, or the invoke response) or as type-ahead results.

Bot Framework types stop here and in bot/steps/.
"""

from __future__ import annotations

from http import HTTPStatus

from botbuilder.core import (
    ActivityHandler,
    CardFactory,
    InvokeResponse,
    MessageFactory,
    TurnContext,
)
from botbuilder.schema import Activity, ActivityTypes

from bot import pipeline
from bot.adapter import ReplyNotDeliveredError, connector_unreachable
from bot.router import Router
from bot.steps import KnownReferences, TurnState
from bot.steps.ledger import delivery_key
from bot.steps.request import command_text, parse_command
from cards.common import Card
from services.container import Services

__all__ = ["SwitchboardBot", "command_text", "delivery_key", "parse_command"]

CARD_RESPONSE = "application/vnd.microsoft.card.adaptive"
SEARCH_RESPONSE = "application/vnd.microsoft.search.searchResponse"


class SwitchboardBot(ActivityHandler):  # type: ignore[misc]
    """Switchboard's activity handler."""

    def __init__(self, services: Services, router: Router) -> None:
        self.services = services
        self.router = router
        self.references = KnownReferences()

    async def on_turn(self, turn_context: TurnContext) -> None:
        """Run the turn through the pipeline and deliver its answer; activities of no kind of
        ours go to botbuilder's own handling (an unknown invoke is 'not implemented')."""
        turn = TurnState(turn_context, self.services, self.router, self.references)
        await pipeline.run(turn)
        if turn.kind == "other":
            await super().on_turn(turn_context)
        elif turn.kind == "search":
            _answer(turn_context, _search_response(turn.results or []))
        elif turn_context.activity.type == ActivityTypes.invoke:
            if turn.card is not None:
                _answer(turn_context, _card_response(turn.card))
        elif turn.card is not None:
            await _reply(
                turn_context, MessageFactory.attachment(CardFactory.adaptive_card(turn.card))
            )


async def _reply(context: TurnContext, activity: Activity) -> None:
    """Send the turn's reply through the Bot Connector; when the connector is out of reach or
    failing, say so (ReplyNotDeliveredError) for the HTTP edge to answer Teams accordingly."""
    try:
        await context.send_activity(activity)
    except Exception as error:
        if connector_unreachable(error):
            raise ReplyNotDeliveredError(type(error).__name__) from error
        raise


def _card_response(card: Card) -> InvokeResponse:
    return InvokeResponse(
        status=int(HTTPStatus.OK), body={"statusCode": 200, "type": CARD_RESPONSE, "value": card}
    )


def _search_response(results: list[tuple[str, str]]) -> InvokeResponse:
    return InvokeResponse(
        status=int(HTTPStatus.OK),
        body={
            "statusCode": 200,
            "type": SEARCH_RESPONSE,
            "value": {"results": [{"title": t, "value": v} for t, v in results]},
        },
    )


def _answer(context: TurnContext, response: InvokeResponse) -> InvokeResponse:
    """Hand the invoke response straight to the adapter: sent as an activity, botbuilder
    would deep-copy the whole card first, the costliest step of a turn."""
    context.turn_state[TurnContext._INVOKE_RESPONSE_KEY] = Activity(
        type=ActivityTypes.invoke_response, value=response
    )
    return response

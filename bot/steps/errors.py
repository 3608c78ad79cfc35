"""Error containment: nothing a later step raises reaches botbuilder (which would answer 500).
An outage of the database, or of Microsoft when the turn needed it, gets the card saying so
(a warning: not a bug), anything else the apology with the reference to quote (an error, with
the traceback); a search simply finds nothing."""

from __future__ import annotations

import logging

from botbuilder.core import TurnContext

from bot.adapter import reference_id
from bot.router import is_outside_outage
from bot.steps import Next, TurnState
from cards.common import Card, apology_card, microsoft_outage_card, outage_card
from services.db import is_unreachable

logger = logging.getLogger(__name__)


def failure_card(context: TurnContext, error: Exception) -> Card:
    """The card for a turn that failed: the outage card while the database (or Microsoft, for
    a turn that needed it) cannot be reached, otherwise the apology with the reference."""
    reference = reference_id(context)
    if is_outside_outage(error):
        logger.warning(
            "Microsoft cannot be reached (reference %s): %s", reference, type(error).__name__
        )
        return microsoft_outage_card()
    if is_unreachable(error):
        logger.warning(
            "The database cannot be reached (reference %s): %s", reference, type(error).__name__
        )
        return outage_card()
    logger.error("A turn failed (reference %s)", reference, exc_info=error)
    return apology_card(reference)


async def contain(turn: TurnState, next: Next) -> None:
    """Run the rest of the chain; a failure becomes the card that says what happened."""
    try:
        await next()
    except Exception as error:
        card = failure_card(turn.context, error)
        if turn.kind == "search":
            turn.results = []
        else:
            turn.card = card

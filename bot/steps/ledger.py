"""The delivery ledger: Teams may deliver one activity twice (or more, to several instances),
and an action that changes something must run once. The claim on the activity commits with
the action's first change, or not at all: the handler's services are handed a database that
carries the claim into their first write transaction. A redelivery then gets the first
delivery's answer, and an action refused before changing anything may simply run again."""

from __future__ import annotations

import copy
import logging
from dataclasses import fields, replace

from botbuilder.schema import Activity

from bot.steps import Next, TurnState, tenant_id
from cards.common import Card, already_handled_card
from services.container import Services
from services.conversations import DeliveryClaim, RedeliveredError

logger = logging.getLogger(__name__)

# How long a redelivery waits for a delivery under way in this process to answer.
DUPLICATE_WAIT_SECONDS = 5.0


def delivery_key(activity: Activity) -> str | None:
    """The key the ledger knows an activity by: its tenant, conversation and id."""
    if not activity.id or not activity.conversation:
        return None
    return f"{tenant_id(activity)}|{activity.conversation.id}|{activity.id}"


async def once(turn: TurnState, next: Next) -> None:
    """Welcome once per conversation; run a changing action once per activity."""
    ledger = turn.services.ledger
    if turn.kind == "welcome":
        # Teams announces an install both as members added and as an installation update.
        if (await ledger.claim(f"welcome|{turn.activity.conversation.id}")).first:
            await next()
        return
    key = delivery_key(turn.activity)
    if turn.kind != "action" or key is None or not turn.router.changes_state(turn.verb):
        await next()  # reading twice does no harm
        return
    redelivered = False
    with ledger.claiming(key) as claim:
        if turn.turn is not None:
            turn.turn.services = services_carrying(turn.turn.services, claim)
        try:
            await next()
        except RedeliveredError:
            redelivered = True
        except BaseException:
            if claim.claimed:
                ledger.keep(key, None)  # changed, then failed: a redelivery gets the stand-in
            raise
        else:
            if claim.claimed:
                # A card showing a secret is answered, never stored: the ledger keeps its
                # stand-in (Turn.answer_redelivery_with).
                kept = turn.turn.redelivery_card if turn.turn else None
                ledger.keep(key, kept if kept is not None else turn.card)
    if redelivered or (not claim.claimed and await ledger.peek(key) is not None):
        # Another delivery of this very activity changed it (or is changing it): the admin
        # gets that delivery's answer, not this one's refusal.
        turn.card = await _first_answer(turn, key)


def services_carrying(services: Services, claim: DeliveryClaim) -> Services:
    """The services over a database whose first write transaction carries `claim`: what a
    changing action's handler receives. (The ledger itself writes on its own, outside.)"""
    db = services.db.carrying(claim)
    rebound = {}
    for item in fields(services):
        service = getattr(services, item.name)
        if item.name != "ledger" and getattr(service, "db", None) is services.db:
            service = copy.copy(service)
            service.db = db
            rebound[item.name] = service
    return replace(services, db=db, **rebound)


async def _first_answer(turn: TurnState, key: str) -> Card:
    answer = await turn.services.ledger.first_answer(key, wait_seconds=DUPLICATE_WAIT_SECONDS)
    logger.info("Duplicate delivery of activity %s answered from the ledger", key)
    if answer is not None:
        return answer
    # The delivery that made the change stopped before its answer was written: answer from
    # the change itself where the verb can, else say it was done.
    acting = turn.turn
    rebuilt = await turn.router.answer_redelivery(turn.verb, acting) if acting else None
    return rebuilt or already_handled_card(ent=acting.ent if acting else None)

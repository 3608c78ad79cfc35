"""Tenancy: the enterprise a turn acts for. Enterprise admins only ever act for their own,
whatever a card says; provider admins act for the one the card they used names."""

from __future__ import annotations

from typing import Any

from bot.router import Origin, Turn
from bot.steps import Next, TurnState
from cards.actions import database_id
from services.domain import AdminRole
from services.views import Actor, EnterpriseView


def enterprise_id(value: Any) -> int | None:
    """The enterprise id a card names, if it is one the database can hold."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    return database_id(str(value))


async def choose_enterprise(turn: TurnState, next: Next) -> None:
    """Settle the enterprise and the actor, as the Turn the handlers receive."""
    admin = turn.admin
    if admin is not None:
        data = turn.data
        enterprise: EnterpriseView | None = None
        if admin.role is AdminRole.SERVICE_PROVIDER:
            wanted = enterprise_id(data.get("ent"))
            if wanted is not None:
                enterprise = await turn.services.enterprises.by_id(wanted)
        elif admin.enterprise is not None:
            enterprise = admin.enterprise
            data = {**data, "ent": enterprise.id}
        sender = turn.activity.from_property
        actor = Actor(
            admin.aad_object_id,
            admin.display_name or (sender.name if sender else "") or "",
            admin.role,
            enterprise.id if enterprise else None,
        )
        activity = turn.activity
        origin = Origin(
            conversation_id=(activity.conversation.id if activity.conversation else "") or "",
            card_activity_id=activity.reply_to_id or None,
            viewer_id=(sender.id if sender else "") or "",
        )
        turn.turn = Turn(
            turn.services, admin, actor, enterprise, turn.reference, data, origin=origin
        )
    await next()

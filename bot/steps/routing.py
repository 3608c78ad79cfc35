"""Routing: the handler of the verb (bot/router.py), the home card, the card for strangers,
or the type-ahead results. The last step: it answers."""

from __future__ import annotations

from bot.router import Turn
from bot.steps import Next, TurnState
from cards.actions import Verb
from cards.common import Card
from cards.home import home_card, unknown_admin_card
from services.domain import AdminRole

HOME_VERBS = frozenset({Verb.HOME.value, Verb.ENTERPRISE_PICK.value})


async def route(turn: TurnState, next: Next) -> None:
    """Answer the turn."""
    router = turn.router
    acting = turn.turn
    if turn.kind == "search":
        search = turn.search
        if acting is not None and search is not None:
            turn.results = await router.run_search(
                search.dataset, acting, search.query, search.limit
            )
    elif acting is None:
        turn.card = unknown_admin_card(turn.tenant_known)
    elif turn.kind == "welcome":
        turn.card = await home(turn, acting, welcome=True)
    elif turn.verb in HOME_VERBS:
        turn.card = await home(turn, acting)
    else:
        turn.card = await router.dispatch(turn.verb, acting)


async def home(turn: TurnState, acting: Turn, *, welcome: bool = False) -> Card:
    """What this admin can do, for the enterprise acted for (providers pick one)."""
    services = turn.services
    provider = acting.admin.role is AdminRole.SERVICE_PROVIDER
    return home_card(
        acting.actor.display_name or "admin",
        acting.admin.role,
        acting.enterprise,
        await services.licences.pools(acting.enterprise.id) if acting.enterprise else [],
        enterprises=await services.enterprises.all() if provider else [],
        welcome=welcome,
    )

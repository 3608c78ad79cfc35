"""Removing a user (offboarding), from the user card, always confirmed first."""

from __future__ import annotations

from bot.features.users import user_card_of
from bot.router import EnterpriseTurn, Router
from cards.actions import RemoveUser
from cards.common import Card, Errors
from cards.offboarding import removal_confirmation_card, user_removed_card
from services.models import utcnow
from services.views import EnterpriseView

router = Router()


async def show_refused(turn: EnterpriseTurn, data: RemoveUser, errors: Errors) -> Card:
    """The user card again with the reason the removal was refused (someone else changed the
    user meanwhile: they see the new state before deciding again)."""
    user = await turn.services.users.get(turn.enterprise.id, data.user_id)
    return await user_card_of(turn, user, errors=errors)


@router.action(RemoveUser, form=show_refused)
async def remove_user(turn: EnterpriseTurn, data: RemoveUser, enterprise: EnterpriseView) -> Card:
    """Ask first, saying what will happen; once confirmed, remove the user: licence back to
    the pool, number into quarantine, PBX line removed, Microsoft told through the sync."""
    users = turn.services.users
    user = await users.get(enterprise.id, data.user_id)
    if not data.confirmed:
        pools = await turn.services.licences.pools(enterprise.id)
        pool = next((p for p in pools if p.product is user.licence), None)
        return removal_confirmation_card(
            user, enterprise, pool, now=utcnow(), quarantine_days=users.quarantine_days
        )
    await users.remove(turn.actor, enterprise.id, data.user_id, data.version)
    return user_removed_card(user, enterprise, now=utcnow(), quarantine_days=users.quarantine_days)

"""Removing a user (offboarding), from the user card, always confirmed first."""

from __future__ import annotations

from bot.features.users import user_card_of
from bot.router import EnterpriseTurn, Router
from cards.actions import RemoveUser
from cards.common import Card, Errors, notice_card
from cards.offboarding import removal_confirmation_card, user_removed_card
from services.errors import NotFoundError
from services.licences import Licences
from services.models import utcnow
from services.users import Users
from services.views import Actor, EnterpriseView

router = Router()


async def show_refused(
    turn: EnterpriseTurn, data: RemoveUser, errors: Errors, enterprise: EnterpriseView, users: Users
) -> Card:
    """The user card again with the reason the removal was refused (someone else changed the
    user meanwhile: they see the new state before deciding again)."""
    user = await users.get(enterprise.id, data.user_id)
    return await user_card_of(turn, user, errors=errors)


async def show_removed(data: RemoveUser, enterprise: EnterpriseView, users: Users) -> Card | None:
    """A removal carried out by an earlier delivery of the same press: the user is gone."""
    if not data.confirmed:
        return None
    try:
        await users.get(enterprise.id, data.user_id)
    except NotFoundError:
        return notice_card(
            "The user was removed",
            "The user is no longer in the directory: their licence went back to the pool and "
            "their number into quarantine. Microsoft is told with the next sync.",
            ent=enterprise.id,
        )
    return None


@router.action(RemoveUser, form=show_refused, redelivered=show_removed)
async def remove_user(
    data: RemoveUser,
    actor: Actor,
    enterprise: EnterpriseView,
    users: Users,
    licences: Licences,
) -> Card:
    """Ask first, saying what will happen; once confirmed, remove the user: licence back to
    the pool, number into quarantine, PBX line removed, Microsoft told through the sync."""
    user = await users.get(enterprise.id, data.user_id)
    if not data.confirmed:
        pools = await licences.pools(enterprise.id)
        pool = next((p for p in pools if p.product is user.licence), None)
        return removal_confirmation_card(
            user, enterprise, pool, now=utcnow(), quarantine_days=users.quarantine_days
        )
    await users.remove(actor, enterprise.id, data.user_id, data.version)
    return user_removed_card(user, enterprise, now=utcnow(), quarantine_days=users.quarantine_days)

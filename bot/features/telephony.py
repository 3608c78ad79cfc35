"""A user's hunt groups and desk phone login: tick the groups, create one, issue or revoke."""

from __future__ import annotations

from bot.router import EnterpriseTurn, Router
from cards.actions import (
    CreateHuntGroup,
    IssueDeskPhone,
    OpenTelephony,
    RevokeDeskPhone,
    SaveHuntGroups,
    Selection,
    TelephonyInputs,
)
from cards.common import Card, Errors, notice_card, plain
from cards.telephony import (
    desk_phone_already_issued_card,
    desk_phone_issued_card,
    hunt_group_names,
    telephony_card,
)
from services.errors import ConflictError, NotFoundError, ValidationError
from services.views import EnterpriseView

router = Router()
MAX_GROUPS = 200


def ticked_group_ids(selection: Selection) -> list[int]:
    """The ticked group ids; anything unreadable is refused before the service."""
    if len(selection.ids) > MAX_GROUPS:
        raise ValidationError(f"Tick at most {MAX_GROUPS} groups.", field="groups")
    if selection.unreadable:
        raise ValidationError(
            "Switchboard could not read that selection. Tick the groups again.", field="groups"
        )
    return sorted(set(selection.ids))


async def show_telephony(
    turn: EnterpriseTurn,
    user_id: int,
    form: TelephonyInputs | None = None,
    errors: Errors | None = None,
    *,
    success: str | None = None,
    notice: str | None = None,
) -> Card:
    """The user's hunt groups and desk phone card, as saved or with what the admin submitted."""
    enterprise = turn.enterprise
    services = turn.services
    try:
        user = await services.users.get(enterprise.id, user_id)
    except NotFoundError as missing:
        return notice_card("That could not be done", plain(missing.message), ent=turn.ent)
    return telephony_card(
        user,
        enterprise,
        await services.hunt_groups.all(enterprise.id),
        await services.hunt_groups.of_user(enterprise.id, user_id),
        await services.pbx_statuses.of_user(enterprise.id, user_id),
        await services.desk_phones.has_desk_phone(enterprise.id, user_id),
        form,
        errors,
        success=success,
        notice=notice,
    )


def _at(field: str, errors: Errors) -> Errors:
    """A refusal of one section of the card, placed next to that section's input."""
    return {field: " ".join(errors.values())}


async def show_groups_form(turn: EnterpriseTurn, form: TelephonyInputs, errors: Errors) -> Card:
    """The card again after a refused save: the ticks kept, the reason under the groups."""
    return await show_telephony(turn, form.user_id, form, _at("groups", errors))


async def show_new_group_form(turn: EnterpriseTurn, form: TelephonyInputs, errors: Errors) -> Card:
    """The card again after a refused new group: the name kept, the reason under the box."""
    return await show_telephony(turn, form.user_id, form, _at("new_group", errors))


async def show_desk_phone_form(turn: EnterpriseTurn, form: TelephonyInputs, errors: Errors) -> Card:
    """The card again after a refused desk phone action, the reason next to its buttons."""
    return await show_telephony(turn, form.user_id, form, _at("desk_phone", errors))


@router.action(OpenTelephony)
async def open_telephony(turn: EnterpriseTurn, data: OpenTelephony) -> Card:
    """The user's hunt groups and desk phone, as saved."""
    return await show_telephony(turn, data.user_id)


@router.action(SaveHuntGroups, form=show_groups_form)
async def save_hunt_groups(
    turn: EnterpriseTurn, form: SaveHuntGroups, enterprise: EnterpriseView
) -> Card:
    """Make the user a member of exactly the ticked groups."""
    saved = await turn.services.hunt_groups.set_user_groups(
        turn.actor, enterprise.id, form.user_id, ticked_group_ids(form.groups)
    )
    # The name box is kept: the admin may have typed a group they have not created yet.
    kept = form.model_copy(update={"groups": Selection(tuple(group.id for group in saved))})
    return await show_telephony(
        turn, form.user_id, kept, success=f"Hunt groups saved: {hunt_group_names(saved)}."
    )


@router.action(CreateHuntGroup, form=show_new_group_form)
async def create_hunt_group(
    turn: EnterpriseTurn, form: CreateHuntGroup, enterprise: EnterpriseView
) -> Card:
    """Create the named group and tick it for the user, who joins it when the admin saves."""
    user = await turn.services.users.get(enterprise.id, form.user_id)
    group = await turn.services.hunt_groups.create(
        turn.actor,
        enterprise.id,
        form.new_group,
        extension=form.new_group_extension.strip() or None,
        number=form.new_group_number.strip() or None,
    )
    ticked = list(form.groups.ids)
    if user.licence is None:
        success = f"Hunt group {group.name} was created."
    else:
        ticked.append(group.id)
        success = (
            f"Hunt group {group.name} was created and is ticked below: press “Save groups” "
            f"to add {user.display_name} to it."
        )
    kept = form.model_copy(
        update={
            "groups": Selection(tuple(ticked)),
            "new_group": "",
            "new_group_extension": "",
            "new_group_number": "",
        }
    )
    return await show_telephony(turn, form.user_id, kept, success=success)


@router.action(IssueDeskPhone, form=show_desk_phone_form)
async def issue_desk_phone(
    turn: EnterpriseTurn, form: IssueDeskPhone, enterprise: EnterpriseView
) -> Card:
    """Issue a desk phone login and show it once; a redelivery gets a card without it."""
    services = turn.services
    user = await services.users.get(enterprise.id, form.user_id)
    # A card opened before someone else issued a login says "Issue", not "Replace": never
    # replace a working phone's login unless the admin pressed Replace.
    had_login = await services.desk_phones.has_desk_phone(enterprise.id, user.id)
    if had_login and not form.replace:
        raise ConflictError(
            f"{user.display_name} already has a desk phone login, issued after you opened this "
            "card. Press Replace login to issue a new one; the phone using the current login "
            "then stops working.",
            field="desk_phone",
        )
    login = await services.desk_phones.issue(turn.actor, enterprise.id, user.id)
    turn.answer_redelivery_with(desk_phone_already_issued_card(user, enterprise))
    return desk_phone_issued_card(user, enterprise, login, replaced=had_login)


@router.action(RevokeDeskPhone, form=show_desk_phone_form)
async def revoke_desk_phone(
    turn: EnterpriseTurn, form: RevokeDeskPhone, enterprise: EnterpriseView
) -> Card:
    """Take the user's desk phone login away."""
    user = await turn.services.users.get(enterprise.id, form.user_id)
    if await turn.services.desk_phones.revoke(turn.actor, enterprise.id, user.id):
        return await show_telephony(
            turn,
            user.id,
            form,
            success="Desk phone login revoked: the phone can no longer register.",
        )
    return await show_telephony(
        turn, user.id, form, notice=f"{user.display_name} had no desk phone login to revoke."
    )

"""A user's hunt groups and desk phone login: tick the groups, create one, issue or revoke."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.router import EnterpriseTurn, Router
from cards.actions import (
    CreateHuntGroup,
    IssueDeskPhone,
    OpenTelephony,
    RevokeDeskPhone,
    SaveHuntGroups,
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
from services.pbx.credentials import DeskPhones
from services.pbx.huntgroups import HuntGroups
from services.pbx.status import PbxStatuses
from services.users import Users
from services.views import Actor, EnterpriseView

router = Router()
MAX_GROUPS = 200


def ticked_group_ids(groups: list[int]) -> list[int]:
    """The ticked group ids, each once; too many is refused before the service."""
    if len(groups) > MAX_GROUPS:
        raise ValidationError(f"Tick at most {MAX_GROUPS} groups.", field="groups")
    return sorted(set(groups))


class TelephonyCard:
    """Draws a user's hunt groups and desk phone card from the services it reads."""

    def __init__(
        self,
        enterprise: EnterpriseView,
        users: Users,
        hunt_groups: HuntGroups,
        pbx_statuses: PbxStatuses,
        desk_phones: DeskPhones,
    ) -> None:
        self.enterprise = enterprise
        self.users = users
        self.hunt_groups = hunt_groups
        self.pbx_statuses = pbx_statuses
        self.desk_phones = desk_phones

    async def show(
        self,
        user_id: int,
        form: TelephonyInputs | None = None,
        errors: Errors | None = None,
        *,
        success: str | None = None,
        notice: str | None = None,
    ) -> Card:
        """The card as saved, or with what the admin submitted."""
        enterprise = self.enterprise
        try:
            user = await self.users.get(enterprise.id, user_id)
        except NotFoundError as missing:
            return notice_card("That could not be done", plain(missing.message), ent=enterprise.id)
        return telephony_card(
            user,
            enterprise,
            await self.hunt_groups.all(enterprise.id),
            await self.hunt_groups.of_user(enterprise.id, user_id),
            await self.pbx_statuses.of_user(enterprise.id, user_id),
            await self.desk_phones.has_desk_phone(enterprise.id, user_id),
            form,
            errors,
            success=success,
            notice=notice,
        )


def _at(field: str, errors: Errors) -> Errors:
    """A refusal of one section of the card, placed next to that section's input."""
    return {field: " ".join(errors.values())}


def _form_again(section: str, what: str) -> Callable[..., Awaitable[Card]]:
    """The card again after a refusal of one section (`section`: its input's id), with the
    admin's input kept and the reason placed next to it."""

    async def show(
        form: TelephonyInputs,
        errors: Errors,
        enterprise: EnterpriseView,
        users: Users,
        hunt_groups: HuntGroups,
        pbx_statuses: PbxStatuses,
        desk_phones: DeskPhones,
    ) -> Card:
        card = TelephonyCard(enterprise, users, hunt_groups, pbx_statuses, desk_phones)
        return await card.show(form.user_id, form, _at(section, errors))

    show.__doc__ = f"The card again after a refused {what}."
    return show


show_groups_form = _form_again("groups", "save of the groups: the ticks kept")
show_new_group_form = _form_again("new_group", "new group: the name kept")
show_desk_phone_form = _form_again("desk_phone", "desk phone action")


@router.action(OpenTelephony)
async def open_telephony(
    data: OpenTelephony,
    enterprise: EnterpriseView,
    users: Users,
    hunt_groups: HuntGroups,
    pbx_statuses: PbxStatuses,
    desk_phones: DeskPhones,
) -> Card:
    """The user's hunt groups and desk phone, as saved."""
    return await TelephonyCard(enterprise, users, hunt_groups, pbx_statuses, desk_phones).show(
        data.user_id
    )


async def show_saved_groups(
    form: SaveHuntGroups,
    enterprise: EnterpriseView,
    users: Users,
    hunt_groups: HuntGroups,
    pbx_statuses: PbxStatuses,
    desk_phones: DeskPhones,
) -> Card | None:
    """A save carried out by an earlier delivery: the groups the user is in now, when they are
    the ones ticked."""
    saved = await hunt_groups.of_user(enterprise.id, form.user_id)
    if sorted(group.id for group in saved) != ticked_group_ids(form.groups):
        return None
    kept = form.model_copy(update={"groups": [group.id for group in saved]})
    return await TelephonyCard(enterprise, users, hunt_groups, pbx_statuses, desk_phones).show(
        form.user_id, kept, success=f"Hunt groups saved: {hunt_group_names(saved)}."
    )


@router.action(SaveHuntGroups, form=show_groups_form, redelivered=show_saved_groups)
async def save_hunt_groups(
    form: SaveHuntGroups,
    actor: Actor,
    enterprise: EnterpriseView,
    users: Users,
    hunt_groups: HuntGroups,
    pbx_statuses: PbxStatuses,
    desk_phones: DeskPhones,
) -> Card:
    """Make the user a member of exactly the ticked groups."""
    saved = await hunt_groups.set_user_groups(
        actor, enterprise.id, form.user_id, ticked_group_ids(form.groups)
    )
    # The name box is kept: the admin may have typed a group they have not created yet.
    kept = form.model_copy(update={"groups": [group.id for group in saved]})
    return await TelephonyCard(enterprise, users, hunt_groups, pbx_statuses, desk_phones).show(
        form.user_id, kept, success=f"Hunt groups saved: {hunt_group_names(saved)}."
    )


async def show_created_group(
    form: CreateHuntGroup,
    enterprise: EnterpriseView,
    users: Users,
    hunt_groups: HuntGroups,
    pbx_statuses: PbxStatuses,
    desk_phones: DeskPhones,
) -> Card | None:
    """A group created by an earlier delivery: the card with that group, ticked."""
    wanted = " ".join(form.new_group.split()).casefold()
    group = next(
        (g for g in await hunt_groups.all(enterprise.id) if g.name.casefold() == wanted), None
    )
    if group is None:
        return None
    kept = form.model_copy(
        update={
            "groups": [*form.groups, group.id],
            "new_group": "",
            "new_group_extension": "",
            "new_group_number": "",
        }
    )
    return await TelephonyCard(enterprise, users, hunt_groups, pbx_statuses, desk_phones).show(
        form.user_id, kept, success=f"Hunt group {group.name} was created."
    )


@router.action(CreateHuntGroup, form=show_new_group_form, redelivered=show_created_group)
async def create_hunt_group(
    form: CreateHuntGroup,
    actor: Actor,
    enterprise: EnterpriseView,
    users: Users,
    hunt_groups: HuntGroups,
    pbx_statuses: PbxStatuses,
    desk_phones: DeskPhones,
) -> Card:
    """Create the named group and tick it for the user, who joins it when the admin saves."""
    user = await users.get(enterprise.id, form.user_id)
    group = await hunt_groups.create(
        actor,
        enterprise.id,
        form.new_group,
        extension=form.new_group_extension.strip() or None,
        number=form.new_group_number.strip() or None,
    )
    ticked = list(form.groups)
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
            "groups": ticked,
            "new_group": "",
            "new_group_extension": "",
            "new_group_number": "",
        }
    )
    return await TelephonyCard(enterprise, users, hunt_groups, pbx_statuses, desk_phones).show(
        form.user_id, kept, success=success
    )


async def show_issued_login(
    form: IssueDeskPhone, enterprise: EnterpriseView, users: Users, desk_phones: DeskPhones
) -> Card | None:
    """A login issued by an earlier delivery: said, never shown again (it is a secret)."""
    user = await users.get(enterprise.id, form.user_id)
    if not await desk_phones.has_desk_phone(enterprise.id, user.id):
        return None
    return desk_phone_already_issued_card(user, enterprise)


@router.action(IssueDeskPhone, form=show_desk_phone_form, redelivered=show_issued_login)
async def issue_desk_phone(
    turn: EnterpriseTurn,
    form: IssueDeskPhone,
    enterprise: EnterpriseView,
    actor: Actor,
    users: Users,
    desk_phones: DeskPhones,
) -> Card:
    """Issue a desk phone login and show it once; a redelivery gets a card without it."""
    user = await users.get(enterprise.id, form.user_id)
    # A card opened before someone else issued a login says "Issue", not "Replace": never
    # replace a working phone's login unless the admin pressed Replace.
    had_login = await desk_phones.has_desk_phone(enterprise.id, user.id)
    if had_login and not form.replace:
        raise ConflictError(
            f"{user.display_name} already has a desk phone login, issued after you opened this "
            "card. Press Replace login to issue a new one; the phone using the current login "
            "then stops working.",
            field="desk_phone",
        )
    login = await desk_phones.issue(actor, enterprise.id, user.id)
    turn.answer_redelivery_with(desk_phone_already_issued_card(user, enterprise))
    return desk_phone_issued_card(user, enterprise, login, replaced=had_login)


REVOKED = "Desk phone login revoked: the phone can no longer register."


async def show_revoked_login(
    form: RevokeDeskPhone,
    enterprise: EnterpriseView,
    users: Users,
    hunt_groups: HuntGroups,
    pbx_statuses: PbxStatuses,
    desk_phones: DeskPhones,
) -> Card | None:
    """A login revoked by an earlier delivery: the card without it."""
    if await desk_phones.has_desk_phone(enterprise.id, form.user_id):
        return None
    return await TelephonyCard(enterprise, users, hunt_groups, pbx_statuses, desk_phones).show(
        form.user_id, form, success=REVOKED
    )


@router.action(RevokeDeskPhone, form=show_desk_phone_form, redelivered=show_revoked_login)
async def revoke_desk_phone(
    form: RevokeDeskPhone,
    actor: Actor,
    enterprise: EnterpriseView,
    users: Users,
    hunt_groups: HuntGroups,
    pbx_statuses: PbxStatuses,
    desk_phones: DeskPhones,
) -> Card:
    """Take the user's desk phone login away."""
    user = await users.get(enterprise.id, form.user_id)
    if await desk_phones.revoke(actor, enterprise.id, user.id):
        return await TelephonyCard(enterprise, users, hunt_groups, pbx_statuses, desk_phones).show(
            user.id, form, success=REVOKED
        )
    return await TelephonyCard(enterprise, users, hunt_groups, pbx_statuses, desk_phones).show(
        user.id, form, notice=f"{user.display_name} had no desk phone login to revoke."
    )

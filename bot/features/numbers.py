"""Pick a free number: browse by last digits, assign one, take the next free one, release."""

from __future__ import annotations

from dataclasses import dataclass

from bot.router import EnterpriseTurn, Router
from cards.actions import AssignNumber, AutoAssignNumber, OpenNumbers, ReleaseNumber
from cards.common import Card, Errors, number_text
from cards.confirm import confirmation_card, quarantine_sentence
from cards.numbers import NumbersForm, numbers_card
from services.directory import Directory
from services.errors import NotFoundError, ValidationError
from services.inventory import AUTO, Auto, Inventory
from services.models import utcnow
from services.phone import pretty
from services.users import RELEASE, Release, UserChanges, Users
from services.views import Actor, EnterpriseView, Page, UserView

router = Router()
PAGE_SIZE = 10

NumberAction = AutoAssignNumber | AssignNumber | ReleaseNumber


def _typed(turn: EnterpriseTurn, field: str) -> str:
    """What the admin typed into an input the action's model does not carry."""
    value = turn.data.get(field)
    return value.strip()[:100] if isinstance(value, str) else ""


@dataclass(frozen=True)
class NumbersDesk:
    """The services the free-number card reads and changes, for one enterprise."""

    enterprise: EnterpriseView
    users: Users
    inventory: Inventory
    directory: Directory

    async def free_page(self, digits: str, page: int) -> tuple[Page[str], str, Errors]:
        """A page of free numbers ending in `digits`; unfiltered, with the reason, if they
        are bad."""
        enterprise, inventory = self.enterprise, self.inventory
        try:
            free = await inventory.search_free(
                enterprise.id, digits, page=page, page_size=PAGE_SIZE
            )
        except ValidationError as refusal:
            free = await inventory.search_free(enterprise.id, page=page, page_size=PAGE_SIZE)
            digits, errors = "", {refusal.field or "digits": refusal.message}
        else:
            errors = {}
        if not free.items and free.page > free.pages:
            # An old card's "Next" after numbers were taken: show the last page there is.
            free = await inventory.search_free(
                enterprise.id, digits, page=free.pages, page_size=PAGE_SIZE
            )
        return free, digits, errors

    async def show(
        self,
        *,
        user_id: int | None = None,
        user: UserView | None = None,
        version: int | None = None,
        digits: str = "",
        number: str = "",
        page: int = 1,
        errors: Errors | None = None,
        success: str | None = None,
    ) -> Card:
        """The free-number card, for a user when one is named, with the admin's input kept."""
        enterprise = self.enterprise
        errors = dict(errors or {})
        if user is None and user_id is not None:
            try:
                user = await self.users.get(enterprise.id, user_id)
            except NotFoundError as missing:
                errors["user"] = missing.message
        if "version" in errors:
            # Someone else changed the user: the reloaded card acts on their version.
            version = None
        free, shown_digits, search_errors = await self.free_page(digits, page)
        pickable: list[UserView] = []
        if user is None:
            pickable = (await self.directory.page(enterprise.id, page_size=50)).items
        for field, message in search_errors.items():
            errors.setdefault(field, message)
        return numbers_card(
            enterprise,
            free,
            digits=shown_digits,
            user=user,
            version=version,
            quarantine_days=self.users.quarantine_days,
            form=NumbersForm(digits=digits, number=number),
            errors=errors,
            success=success,
            users=pickable,
        )

    async def confirmation(
        self, data: NumberAction, before: UserView, choice: Auto | Release | str
    ) -> Card | None:
        """The card that says what taking the user's number away will do, unless the admin has
        confirmed it already or the user has no number to lose."""
        if data.confirmed or before.number is None or choice == before.number:
            return None
        if isinstance(choice, Release) and before.licence is not None:
            return None  # refused by the directory: a licensed user keeps a number
        ent, name = self.enterprise.id, before.display_name
        if isinstance(choice, Release):
            first = (
                f"Take {number_text(before.number)} away from {name}: they keep no direct number."
            )
            title, go = f"Release {name}'s number?", "Release the number"
        else:
            if isinstance(choice, Auto):
                nxt = await self.inventory.search_free(ent, page_size=1, with_total=False)
                new = (
                    f"the next free number ({number_text(nxt.items[0])} now)"
                    if nxt.items
                    else ("the next free number")
                )
            else:
                # A number that cannot be given is refused now, not after the admin confirmed.
                new = number_text(await self.inventory.check_free(ent, choice))
            first = f"Give {name} {new} instead of {number_text(before.number)}."
            title, go = f"Replace {name}'s number?", "Replace the number"
        days = self.users.quarantine_days
        return confirmation_card(
            title,
            [first, quarantine_sentence(before.number, utcnow(), days)],
            confirm_title=go,
            confirm=data.model_copy(update={"confirmed": True}),
            cancel_title="Keep the number",
            cancel=OpenNumbers(ent=ent, user_id=before.id),
            ent=ent,
        )

    async def change(
        self, actor: Actor, data: NumberAction, choice: Auto | Release | str
    ) -> tuple[UserView, UserView] | Card:
        """The user before and after giving them `choice`, on the version the admin saw; or
        the confirmation card when that would take their number away unconfirmed."""
        enterprise = self.enterprise
        before = await self.users.get(enterprise.id, data.user_id)
        confirmation = await self.confirmation(data, before, choice)
        if confirmation is not None:
            return confirmation
        after = await self.users.update(
            actor, enterprise.id, data.user_id, data.version, UserChanges(number=choice)
        )
        return before, after


async def show_refused(
    turn: EnterpriseTurn,
    data: NumberAction,
    errors: Errors,
    enterprise: EnterpriseView,
    users: Users,
    inventory: Inventory,
    directory: Directory,
) -> Card:
    """The card again after a refusal: the user reloaded, the admin's digits and pick kept."""
    number = data.number if isinstance(data, AssignNumber) else _typed(turn, "number")
    digits = data.digits if isinstance(data, AssignNumber) else _typed(turn, "digits")
    return await NumbersDesk(enterprise, users, inventory, directory).show(
        user_id=data.user_id,
        version=data.version,
        digits=digits,
        number=number,
        errors=errors,
    )


def _quarantine_text(days: int) -> str:
    if days <= 0:
        return "is free again"
    return f"is in quarantine for {days} days before anyone else can be given it"


def _assigned(before: UserView, after: UserView, days: int) -> str:
    """What the admin is told after a number was given."""
    if after.number == before.number:
        return f"{pretty(after.number or '')} already is {after.display_name}'s number."
    message = f"{pretty(after.number or '')} is now {after.display_name}'s number."
    if before.number:
        message += f" The previous number, {pretty(before.number)}, {_quarantine_text(days)}."
    return message


@router.action(OpenNumbers)
async def open_numbers(
    data: OpenNumbers,
    enterprise: EnterpriseView,
    users: Users,
    inventory: Inventory,
    directory: Directory,
) -> Card:
    """The free numbers, filtered by last digits, for a user when one is chosen."""
    errors: Errors = {}
    if data.choose and data.user_id is None:
        errors["user_id"] = (
            "Pick the user to give a number to first, then press “Choose this user”."
        )
    return await NumbersDesk(enterprise, users, inventory, directory).show(
        user_id=data.user_id, digits=data.digits, page=max(1, data.page), errors=errors
    )


async def show_given(
    data: AutoAssignNumber | AssignNumber,
    enterprise: EnterpriseView,
    users: Users,
    inventory: Inventory,
    directory: Directory,
) -> Card | None:
    """A number given by an earlier delivery of the same press: the user with it now."""
    user = await users.get(enterprise.id, data.user_id)
    if user.version == data.version or user.number is None:
        return None  # unchanged since the card: nothing was given
    if isinstance(data, AssignNumber) and data.number and user.number != data.number:
        return None
    return await NumbersDesk(enterprise, users, inventory, directory).show(
        user=user, success=f"{pretty(user.number)} is now {user.display_name}'s number."
    )


@router.action(AutoAssignNumber, form=show_refused, redelivered=show_given)
async def auto_assign(
    data: AutoAssignNumber,
    actor: Actor,
    enterprise: EnterpriseView,
    users: Users,
    inventory: Inventory,
    directory: Directory,
) -> Card:
    """Give the user the next free number (their old one goes into quarantine)."""
    desk = NumbersDesk(enterprise, users, inventory, directory)
    changed = await desk.change(actor, data, AUTO)
    if not isinstance(changed, tuple):
        return changed
    before, after = changed
    return await desk.show(user=after, success=_assigned(before, after, users.quarantine_days))


@router.action(AssignNumber, form=show_refused, redelivered=show_given)
async def assign(
    data: AssignNumber,
    actor: Actor,
    enterprise: EnterpriseView,
    users: Users,
    inventory: Inventory,
    directory: Directory,
) -> Card:
    """Give the user the number picked in the list, or the one free number ending in the digits."""
    if data.number:
        wanted = data.number
    elif data.digits:
        wanted = await inventory.free_number_ending(enterprise.id, data.digits, field="digits")
    else:
        raise ValidationError(
            "Nothing was assigned: pick a free number in “Number to assign”, or type its last "
            "digits.",
            field="number",
        )
    if not data.number:
        data = data.model_copy(update={"number": wanted, "digits": ""})
    desk = NumbersDesk(enterprise, users, inventory, directory)
    changed = await desk.change(actor, data, wanted)
    if not isinstance(changed, tuple):
        return changed
    before, after = changed
    return await desk.show(user=after, success=_assigned(before, after, users.quarantine_days))


async def show_released(
    data: ReleaseNumber,
    enterprise: EnterpriseView,
    users: Users,
    inventory: Inventory,
    directory: Directory,
) -> Card | None:
    """A release carried out by an earlier delivery of the same press: the user without it."""
    user = await users.get(enterprise.id, data.user_id)
    if user.version == data.version or user.number is not None:
        return None
    return await NumbersDesk(enterprise, users, inventory, directory).show(
        user=user, success=f"The number was released. {user.display_name} has no direct number now."
    )


@router.action(ReleaseNumber, form=show_refused, redelivered=show_released)
async def release(
    data: ReleaseNumber,
    actor: Actor,
    enterprise: EnterpriseView,
    users: Users,
    inventory: Inventory,
    directory: Directory,
) -> Card:
    """Take the user's number away; it goes into quarantine before anyone else can have it."""
    desk = NumbersDesk(enterprise, users, inventory, directory)
    changed = await desk.change(actor, data, RELEASE)
    if not isinstance(changed, tuple):
        return changed
    before, after = changed
    if before.number is None:
        success = f"{after.display_name} had no direct number; nothing was released."
    else:
        success = (
            f"{pretty(before.number)} was released and {_quarantine_text(users.quarantine_days)}. "
            f"{after.display_name} has no direct number now."
        )
    return await desk.show(user=after, success=success)

"""Create, find and edit users."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from bot.router import EnterpriseTurn, Router
from cards.actions import (
    CreateUserForm,
    Dataset,
    EditUserForm,
    ExtensionMode,
    FindUser,
    NumberMode,
    OpenCreateUser,
    UserRef,
)
from cards.common import Card, Errors
from cards.confirm import confirmation_card, quarantine_sentence
from cards.users import create_user_card, find_user_card, user_card, user_created_card
from services.domain import AdminRole, DigitMatch, LicenceProduct
from services.errors import NoFreeNumberError, NotEnoughSubscriptionsError, ValidationError
from services.inventory import AUTO, Auto, check_extension_range, parse_extension
from services.models import utcnow
from services.phone import pretty
from services.users import (
    RELEASE,
    NewUser,
    Release,
    UserChanges,
    clean_display_name,
    clean_email,
)
from services.views import EnterpriseView, UserView

router = Router()
STATIC_CHOICES = 15


def licence_choice(value: str) -> LicenceProduct | None:
    """The licence picked on a form ("none" for no licence)."""
    if value in ("", "none"):
        return None
    try:
        return LicenceProduct(value)
    except ValueError:
        raise ValidationError("Choose Essentials, Basic or no licence.", field="licence") from None


async def number_choice(
    turn: EnterpriseTurn, mode: NumberMode, number: str, digits: str
) -> Auto | Release | str | None:
    """What the number fields of a form ask for: the next free one, a chosen one, none, or keep."""
    if mode == "auto":
        return AUTO
    if mode == "none":
        return RELEASE
    if mode == "keep":
        return None
    if number:
        return number
    if digits:
        return await turn.services.inventory.free_number_ending(
            turn.enterprise.id, digits, field="number_digits"
        )
    raise ValidationError("Pick a free number, or type its last digits.", field="number")


def extension_choice(mode: ExtensionMode, extension: str) -> Auto | int | None:
    """What the extension fields ask for: the next free one, a chosen one, or keep."""
    if mode == "auto":
        return AUTO
    if mode == "keep":
        return None
    if not extension:
        raise ValidationError("Type the extension you want.", field="extension")
    return parse_extension(extension)


async def _free_numbers(turn: EnterpriseTurn) -> list[str]:
    enterprise = turn.enterprise
    page = await turn.services.inventory.search_free(
        enterprise.id, page_size=STATIC_CHOICES, with_total=False
    )
    return page.items


async def user_card_of(
    turn: EnterpriseTurn,
    user: UserView,
    form: EditUserForm | None = None,
    errors: Errors | None = None,
    *,
    saved: bool = False,
) -> Card:
    """The user card with the free numbers, and the user's PBX status and hunt groups (also
    shown by other features that come back to the user)."""
    enterprise = turn.enterprise
    return user_card(
        user,
        enterprise,
        await _free_numbers(turn),
        form,
        errors,
        saved=saved,
        pbx_status=await turn.services.pbx_statuses.of_user(enterprise.id, user.id),
        hunt_groups=await turn.services.hunt_groups.of_user(enterprise.id, user.id),
    )


async def show_create_form(turn: EnterpriseTurn, form: CreateUserForm, errors: Errors) -> Card:
    """The create-user form, with the admin's input and the errors next to the fields."""
    enterprise = turn.enterprise
    pools = await turn.services.licences.pools(enterprise.id)
    return create_user_card(enterprise, pools, await _free_numbers(turn), form, errors)


@router.action(OpenCreateUser)
async def open_create(turn: EnterpriseTurn, data: OpenCreateUser) -> Card:
    """An empty create-user form, defaulting to a licence the pools still have."""
    pools = {p.product: p for p in await turn.services.licences.pools(turn.ent)}

    def has_free(product: LicenceProduct) -> bool:
        pool = pools.get(product)
        return pool is not None and pool.free > 0

    form = CreateUserForm(ent=turn.ent)
    if not has_free(LicenceProduct.ESSENTIALS):
        licence = "basic" if has_free(LicenceProduct.BASIC) else "none"
        form = form.model_copy(update={"licence": licence, "number_mode": "none"})
    return await show_create_form(turn, form, {})


async def show_created(turn: EnterpriseTurn, form: CreateUserForm) -> Card | None:
    """A create carried out by an earlier delivery of the same submit: the user it made."""
    email = form.email.strip().lower()
    found = await turn.services.directory.search(turn.enterprise.id, email, limit=5) if email else []
    user = next((u for u in found if u.email.lower() == email), None)
    if user is None:
        return None
    return user_created_card(
        user, turn.enterprise, is_global_admin=turn.admin.role is AdminRole.GLOBAL_ADMIN
    )


async def form_errors(turn: EnterpriseTurn, form: CreateUserForm | EditUserForm) -> Errors:
    """Every field of the form that cannot be right, each with its message: the admin fixes
    them all in one go rather than one per submit. (Nothing is claimed or saved here.)"""
    errors: Errors = {}

    async def check(field: str, run: Callable[[], object]) -> None:
        try:
            result = run()
            if inspect.isawaitable(result):
                await result
        except ValidationError as refusal:
            errors.setdefault(refusal.field or field, refusal.message)

    await check("display_name", lambda: clean_display_name(form.display_name))
    await check("email", lambda: clean_email(form.email))
    await check("licence", lambda: licence_choice(form.licence))
    await check(
        "number",
        lambda: number_choice(turn, form.number_mode, form.number, form.number_digits),
    )

    def extension_in_range() -> None:
        extension = extension_choice(form.extension_mode, form.extension)
        if isinstance(extension, int):
            enterprise = turn.enterprise
            check_extension_range(extension, enterprise.extension_start, enterprise.extension_end)

    await check("extension", extension_in_range)
    return errors


def refusal_of(refusal: NotEnoughSubscriptionsError | NoFreeNumberError) -> Errors:
    """A refusal no field can fix (the pool or the inventory is empty): the card leads with it
    and its remedy, rather than with a field to correct."""
    return {"refusal": f"Nothing was saved. {refusal.message}"}


@router.action(CreateUserForm, form=show_create_form, redelivered=show_created)
async def create_user(
    turn: EnterpriseTurn, form: CreateUserForm, enterprise: EnterpriseView
) -> Card:
    """Create the user the form describes."""
    errors = await form_errors(turn, form)
    if errors:
        return await show_create_form(turn, form, errors)
    licence = licence_choice(form.licence)
    number = await number_choice(turn, form.number_mode, form.number, form.number_digits)
    if isinstance(number, Release):
        number = None
    note = None
    if licence is not LicenceProduct.ESSENTIALS and isinstance(number, Auto):
        number = None  # "next free number" only applies to Essentials: say so on the result
        note = (
            "Basic gives an extension only, so no direct number was assigned. To give "
            "a direct number, change the licence to Essentials on the user card."
            if licence is LicenceProduct.BASIC
            else "Without a calling licence there is no direct number, so none was assigned."
        )
    try:
        user = await turn.services.users.create(
            turn.actor,
            enterprise.id,
            NewUser(
                display_name=form.display_name,
                email=form.email,
                licence=licence,
                number=number,
                extension=extension_choice(form.extension_mode, form.extension)
                if licence is not None or form.extension_mode == "pick"
                else None,
                send_password_email=form.send_password_email,
                notify_user=form.notify_user,
            ),
        )
    except (NotEnoughSubscriptionsError, NoFreeNumberError) as refusal:
        return await show_create_form(turn, form, refusal_of(refusal))
    return user_created_card(
        user, enterprise, is_global_admin=turn.admin.role is AdminRole.GLOBAL_ADMIN, note=note
    )


@router.action(FindUser)
async def find_user(turn: EnterpriseTurn, data: FindUser, enterprise: EnterpriseView) -> Card:
    """Search users; one match opens that user, an empty search shows the search box only."""
    results = None
    if data.query:
        results = await turn.services.directory.page(
            enterprise.id, search=data.query, page_size=10
        )
        if results.total == 1:
            return await user_card_of(turn, results.items[0])
    return find_user_card(enterprise, data.query, results)


@router.action(UserRef)
async def open_user(turn: EnterpriseTurn, data: UserRef, enterprise: EnterpriseView) -> Card:
    """One user's card with the edit form."""
    user = await turn.services.users.get(enterprise.id, data.user_id)
    return await user_card_of(turn, user)


async def show_edit_form(turn: EnterpriseTurn, form: EditUserForm, errors: Errors) -> Card:
    """The user card again, with what the admin typed and the errors next to the fields."""
    enterprise = turn.enterprise
    user = await turn.services.users.get(enterprise.id, form.user_id)
    if "version" in errors:
        # Someone else saved first: show their version, keep what this admin typed.
        form = form.model_copy(update={"version": user.version})
    return await user_card_of(turn, user, form, errors)


@router.action(EditUserForm, form=show_edit_form)
async def edit_user(turn: EnterpriseTurn, form: EditUserForm, enterprise: EnterpriseView) -> Card:
    """Save the edit form on the version the admin saw."""
    errors = await form_errors(turn, form)
    if errors:
        return await show_edit_form(turn, form, errors)
    licence = licence_choice(form.licence)
    changes = UserChanges(
        display_name=form.display_name,
        email=form.email,
        licence=None if not form.licence else (licence or RELEASE),
        number=await number_choice(turn, form.number_mode, form.number, form.number_digits),
        extension=extension_choice(form.extension_mode, form.extension),
        send_password_email=form.send_password_email,
        notify_user=form.notify_user,
    )
    if not form.confirmed:
        before = await turn.services.users.get(enterprise.id, form.user_id)
        confirmation = await _edit_confirmation(turn, form, before, changes)
        if confirmation is not None:
            return confirmation
    try:
        user = await turn.services.users.update(
            turn.actor, enterprise.id, form.user_id, form.version, changes
        )
    except (NotEnoughSubscriptionsError, NoFreeNumberError) as refusal:
        return await show_edit_form(turn, form, refusal_of(refusal))
    return await user_card_of(turn, user, saved=True)


async def _edit_confirmation(
    turn: EnterpriseTurn, form: EditUserForm, before: UserView, changes: UserChanges
) -> Card | None:
    """The confirmation card for an edit that takes the user's number or licence away, or
    None when the edit takes nothing away."""
    name, lines = before.display_name, []
    number = changes.number
    licence = changes.licence
    if before.licence is not None and licence is not None and licence is not before.licence:
        to = licence.label if isinstance(licence, LicenceProduct) else "no licence"
        lines.append(
            f"Change {name}'s licence from {before.licence.label} to {to}: the "
            f"{before.licence.label} licence goes back to the pool."
        )
    drops_number = before.number is not None and (
        isinstance(number, (Auto, Release))
        or (isinstance(number, str) and number != before.number)
        or (licence is LicenceProduct.BASIC and before.licence is not LicenceProduct.BASIC)
    )
    if drops_number and before.number is not None:
        if isinstance(number, str):
            free = await turn.services.inventory.check_free(turn.enterprise.id, number)
            lines.append(f"Give {name} {pretty(free)} instead of {pretty(before.number)}.")
        elif isinstance(number, Auto) and licence is not LicenceProduct.BASIC:
            lines.append(f"Give {name} the next free number instead of {pretty(before.number)}.")
        else:
            lines.append(f"Take {pretty(before.number)} away from {name}.")
        lines.append(
            quarantine_sentence(before.number, utcnow(), turn.services.users.quarantine_days)
        )
    if not lines:
        return None
    return confirmation_card(
        f"Save the changes to {name}?",
        lines,
        confirm_title="Save the changes",
        confirm=form.model_copy(update={"confirmed": True}),
        cancel_title="Back to the user",
        cancel=UserRef(ent=turn.ent, user_id=before.id),
        ent=turn.ent,
    )


@router.search(Dataset.USERS)
async def search_users(
    turn: EnterpriseTurn, query: str, limit: int, enterprise: EnterpriseView
) -> list[tuple[str, str]]:
    """Type-ahead over users by name, e-mail, number or extension."""
    users = await turn.services.directory.search(enterprise.id, query, limit)
    return [(f"{u.display_name} · {u.email}", str(u.id)) for u in users]


@router.search(Dataset.FREE_NUMBERS)
async def search_free_numbers(
    turn: EnterpriseTurn, query: str, limit: int, enterprise: EnterpriseView
) -> list[tuple[str, str]]:
    """Type-ahead over free numbers: trailing digits first, then numbers containing them."""
    digits = "".join(ch for ch in query if ch.isdigit())
    inventory = turn.services.inventory
    found = (
        await inventory.search_free(enterprise.id, digits, page_size=limit, with_total=False)
    ).items
    if digits and len(found) < limit:
        more = await inventory.search_free(
            enterprise.id, digits, match=DigitMatch.CONTAINS, page_size=limit, with_total=False
        )
        found += [n for n in more.items if n not in found]
    return [(pretty(n), n) for n in found[:limit]]

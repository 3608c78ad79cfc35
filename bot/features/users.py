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
    RefreshUser,
    UserRef,
)
from cards.callerid import caller_id_card
from cards.common import Card, Errors
from cards.confirm import confirmation_card, quarantine_sentence
from cards.users import create_user_card, find_user_card, user_card, user_created_card
from services.config import Settings
from services.directory import Directory
from services.domain import AdminRole, DigitMatch, LicenceProduct
from services.errors import NoFreeNumberError, NotEnoughSubscriptionsError, ValidationError
from services.inventory import AUTO, Auto, Inventory, check_extension_range, parse_extension
from services.licences import Licences
from services.models import utcnow
from services.pbx.huntgroups import HuntGroups
from services.pbx.status import PbxStatuses
from services.phone import pretty
from services.users import (
    RELEASE,
    NewUser,
    Release,
    UserChanges,
    Users,
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
    inventory: Inventory, enterprise: EnterpriseView, mode: NumberMode, number: str, digits: str
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
        return await inventory.free_number_ending(enterprise.id, digits, field="number_digits")
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


async def _free_numbers(inventory: Inventory, enterprise: EnterpriseView) -> list[str]:
    page = await inventory.search_free(enterprise.id, page_size=STATIC_CHOICES, with_total=False)
    return page.items


async def render_user_card(
    turn: EnterpriseTurn,
    user: UserView,
    inventory: Inventory,
    pbx_statuses: PbxStatuses,
    hunt_groups: HuntGroups,
    form: EditUserForm | None = None,
    errors: Errors | None = None,
    *,
    saved: bool = False,
) -> Card:
    """The user card with the free numbers, the user's PBX status and hunt groups, refreshed
    for the admin viewing it whenever Teams shows it again."""
    enterprise = turn.enterprise
    return user_card(
        user,
        enterprise,
        await _free_numbers(inventory, enterprise),
        form,
        errors,
        saved=saved,
        pbx_status=await pbx_statuses.of_user(enterprise.id, user.id),
        hunt_groups=await hunt_groups.of_user(enterprise.id, user.id),
        viewers=[turn.origin.viewer_id] if turn.origin.viewer_id else [],
    )


async def user_card_of(
    turn: EnterpriseTurn,
    user: UserView,
    form: EditUserForm | None = None,
    errors: Errors | None = None,
    *,
    saved: bool = False,
) -> Card:
    """The user card, for other features that come back to the user."""
    services = turn.services
    return await render_user_card(
        turn,
        user,
        services.inventory,
        services.pbx_statuses,
        services.hunt_groups,
        form,
        errors,
        saved=saved,
    )


async def create_form(
    form: CreateUserForm,
    errors: Errors,
    enterprise: EnterpriseView,
    licences: Licences,
    inventory: Inventory,
) -> Card:
    """The create-user form, with the admin's input and the errors next to the fields."""
    pools = await licences.pools(enterprise.id)
    return create_user_card(
        enterprise, pools, await _free_numbers(inventory, enterprise), form, errors
    )


async def show_create_form(
    form: CreateUserForm,
    errors: Errors,
    enterprise: EnterpriseView,
    licences: Licences,
    inventory: Inventory,
) -> Card:
    """The create-user form again after a refusal."""
    return await create_form(form, errors, enterprise, licences, inventory)


@router.action(OpenCreateUser)
async def open_create(
    data: OpenCreateUser, enterprise: EnterpriseView, licences: Licences, inventory: Inventory
) -> Card:
    """An empty create-user form, defaulting to a licence the pools still have."""
    pools = {p.product: p for p in await licences.pools(enterprise.id)}

    def has_free(product: LicenceProduct) -> bool:
        pool = pools.get(product)
        return pool is not None and pool.free > 0

    form = CreateUserForm(ent=enterprise.id)
    if not has_free(LicenceProduct.ESSENTIALS):
        licence = "basic" if has_free(LicenceProduct.BASIC) else "none"
        form = form.model_copy(update={"licence": licence, "number_mode": "none"})
    return await create_form(form, {}, enterprise, licences, inventory)


async def show_created(
    turn: EnterpriseTurn,
    form: CreateUserForm,
    enterprise: EnterpriseView,
    directory: Directory,
    settings: Settings,
) -> Card | None:
    """A create carried out by an earlier delivery of the same submit: the user it made."""
    email = form.email.strip().lower()
    found = await directory.search(enterprise.id, email, limit=5) if email else []
    user = next((u for u in found if u.email.lower() == email), None)
    if user is None:
        return None
    return user_created_card(
        user,
        enterprise,
        is_global_admin=turn.admin.role is AdminRole.GLOBAL_ADMIN,
        sends_mail=bool(settings.graph.mail_sender),
    )


async def form_errors(
    inventory: Inventory, enterprise: EnterpriseView, form: CreateUserForm | EditUserForm
) -> Errors:
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
    if isinstance(form, CreateUserForm) and form.password_email_to:
        try:
            clean_email(form.password_email_to)
        except ValidationError:
            errors["password_email_to"] = (
                f"“{form.password_email_to[:60]}” is not an e-mail address: type where the "
                "password should go (name@company.com), or leave it empty to send it to the "
                "new user."
            )
    await check("licence", lambda: licence_choice(form.licence))
    await check(
        "number",
        lambda: number_choice(
            inventory, enterprise, form.number_mode, form.number, form.number_digits
        ),
    )

    def extension_in_range() -> None:
        extension = extension_choice(form.extension_mode, form.extension)
        if isinstance(extension, int):
            check_extension_range(extension, enterprise.extension_start, enterprise.extension_end)

    await check("extension", extension_in_range)
    return errors


def refusal_of(refusal: NotEnoughSubscriptionsError | NoFreeNumberError) -> Errors:
    """A refusal no field can fix (the pool or the inventory is empty): the card leads with it
    and its remedy, rather than with a field to correct."""
    return {"refusal": f"Nothing was saved. {refusal.message}"}


@router.action(CreateUserForm, form=show_create_form, redelivered=show_created)
async def create_user(
    turn: EnterpriseTurn,
    form: CreateUserForm,
    enterprise: EnterpriseView,
    users: Users,
    licences: Licences,
    inventory: Inventory,
    settings: Settings,
) -> Card:
    """Create the user the form describes."""
    errors = await form_errors(inventory, enterprise, form)
    if errors:
        return await create_form(form, errors, enterprise, licences, inventory)
    licence = licence_choice(form.licence)
    number = await number_choice(
        inventory, enterprise, form.number_mode, form.number, form.number_digits
    )
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
        user = await users.create(
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
                # An address to send the password to asks for the password e-mail.
                send_password_email=form.send_password_email or bool(form.password_email_to),
                password_email_to=form.password_email_to or None,
                notify_user=form.notify_user,
            ),
        )
    except (NotEnoughSubscriptionsError, NoFreeNumberError) as refusal:
        return await create_form(form, refusal_of(refusal), enterprise, licences, inventory)
    return user_created_card(
        user,
        enterprise,
        is_global_admin=turn.admin.role is AdminRole.GLOBAL_ADMIN,
        note=note,
        sends_mail=bool(settings.graph.mail_sender),
    )


@router.action(FindUser)
async def find_user(
    turn: EnterpriseTurn,
    data: FindUser,
    enterprise: EnterpriseView,
    directory: Directory,
    inventory: Inventory,
    pbx_statuses: PbxStatuses,
    hunt_groups: HuntGroups,
) -> Card:
    """Search users; one match opens that user (or their caller ID, for `caller id …`), an
    empty search shows the search box only."""
    results = None
    if data.query:
        results = await directory.page(enterprise.id, search=data.query, page_size=10)
        if results.total == 1:
            [user] = results.items
            if data.then == "callerid":
                return caller_id_card(user, enterprise)
            return await render_user_card(turn, user, inventory, pbx_statuses, hunt_groups)
    return find_user_card(enterprise, data.query, results, then=data.then)


@router.action(RefreshUser)
@router.action(UserRef)
async def open_user(
    turn: EnterpriseTurn,
    data: UserRef | RefreshUser,
    enterprise: EnterpriseView,
    users: Users,
    inventory: Inventory,
    pbx_statuses: PbxStatuses,
    hunt_groups: HuntGroups,
) -> Card:
    """One user's card with the edit form, as the user is now: opened by the admin, or asked
    for by Teams when a card carrying its refresh is shown."""
    user = await users.get(enterprise.id, data.user_id)
    return await render_user_card(turn, user, inventory, pbx_statuses, hunt_groups)


async def edit_form(
    turn: EnterpriseTurn,
    form: EditUserForm,
    errors: Errors,
    enterprise: EnterpriseView,
    users: Users,
    inventory: Inventory,
    pbx_statuses: PbxStatuses,
    hunt_groups: HuntGroups,
) -> Card:
    """The user card again, with what the admin typed and the errors next to the fields."""
    user = await users.get(enterprise.id, form.user_id)
    if "version" in errors:
        # Someone else saved first: show their version, keep what this admin typed.
        form = form.model_copy(update={"version": user.version})
    return await render_user_card(turn, user, inventory, pbx_statuses, hunt_groups, form, errors)


async def show_edited(
    turn: EnterpriseTurn,
    form: EditUserForm,
    enterprise: EnterpriseView,
    users: Users,
    inventory: Inventory,
    pbx_statuses: PbxStatuses,
    hunt_groups: HuntGroups,
) -> Card | None:
    """An edit saved by an earlier delivery of the same submit: the user as it left them."""
    user = await users.get(enterprise.id, form.user_id)
    if user.version == form.version:
        return None  # not saved on this version: nothing to answer from
    return await render_user_card(turn, user, inventory, pbx_statuses, hunt_groups, saved=True)


@router.action(EditUserForm, form=edit_form, redelivered=show_edited)
async def edit_user(
    turn: EnterpriseTurn,
    form: EditUserForm,
    enterprise: EnterpriseView,
    users: Users,
    inventory: Inventory,
    pbx_statuses: PbxStatuses,
    hunt_groups: HuntGroups,
) -> Card:
    """Save the edit form on the version the admin saw."""

    async def again(errors: Errors) -> Card:
        return await edit_form(
            turn, form, errors, enterprise, users, inventory, pbx_statuses, hunt_groups
        )

    errors = await form_errors(inventory, enterprise, form)
    if errors:
        return await again(errors)
    licence = licence_choice(form.licence)
    changes = UserChanges(
        display_name=form.display_name,
        email=form.email,
        licence=None if not form.licence else (licence or RELEASE),
        number=await number_choice(
            inventory, enterprise, form.number_mode, form.number, form.number_digits
        ),
        extension=extension_choice(form.extension_mode, form.extension),
        send_password_email=form.send_password_email,
        notify_user=form.notify_user,
    )
    if not form.confirmed:
        before = await users.get(enterprise.id, form.user_id)
        confirmation = await _edit_confirmation(form, before, changes, enterprise, users, inventory)
        if confirmation is not None:
            return confirmation
    try:
        user = await users.update(turn.actor, enterprise.id, form.user_id, form.version, changes)
    except (NotEnoughSubscriptionsError, NoFreeNumberError) as refusal:
        return await again(refusal_of(refusal))
    return await render_user_card(turn, user, inventory, pbx_statuses, hunt_groups, saved=True)


async def _edit_confirmation(
    form: EditUserForm,
    before: UserView,
    changes: UserChanges,
    enterprise: EnterpriseView,
    users: Users,
    inventory: Inventory,
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
            free = await inventory.check_free(enterprise.id, number)
            lines.append(f"Give {name} {pretty(free)} instead of {pretty(before.number)}.")
        elif isinstance(number, Auto) and licence is not LicenceProduct.BASIC:
            lines.append(f"Give {name} the next free number instead of {pretty(before.number)}.")
        else:
            lines.append(f"Take {pretty(before.number)} away from {name}.")
        lines.append(quarantine_sentence(before.number, utcnow(), users.quarantine_days))
    if not lines:
        return None
    return confirmation_card(
        f"Save the changes to {name}?",
        lines,
        confirm_title="Save the changes",
        confirm=form.model_copy(update={"confirmed": True}),
        cancel_title="Back to the user",
        cancel=UserRef(ent=enterprise.id, user_id=before.id),
        ent=enterprise.id,
    )


@router.search(Dataset.USERS)
async def search_users(
    query: str, limit: int, enterprise: EnterpriseView, directory: Directory
) -> list[tuple[str, str]]:
    """Type-ahead over users by name, e-mail, number or extension."""
    users = await directory.search(enterprise.id, query, limit)
    return [(f"{u.display_name} · {u.email}", str(u.id)) for u in users]


@router.search(Dataset.FREE_NUMBERS)
async def search_free_numbers(
    query: str, limit: int, enterprise: EnterpriseView, inventory: Inventory
) -> list[tuple[str, str]]:
    """Type-ahead over free numbers: trailing digits first, then numbers containing them."""
    digits = "".join(ch for ch in query if ch.isdigit())
    found = (
        await inventory.search_free(enterprise.id, digits, page_size=limit, with_total=False)
    ).items
    if digits and len(found) < limit:
        more = await inventory.search_free(
            enterprise.id, digits, match=DigitMatch.CONTAINS, page_size=limit, with_total=False
        )
        found += [n for n in more.items if n not in found]
    return [(pretty(n), n) for n in found[:limit]]

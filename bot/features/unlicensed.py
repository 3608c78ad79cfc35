"""Users without a calling licence: enable several at once with Essentials or Basic."""

from __future__ import annotations

from collections.abc import Sequence

from bot.router import EnterpriseTurn, Router
from cards.actions import EnableUsersForm, OpenUnlicensed, Selection
from cards.common import Card, Errors
from cards.confirm import confirmation_card
from cards.unlicensed import unlicensed_card, users_enabled_card
from services.domain import AdminRole, LicenceProduct
from services.errors import BulkRefusedError, NotFoundError, ValidationError
from services.views import EnterpriseView

router = Router()
LISTED = 100
MAX_SELECTED = 500


def enable_product(value: str) -> LicenceProduct:
    """The product chosen to enable with: Essentials or Basic."""
    try:
        return LicenceProduct((value or "").strip().lower())
    except ValueError:
        raise ValidationError("Choose Essentials or Basic.", field="licence") from None


def selected_user_ids(selection: Selection) -> list[int]:
    """The selected user ids; anything unreadable is refused before the service."""
    if selection.unreadable:
        raise ValidationError(
            "Switchboard could not read that selection. Select the users again.", field="users"
        )
    if not selection.ids:
        raise ValidationError("Select at least one user to enable.", field="users")
    if len(selection.ids) > MAX_SELECTED:
        raise ValidationError(f"Select at most {MAX_SELECTED} users at a time.", field="users")
    return list(selection.ids)


async def show_unlicensed(
    turn: EnterpriseTurn,
    form: EnableUsersForm,
    errors: Errors,
    refused: Sequence[tuple[str, str]] = (),
) -> Card:
    """The unlicensed list, with the admin's selection and product kept and any refusals."""
    enterprise = turn.enterprise
    users = await turn.services.directory.page(
        enterprise.id, unlicensed_only=True, page_size=LISTED
    )
    pools = await turn.services.licences.pools(enterprise.id)
    return unlicensed_card(enterprise, users, pools, form, errors, refused)


@router.action(OpenUnlicensed)
async def open_unlicensed(turn: EnterpriseTurn, data: OpenUnlicensed) -> Card:
    """The users without a calling licence, nobody (or, asked to, everybody listed) selected
    yet, and a licence the pools still have chosen."""
    pools = {p.product: p for p in await turn.services.licences.pools(turn.ent)}
    typed = turn.data.get("licence")
    licence = typed if typed in ("essentials", "basic") else "essentials"
    essentials = pools.get(LicenceProduct.ESSENTIALS)
    basic = pools.get(LicenceProduct.BASIC)
    no_essentials = essentials is None or essentials.free == 0
    if licence == "essentials" and no_essentials and basic is not None and basic.free > 0:
        licence = "basic"
    form = EnableUsersForm(ent=turn.ent, licence=licence)
    if data.select_all:
        listed = await turn.services.directory.page(
            turn.ent, unlicensed_only=True, page_size=LISTED
        )
        form = form.model_copy(update={"users": Selection(tuple(u.id for u in listed.items))})
    return await show_unlicensed(turn, form, {})


async def _refused_names(
    turn: EnterpriseTurn, enterprise_id: int, user_ids: list[int]
) -> dict[int, str]:
    """Names of the refused users of this enterprise; ids of anyone else stay unnamed."""
    names: dict[int, str] = {}
    for user_id in user_ids:
        try:
            names[user_id] = (await turn.services.users.get(enterprise_id, user_id)).display_name
        except NotFoundError:
            names[user_id] = f"Unknown user (id {user_id})"
    return names


async def _confirmation(
    turn: EnterpriseTurn, form: EnableUsersForm, product: LicenceProduct, user_ids: list[int]
) -> Card | None:
    """What enabling several users at once will take from the pools, before it is done; None
    when the directory would refuse it anyway (it then says exactly why, user by user)."""
    pools = {p.product: p for p in await turn.services.licences.pools(turn.enterprise.id)}
    pool = pools.get(product)
    count = len(user_ids)
    if pool is None or pool.free < count:
        return None
    names = []
    for user_id in user_ids:
        try:
            user = await turn.services.users.get(turn.enterprise.id, user_id)
        except NotFoundError:
            return None
        if user.licence is not None:
            return None
        names.append(user.display_name)
    listed = ", ".join(names[:10]) + (", …" if count > 10 else "")
    lines = [
        f"Enable {count} users: {listed}.",
        f"Take {count} {product.label} licences from the pool: {pool.free} of {pool.total} "
        f"are free now, {pool.free - count} will be after.",
    ]
    lines.append(
        "Give each the next free direct number and extension."
        if product is LicenceProduct.ESSENTIALS
        else "Give each the next free extension (Basic has no direct number)."
    )
    return confirmation_card(
        f"Enable {count} users with {product.label}?",
        lines,
        confirm_title=f"Enable {count} users",
        confirm=form.model_copy(update={"confirmed": True}),
        cancel_title="Back to the list",
        cancel=OpenUnlicensed(ent=turn.ent),
        ent=turn.ent,
    )


@router.action(EnableUsersForm, form=show_unlicensed)
async def enable_users(
    turn: EnterpriseTurn, form: EnableUsersForm, enterprise: EnterpriseView
) -> Card:
    """Enable the selected users together, or show each refused one with the reason."""
    product = enable_product(form.licence)
    user_ids = selected_user_ids(form.users)
    if len(user_ids) > 1 and not form.confirmed:
        confirmation = await _confirmation(turn, form, product, user_ids)
        if confirmation is not None:
            return confirmation
    try:
        enabled = await turn.services.users.enable(turn.actor, enterprise.id, user_ids, product)
    except BulkRefusedError as refusal:
        names = await _refused_names(turn, enterprise.id, list(refusal.reasons))
        refused = [(names[user_id], reason) for user_id, reason in refusal.reasons.items()]
        # When every user shares the refusal's own reason, the list below already says it.
        summary = (
            "No user was enabled."
            if refusal.message in refusal.reasons.values()
            else refusal.message
        )
        return await show_unlicensed(turn, form, {"users": summary}, refused)
    return users_enabled_card(
        enterprise, enabled, product, is_global_admin=turn.admin.role is AdminRole.GLOBAL_ADMIN
    )

"""Users without a calling licence: enable several at once with Essentials or Basic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from bot.router import EnterpriseTurn, Router
from cards.actions import EnableUsersForm, OpenUnlicensed
from cards.common import Card, Errors
from cards.confirm import confirmation_card
from cards.unlicensed import unlicensed_card, users_enabled_card
from services.directory import Directory
from services.domain import AdminRole, LicenceProduct
from services.errors import BulkRefusedError, NotFoundError, ValidationError
from services.licences import Licences
from services.users import Users
from services.views import Actor, AdminView, EnterpriseView

router = Router()
LISTED = 100
MAX_SELECTED = 500


def selected_user_ids(users: list[int]) -> list[int]:
    """The selected user ids; none, or too many, is refused before the service."""
    if not users:
        raise ValidationError("Select at least one user to enable.", field="users")
    if len(users) > MAX_SELECTED:
        raise ValidationError(f"Select at most {MAX_SELECTED} users at a time.", field="users")
    return list(dict.fromkeys(users))


async def show_unlicensed(
    form: EnableUsersForm,
    errors: Errors,
    enterprise: EnterpriseView,
    directory: Directory,
    licences: Licences,
    refused: Sequence[tuple[str, str]] = (),
) -> Card:
    """The unlicensed list, with the admin's selection and product kept and any refusals."""
    listed = await directory.page(enterprise.id, unlicensed_only=True, page_size=LISTED)
    pools = await licences.pools(enterprise.id)
    return unlicensed_card(enterprise, listed, pools, form, errors, refused)


@router.action(OpenUnlicensed)
async def open_unlicensed(
    turn: EnterpriseTurn,
    data: OpenUnlicensed,
    enterprise: EnterpriseView,
    directory: Directory,
    licences: Licences,
) -> Card:
    """The users without a calling licence, nobody (or, asked to, everybody listed) selected
    yet, and a licence the pools still have chosen."""
    pools = {p.product: p for p in await licences.pools(enterprise.id)}
    typed = turn.data.get("licence")
    licence: Literal["essentials", "basic"] = "basic" if typed == "basic" else "essentials"
    essentials = pools.get(LicenceProduct.ESSENTIALS)
    basic = pools.get(LicenceProduct.BASIC)
    no_essentials = essentials is None or essentials.free == 0
    if licence == "essentials" and no_essentials and basic is not None and basic.free > 0:
        licence = "basic"
    form = EnableUsersForm(ent=enterprise.id, licence=licence)
    if data.select_all:
        listed = await directory.page(enterprise.id, unlicensed_only=True, page_size=LISTED)
        form = form.model_copy(update={"users": [u.id for u in listed.items]})
    return await show_unlicensed(form, {}, enterprise, directory, licences)


async def _refused_names(users: Users, enterprise_id: int, user_ids: list[int]) -> dict[int, str]:
    """Names of the refused users of this enterprise; ids of anyone else stay unnamed."""
    names: dict[int, str] = {}
    for user_id in user_ids:
        try:
            names[user_id] = (await users.get(enterprise_id, user_id)).display_name
        except NotFoundError:
            names[user_id] = f"Unknown user (id {user_id})"
    return names


async def _confirmation(
    form: EnableUsersForm,
    product: LicenceProduct,
    user_ids: list[int],
    enterprise: EnterpriseView,
    users: Users,
    licences: Licences,
) -> Card | None:
    """What enabling several users at once will take from the pools, before it is done; None
    when the directory would refuse it anyway (it then says exactly why, user by user)."""
    pools = {p.product: p for p in await licences.pools(enterprise.id)}
    pool = pools.get(product)
    count = len(user_ids)
    if pool is None or pool.free < count:
        return None
    names = []
    for user_id in user_ids:
        try:
            user = await users.get(enterprise.id, user_id)
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
        cancel=OpenUnlicensed(ent=enterprise.id),
        ent=enterprise.id,
    )


async def show_enabled(
    form: EnableUsersForm, admin: AdminView, enterprise: EnterpriseView, users: Users
) -> Card | None:
    """An enable carried out by an earlier delivery: the users it enabled, when every selected
    user has the chosen licence now."""
    product = LicenceProduct(form.licence)
    enabled = []
    for user_id in selected_user_ids(form.users):
        user = await users.get(enterprise.id, user_id)
        if user.licence is not product:
            return None
        enabled.append(user)
    return users_enabled_card(
        enterprise, enabled, product, is_global_admin=admin.role is AdminRole.GLOBAL_ADMIN
    )


@router.action(EnableUsersForm, form=show_unlicensed, redelivered=show_enabled)
async def enable_users(
    form: EnableUsersForm,
    admin: AdminView,
    actor: Actor,
    enterprise: EnterpriseView,
    users: Users,
    directory: Directory,
    licences: Licences,
) -> Card:
    """Enable the selected users together, or show each refused one with the reason."""
    product = LicenceProduct(form.licence)
    user_ids = selected_user_ids(form.users)
    if len(user_ids) > 1 and not form.confirmed:
        confirmation = await _confirmation(form, product, user_ids, enterprise, users, licences)
        if confirmation is not None:
            return confirmation
    try:
        enabled = await users.enable(actor, enterprise.id, user_ids, product)
    except BulkRefusedError as refusal:
        names = await _refused_names(users, enterprise.id, list(refusal.reasons))
        refused = [(names[user_id], reason) for user_id, reason in refusal.reasons.items()]
        # When every user shares the refusal's own reason, the list below already says it.
        summary = (
            "No user was enabled."
            if refusal.message in refusal.reasons.values()
            else refusal.message
        )
        return await show_unlicensed(
            form, {"users": summary}, enterprise, directory, licences, refused
        )
    return users_enabled_card(
        enterprise, enabled, product, is_global_admin=admin.role is AdminRole.GLOBAL_ADMIN
    )

"""Caller ID: the number a user presents, their caller name, and the PAI header."""

from __future__ import annotations

from bot.router import Router
from cards.actions import CallerIdForm, OpenCallerId
from cards.callerid import MODE_CHOICE_NAMES, caller_id_card
from cards.common import Card, Errors, notice_card, plain
from services.callerid import CallerIdChange
from services.domain import CallerIdMode
from services.errors import NotFoundError, ValidationError
from services.users import Users
from services.views import Actor, EnterpriseView

router = Router()


@router.action(OpenCallerId)
async def open_caller_id(data: OpenCallerId, enterprise: EnterpriseView, users: Users) -> Card:
    """The user's caller ID: the current setting first, then the form."""
    return caller_id_card(await users.get(enterprise.id, data.user_id), enterprise)


async def show_caller_id_form(
    form: CallerIdForm, errors: Errors, enterprise: EnterpriseView, users: Users
) -> Card:
    """The caller ID card again, with what the admin chose and the message next to the field."""
    try:
        user = await users.get(enterprise.id, form.user_id)
    except NotFoundError as missing:
        return notice_card("That could not be done", plain(missing.message), ent=enterprise.id)
    if "version" in errors:
        # Someone else saved first: show their setting, keep what this admin chose.
        form = form.model_copy(update={"version": user.version})
    return caller_id_card(user, enterprise, form, errors)


async def show_saved_caller_id(
    form: CallerIdForm, enterprise: EnterpriseView, users: Users
) -> Card | None:
    """A save carried out by an earlier delivery of the same submit: the setting it left."""
    user = await users.get(enterprise.id, form.user_id)
    if user.version == form.version:
        return None  # not saved on this version: nothing to answer from
    return caller_id_card(user, enterprise, saved=True)


async def _mode_meant(form: CallerIdForm, enterprise: EnterpriseView, users: Users) -> CallerIdMode:
    """The mode the admin means. Digits typed while the choice was left as it was mean "present
    that number"; digits typed next to another deliberate choice are refused, saying what to do.
    (The digits box only comes pre-filled when the user already presents another number.)"""
    mode = form.mode
    if mode is CallerIdMode.OTHER or not form.number_digits.strip():
        return mode
    user = await users.get(enterprise.id, form.user_id)
    if user.caller_id.mode is CallerIdMode.OTHER:
        return mode  # the digits shown were the current number's: the new choice wins
    if mode is user.caller_id.mode:
        return CallerIdMode.OTHER
    raise ValidationError(
        f"You typed last digits but chose “{MODE_CHOICE_NAMES[mode]}”. To present the number "
        "ending in those digits, tick “Another company number”; otherwise clear the digits.",
        field="number_digits",
    )


@router.action(CallerIdForm, form=show_caller_id_form, redelivered=show_saved_caller_id)
async def save_caller_id(
    form: CallerIdForm, enterprise: EnterpriseView, actor: Actor, users: Users
) -> Card:
    """Save the caller ID on the version of the user the admin saw."""
    change = CallerIdChange(
        mode=await _mode_meant(form, enterprise, users),
        number_digits=form.number_digits,
        caller_name=form.caller_name,
        send_pai=form.send_pai,
        pai_digits=form.pai_digits,
    )
    user = await users.set_caller_id(actor, enterprise.id, form.user_id, form.version, change)
    return caller_id_card(user, enterprise, saved=True)

"""The caller ID card: what a user presents on outgoing calls now, and the form to change it."""

from __future__ import annotations

from microsoft_teams.cards import CardElement, ToggleInput

from cards.actions import CallerIdForm, OpenNumbers, UserRef
from cards.common import (
    Card,
    Errors,
    banner,
    button,
    choice_input,
    facts,
    field_error,
    form_notice,
    frame,
    number_text,
    paragraph,
    plain,
    text_input,
)
from services.domain import MAX_CALLER_NAME, CallerIdMode
from services.views import CallerIdView, EnterpriseView, UserView

CALLER_ID_HELP = (
    "**Caller ID** is what the people a user calls see: a number and a name.\n\n"
    "**Own direct number**: the user's DDI, so call-backs reach them directly. This is what most "
    "users should present.\n\n"
    "**Company main number**: the switchboard or reception number. It is often the default: a "
    "user created without a direct number presents it, and keeps presenting it after getting "
    "one until it is changed here. Check it after creating a user, or people they call ring "
    "reception back instead of them.\n\n"
    "**Another company number**: any number of this enterprise, for example a team's or a "
    "hunt group's; type its last digits (typing 1111 finds the number ending in 1111). Only "
    "the enterprise's own numbers can be presented.\n\n"
    "**Anonymous**: the number is withheld.\n\n"
    "**Caller name**: shown where the called network supports it; empty uses the display "
    f"name. At most {MAX_CALLER_NAME} characters, without quotes, angle brackets, backslashes "
    "or semicolons.\n\n"
    "**PAI** (the P-Asserted-Identity header) tells the carrier who is really calling even "
    "when the presented number is another one or anonymous, so emergency services and "
    "fraud checks still see the true identity. Leave its digits empty to assert the presented "
    "number (or, when anonymous, the user's own number)."
)

MODE_NAMES = {
    CallerIdMode.OWN_DDI: "own direct number",
    CallerIdMode.COMPANY_MAIN: "company main number",
    CallerIdMode.OTHER: "another company number",
    CallerIdMode.ANONYMOUS: "anonymous",
}

# The choices as the form names them, for messages that quote them.
MODE_CHOICE_NAMES = {
    CallerIdMode.OWN_DDI: "Own direct number",
    CallerIdMode.COMPANY_MAIN: "Company main number",
    CallerIdMode.OTHER: "Another company number",
    CallerIdMode.ANONYMOUS: "Anonymous",
}


def _mode_choices(user: UserView, enterprise: EnterpriseView) -> list[tuple[str, str]]:
    own = number_text(user.number) if user.number else "none assigned yet"
    return [
        (f"Own direct number ({own})", CallerIdMode.OWN_DDI.value),
        (
            f"Company main number ({number_text(enterprise.main_number)})",
            CallerIdMode.COMPANY_MAIN.value,
        ),
        ("Another company number (type its last digits below)", CallerIdMode.OTHER.value),
        ("Anonymous (number withheld)", CallerIdMode.ANONYMOUS.value),
    ]


def _default_pai(view: CallerIdView, user: UserView, enterprise: EnterpriseView) -> str:
    """The number PAI asserts when no digits are given for it."""
    return view.presented_number or user.number or enterprise.main_number


def form_from(user: UserView, enterprise: EnterpriseView) -> CallerIdForm:
    """The form filled with the user's current caller ID."""
    view = user.caller_id
    explicit_pai = (
        view.pai_number
        if view.send_pai
        and view.pai_number
        and view.pai_number != _default_pai(view, user, enterprise)
        else None
    )
    return CallerIdForm(
        ent=enterprise.id,
        user_id=user.id,
        version=user.version,
        mode=view.mode.value,
        number_digits=number_text(view.chosen_number)
        if view.mode is CallerIdMode.OTHER and view.chosen_number
        else "",
        caller_name=view.caller_name or "",
        send_pai=view.send_pai,
        pai_digits=number_text(explicit_pai) if explicit_pai else "",
    )


def current_setting(user: UserView) -> list[tuple[str, str]]:
    """The user's caller ID as it is now."""
    view = user.caller_id
    presented = (
        "withheld (anonymous)"
        if view.mode is CallerIdMode.ANONYMOUS
        else f"{number_text(view.presented_number)} ({MODE_NAMES[view.mode]})"
    )
    return [
        ("Presents", presented),
        ("Caller name", view.caller_name or f"{user.display_name} (display name)"),
        ("PAI", f"sent: {number_text(view.pai_number)}" if view.send_pai else "not sent"),
        ("Own number", number_text(user.number)),
    ]


def main_number_warning(user: UserView) -> str | None:
    """A warning while the user still presents the company's main number, else None."""
    if not user.caller_id.presents_company_main:
        return None
    advice = (
        "choose **Own direct number** unless that is intended."
        if user.number
        else "give them a direct number first (Numbers), then present it."
    )
    return (
        f"⚠ {plain(user.display_name)} still presents the company's main number "
        f"({number_text(user.caller_id.presented_number)}): people they call see the "
        f"switchboard and call it back, not {plain(user.display_name)}. To fix it, {advice}"
    )


def caller_id_card(
    user: UserView,
    enterprise: EnterpriseView,
    form: CallerIdForm | None = None,
    errors: Errors | None = None,
    *,
    saved: bool = False,
) -> Card:
    """The current caller ID first, then the form: mode, other number, caller name, PAI."""
    ent = enterprise.id
    errors = errors or {}
    form = form or form_from(user, enterprise)
    body: list[CardElement] = [paragraph("**Now**", subtle=True), facts(current_setting(user))]
    warning = main_number_warning(user)
    if warning:
        body.append(banner(warning))
    body += [
        paragraph("**Change**", subtle=True),
        *choice_input(
            "mode",
            "Number to present",
            _mode_choices(user, enterprise),
            form.mode,
            errors,
            expanded=True,
            required=True,
        ),
        *text_input(
            "number_digits",
            "Another company number: its last digits",
            form.number_digits,
            errors,
            placeholder="e.g. 1111",
        ),
        # The service names the number it looked up "number"; show it under the digits typed.
        *field_error(errors, "number"),
        *text_input(
            "caller_name",
            "Caller name",
            form.caller_name,
            errors,
            placeholder=user.display_name,
            max_length=MAX_CALLER_NAME,
        ),
        ToggleInput(
            id="send_pai",
            title="Send the P-Asserted-Identity (PAI) header",
            value=str(form.send_pai).lower(),
            value_on="true",
            value_off="false",
        ),
        *field_error(errors, "send_pai"),
        *text_input(
            "pai_digits",
            "PAI number: its last digits (empty: the presented number)",
            form.pai_digits,
            errors,
            placeholder="e.g. 0000",
        ),
        *field_error(errors, "pai_number"),
        *field_error(errors, "form"),
    ]
    notice = errors.get("user") or form_notice(errors)
    return frame(
        f"Caller ID: {user.display_name}",
        body,
        help_text=CALLER_ID_HELP,
        ent=ent,
        notice=notice,
        success=f"Caller ID saved: calls now present {current_setting(user)[0][1]}."
        if saved
        else None,
        actions=[
            button(
                "Save caller ID",
                CallerIdForm(ent=ent, user_id=user.id, version=form.version),
                primary=True,
            ),
            button("Numbers", OpenNumbers(ent=ent, user_id=user.id)),
            button("Open user", UserRef(ent=ent, user_id=user.id)),
        ],
    )

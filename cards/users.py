"""Cards about users: create, the result, find, and the user card with its edit form."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from microsoft_teams.cards import CardElement, Choice, ChoiceSetInput, QueryData, ToggleInput

from cards.actions import (
    CreateUserForm,
    Dataset,
    EditUserForm,
    FindUser,
    OpenCallerId,
    OpenCreateUser,
    OpenNumbers,
    OpenSync,
    OpenTelephony,
    RefreshUser,
    RemoveUser,
    UserRef,
)
from cards.common import (
    LICENCE_CHOICES,
    Card,
    Errors,
    action_row,
    button,
    choice_input,
    columns,
    facts,
    field_error,
    form_notice,
    frame,
    number_text,
    paragraph,
    plain,
    text_input,
    user_status_label,
)
from cards.telephony import pbx_line
from services.domain import CallerIdMode
from services.views import EnterpriseView, HuntGroupView, Page, PbxStatusView, PoolView, UserView

CREATE_HELP = (
    "**Display name** and **primary e-mail** (the person's Entra / Microsoft 365 address) are "
    "required. A strong password is generated; people normally sign in with their Microsoft 365 "
    "credentials and MFA, so it is only e-mailed if you ask.\n\n"
    "**Essentials** gives a direct number (DDI) and an extension; **Basic** an extension only. "
    "A number already assigned can never be assigned again: pick one from the free list, type "
    "its last digits, or let Switchboard take the next free one.\n\n"
    "After creating, check the **caller ID**: the default is often the company's main number."
)
EDIT_HELP = (
    "Change any field and press **Save**. Changes reach the PBX at once and Microsoft with the "
    "next sync. A number you take away goes into quarantine before anyone else can have it.\n\n"
    "If someone else saved this user after you opened it, your save is refused: open the user "
    "again to see their changes.\n\n"
    "**Hunt groups & desk phone**: the hunt groups that ring this user (several users reached "
    "from one number), and a SIP login for a physical desk phone, shown to you once.\n\n"
    "**Teams sync** says whether Microsoft has this user's latest changes (⚪ not synced: they "
    "wait for **Sync Teams Users**; 🟢 provisioned: Teams has them). **PBX line** says whether "
    "the PBX is set up to ring this user, and their hunt groups."
)
FIND_HELP = "Search by part of a name or e-mail, or by digits of a number or extension."

NUMBER_MODES = [("Next free number", "auto"), ("Choose a number", "pick"), ("No number", "none")]
EXTENSION_MODES = [("Next free extension", "auto"), ("Choose an extension", "pick")]
CALLER_ID_NAMES = {
    CallerIdMode.OWN_DDI: "their own number",
    CallerIdMode.COMPANY_MAIN: "the company's main number",
    CallerIdMode.OTHER: "another company number",
    CallerIdMode.ANONYMOUS: "anonymous",
}


def free_number_input(
    field: str, label: str, value: str, free_numbers: Sequence[str], errors: Errors
) -> list[CardElement]:
    """A type-ahead picker over the free numbers, with static first choices for other clients."""
    choices = [Choice(title=number_text(n), value=n) for n in free_numbers]
    if value and value not in free_numbers:
        choices.insert(0, Choice(title=number_text(value), value=value))
    picker = ChoiceSetInput(
        id=field,
        label=label,
        value=value or None,
        choices=choices,
        choices_data=QueryData(dataset=Dataset.FREE_NUMBERS.value),
        style="filtered",
        placeholder="Type digits to search the free numbers",
    )
    return [picker, *field_error(errors, field)]


def _toggle(field: str, title: str, value: bool) -> ToggleInput:
    return ToggleInput(
        id=field, title=title, value=str(value).lower(), value_on="true", value_off="false"
    )


def _allocation_fields(
    enterprise: EnterpriseView,
    form: CreateUserForm | EditUserForm,
    free_numbers: Sequence[str],
    errors: Errors,
    number_modes: Sequence[tuple[str, str]],
    extension_modes: Sequence[tuple[str, str]],
    extension_label: str,
) -> list[CardElement]:
    """The number and extension choices and the password toggle, shared by create and edit."""
    return [
        columns(
            choice_input("number_mode", "Direct number", number_modes, form.number_mode, errors),
            free_number_input("number", "Free number", form.number, free_numbers, errors),
        ),
        *text_input(
            "number_digits",
            "…or type the number's last digits",
            form.number_digits,
            errors,
            placeholder="e.g. 1111",
        ),
        columns(
            choice_input(
                "extension_mode", "Extension", extension_modes, form.extension_mode, errors
            ),
            text_input(
                "extension",
                f"{extension_label} ({enterprise.extension_start}–{enterprise.extension_end})",
                form.extension,
                errors,
                placeholder=str(enterprise.extension_start),
            ),
        ),
        _toggle(
            "send_password_email",
            "E-mail the generated password to the user",
            form.send_password_email,
        ),
    ]


def create_user_card(
    enterprise: EnterpriseView,
    pools: Sequence[PoolView],
    free_numbers: Sequence[str],
    form: CreateUserForm | None = None,
    errors: Errors | None = None,
) -> Card:
    """The create-user form, filled with what the admin typed when it comes back with errors."""
    form = form or CreateUserForm(ent=enterprise.id)
    errors = errors or {}
    pool_text = ", ".join(f"{p.product.label}: {p.free} free" for p in pools)
    body: list[CardElement] = [
        paragraph(
            f"New Teams Phone user for **{plain(enterprise.name)}**. Licences: {pool_text}.",
            subtle=True,
        ),
        *text_input(
            "display_name",
            "Display name",
            form.display_name,
            errors,
            required=True,
            placeholder="Ada Lovelace",
            max_length=256,
        ),
        *text_input(
            "email",
            "Primary e-mail (Entra)",
            form.email,
            errors,
            required=True,
            placeholder="ada.lovelace@contoso.example",
            max_length=254,
            error_message="Enter the user's primary e-mail address.",
        ),
        *choice_input(
            "licence",
            "Calling licence",
            [(c.title or "", c.value or "") for c in LICENCE_CHOICES]
            + [("No licence yet", "none")],
            form.licence,
            errors,
            expanded=True,
        ),
        *_allocation_fields(
            enterprise, form, free_numbers, errors, NUMBER_MODES, EXTENSION_MODES, "Extension"
        ),
        *text_input(
            "password_email_to",
            "Send the password to",
            form.password_email_to,
            errors,
            placeholder="The new user's e-mail (leave empty), or another address",
            max_length=254,
        ),
        _toggle("notify_user", "Tell the user about their new account", form.notify_user),
        *field_error(errors, "form"),
    ]
    return frame(
        "Create user",
        body,
        help_text=CREATE_HELP,
        ent=enterprise.id,
        notice=form_notice(errors),
        actions=[button("Create user", CreateUserForm(ent=enterprise.id), primary=True)],
    )


def user_summary(
    user: UserView,
    pbx_status: PbxStatusView | None = None,
    hunt_groups: Sequence[HuntGroupView] | None = None,
) -> list[tuple[str, str]]:
    """The facts an admin checks first about a user; the PBX line when its values are given."""
    presented = (
        "anonymous"
        if user.caller_id.mode is CallerIdMode.ANONYMOUS
        else f"{number_text(user.caller_id.presented_number)} ({CALLER_ID_NAMES[user.caller_id.mode]})"
    )
    summary = [
        ("E-mail", user.email),
        ("Licence", user.licence.label if user.licence else "none"),
        ("Number", number_text(user.number)),
        ("Extension", str(user.extension) if user.extension is not None else "—"),
        ("Caller ID", presented),
        ("Teams sync", user_status_label(user)),
    ]
    if pbx_status is not None or hunt_groups is not None:
        summary.append(("PBX line", pbx_line(pbx_status, hunt_groups)))
    return summary


def user_created_card(
    user: UserView,
    enterprise: EnterpriseView,
    *,
    is_global_admin: bool = False,
    note: str | None = None,
    sends_mail: bool = True,
) -> Card:
    """The result of creating a user, with the next steps for the admin who created them;
    `note` says where the result differs from what the form asked for; `sends_mail` is whether
    Switchboard has a mailbox to send from."""
    steps = [
        "**Next steps**",
        "1. Check the caller ID"
        + (
            " — it presents the company's main number now."
            if user.caller_id.presents_company_main
            else "."
        ),
        "2. "
        + (
            "The change syncs to Microsoft automatically."
            if enterprise.syncs_automatically
            else "Run **Sync Teams Users** (Sync status) so the user can call from Teams."
            if is_global_admin
            else "Ask your Global Admin to run **Sync Teams Users** so the user can call from Teams."
        ),
    ]
    ent = enterprise.id
    return frame(
        f"{user.display_name} was created",
        [facts(user_summary(user)), *_mails(user, sends_mail), paragraph("\n\n".join(steps))],
        help_text=CREATE_HELP,
        ent=ent,
        success="The user is set up on the PBX.",
        notice=note,
        actions=[
            button("Caller ID", OpenCallerId(ent=ent, user_id=user.id), primary=True),
            button("Edit user", UserRef(ent=ent, user_id=user.id)),
            button("Sync status", OpenSync(ent=ent)),
            button("Create another", OpenCreateUser(ent=ent)),
        ],
    )


def _mails(user: UserView, sends_mail: bool) -> list[CardElement]:
    """The e-mails the sync sends about a new user, and to whom."""
    if not sends_mail:
        return [
            paragraph("**E-mails**"),
            paragraph(
                "None: Switchboard has no mailbox to send from here (your service provider sets "
                "one up), so the sync sends no password, welcome or confirmation e-mail."
            ),
        ]
    mails = [("Confirmation", "to you, once the user is added and synced to Microsoft")]
    if user.send_password_email:
        mails.append(
            (
                "Password",
                f"to {user.password_email_to or user.email}, when the account is made in Microsoft",
            )
        )
    if user.notify_user:
        mails.append(("Welcome", f"to {user.email}, once their Teams Phone works"))
    return [paragraph("**E-mails**"), facts(mails)]


def find_user_card(
    enterprise: EnterpriseView,
    query: str,
    results: Page[UserView] | None,
    *,
    then: Literal["user", "callerid"] = "user",
) -> Card:
    """A search box over the users, with each match a button that opens the user (or, for
    `then="callerid"`, the user's caller ID)."""
    ent = enterprise.id
    body: list[CardElement] = [
        *text_input("query", "Search", query, {}, placeholder="Name, e-mail, number or extension"),
    ]
    if results is not None:
        if not results.items:
            body.append(
                paragraph(
                    f"No user matches “{plain(query)}”. Search by part of a name or e-mail, or "
                    "by digits of a number or extension.",
                    subtle=True,
                )
            )
        for user in results.items:
            open_user = (
                button(f"Caller ID of {user.display_name}", OpenCallerId(ent=ent, user_id=user.id))
                if then == "callerid"
                else button(f"Open {user.display_name}", UserRef(ent=ent, user_id=user.id))
            )
            row = columns(
                [
                    paragraph(f"**{plain(user.display_name)}**  \n{plain(user.email)}"),
                    paragraph(
                        f"{number_text(user.number)} · ext {user.extension or '—'} · "
                        f"{user.licence.label if user.licence else 'no licence'}",
                        subtle=True,
                    ),
                ],
                [action_row(open_user)],
                widths=["stretch", "auto"],
            )
            row.separator = True
            body.append(row)
        if results.total > len(results.items):
            body.append(
                paragraph(
                    f"Showing {len(results.items)} of {results.total}; refine the search.",
                    subtle=True,
                )
            )
    return frame(
        "Caller ID: find the user" if then == "callerid" else "Find user",
        body,
        help_text=FIND_HELP,
        ent=ent,
        actions=[button("Search", FindUser(ent=ent, then=then), primary=True)],
    )


def user_card(
    user: UserView,
    enterprise: EnterpriseView,
    free_numbers: Sequence[str],
    form: EditUserForm | None = None,
    errors: Errors | None = None,
    *,
    saved: bool = False,
    pbx_status: PbxStatusView | None = None,
    hunt_groups: Sequence[HuntGroupView] | None = None,
    viewers: Sequence[str] = (),
) -> Card:
    """One user: current state first (with the PBX line when its values are given), then the
    edit form with every field.

    Unless it shows refusals to fix, the card asks Teams to refresh it whenever it is shown
    again (by itself for `viewers`, the admins' Teams ids): a user card kept in the chat shows
    the user's sync status as it is now, not as it was when the card was sent."""
    ent = enterprise.id
    errors = errors or {}
    form = form or EditUserForm(
        ent=ent,
        user_id=user.id,
        version=user.version,
        display_name=user.display_name,
        email=user.email,
        licence=user.licence.value if user.licence else "none",
        send_password_email=user.send_password_email,
        notify_user=user.notify_user,
    )
    number_modes = [
        ("Keep as it is", "keep"),
        ("Next free number", "auto"),
        ("Choose a number", "pick"),
        ("Remove the number", "none"),
    ]
    extension_modes = [
        ("Keep as it is", "keep"),
        ("Next free extension", "auto"),
        ("Choose an extension", "pick"),
    ]
    body: list[CardElement] = [
        facts(user_summary(user, pbx_status, hunt_groups)),
        *text_input(
            "display_name", "Display name", form.display_name, errors, required=True, max_length=256
        ),
        *text_input(
            "email", "Primary e-mail (Entra)", form.email, errors, required=True, max_length=254
        ),
        *choice_input(
            "licence",
            "Calling licence",
            [(c.title or "", c.value or "") for c in LICENCE_CHOICES] + [("No licence", "none")],
            form.licence,
            errors,
        ),
        *_allocation_fields(
            enterprise, form, free_numbers, errors, number_modes, extension_modes, "New extension"
        ),
        _toggle("notify_user", "Tell the user about their account", form.notify_user),
        *field_error(errors, "form"),
    ]
    notice = form_notice(errors)
    if user.caller_id.presents_company_main and not errors:
        notice = "This user still presents the company's main number as caller ID."
    return frame(
        user.display_name,
        body,
        help_text=EDIT_HELP,
        ent=ent,
        notice=notice,
        success=(
            "Saved. "
            + (
                "The change syncs to Microsoft automatically."
                if enterprise.syncs_automatically
                else "Microsoft gets it with the next Sync Teams Users (Sync status)."
            )
        )
        if saved
        else None,
        actions=[
            button(
                "Save", EditUserForm(ent=ent, user_id=user.id, version=user.version), primary=True
            ),
            button("Caller ID", OpenCallerId(ent=ent, user_id=user.id)),
            button("Numbers", OpenNumbers(ent=ent, user_id=user.id)),
            button("Hunt groups & desk phone", OpenTelephony(ent=ent, user_id=user.id)),
            button("Reload", UserRef(ent=ent, user_id=user.id)),
            button("Sync status", OpenSync(ent=ent)),
            button("Remove user", RemoveUser(ent=ent, user_id=user.id, version=user.version)),
        ],
        refresh=None if errors else RefreshUser(ent=ent, user_id=user.id),
        viewers=viewers,
    )

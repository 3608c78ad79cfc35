"""A user's hunt groups and desk phone: the card to change them, the desk phone login shown
once, and what a redelivery of that login gets instead."""

from __future__ import annotations

from collections.abc import Sequence

from microsoft_teams.cards import CardElement, Choice, ChoiceSetInput, TextBlock

from cards.actions import (
    CreateHuntGroup,
    IssueDeskPhone,
    OpenTelephony,
    RevokeDeskPhone,
    SaveHuntGroups,
    TelephonyInputs,
    UserRef,
)
from cards.common import (
    Card,
    Errors,
    action_row,
    button,
    columns,
    facts,
    field_error,
    frame,
    number_text,
    paragraph,
    plain,
    text_input,
)
from services.domain import MAX_GROUP_NAME, PbxState
from services.views import EnterpriseView, HuntGroupView, PbxStatusView, SipLogin, UserView

HUNT_GROUPS_HELP = (
    "**Hunt groups** ring several users from one number: a call to the group (for example "
    "Sales or Support) rings its members, and whoever is free answers. Tick the groups this "
    "user belongs to and press **Save groups**: what you save replaces the user's list. Only "
    "users with a calling licence can be members, because the PBX needs a line to ring.\n\n"
    "**New hunt group**: type a name, unique in the enterprise and at most "
    f"{MAX_GROUP_NAME} characters, and press **Create group**; then tick it for the user."
)
DESK_PHONE_HELP = (
    "**Desk phone login**: SIP credentials (username, password, realm and registrar) for a "
    "physical phone, so it registers with the PBX and rings for the user's number and "
    "extension. The password is generated and shown to you once; Switchboard stores only the "
    "digest Asterisk needs to check it (md5_cred), never the password itself. If it is lost, "
    "issue a new one: the old login stops working.\n\n"
    "**Revoke** takes the login away and the phone can no longer register.\n\n"
    "Changes reach the PBX at once; the **PBX** line shows whether the latest one has arrived."
)
TELEPHONY_HELP = f"{HUNT_GROUPS_HELP}\n\n{DESK_PHONE_HELP}"
ISSUED_HELP = (
    "Type these into the phone's SIP account settings (often called *Account*, *Line 1* or "
    "*SIP*): the username as both user name and authentication name, the password, the realm "
    "if the phone asks for one, and the registrar as the SIP server or proxy.\n\n"
    f"{TELEPHONY_HELP}"
)
COPY_IT_NOW = "Copy the password now: it is not stored and will not be shown again."
NO_REGISTRAR = "not configured: ask your service provider"

PBX_INDICATORS: dict[PbxState, str] = {
    PbxState.IN_SYNC: "🟢",
    PbxState.PUSHING: "🔵",
    PbxState.RETRYING: "🟠",
}


def pbx_status_text(status: PbxStatusView) -> str:
    """The user's PBX status as an indicator and a sentence, with the reason while it retries."""
    return f"{PBX_INDICATORS[status.state]} {status.summary}"


def hunt_group_names(groups: Sequence[HuntGroupView]) -> str:
    """The groups' names for a line of text, or "none"."""
    return ", ".join(group.name for group in groups) or "none"


def pbx_line(status: PbxStatusView | None, groups: Sequence[HuntGroupView] | None) -> str:
    """One line for the user card: where the user stands on the PBX and their hunt groups."""
    parts = []
    if status is not None:
        parts.append(pbx_status_text(status))
    if groups is not None:
        parts.append(f"Hunt groups: {hunt_group_names(groups)}.")
    return " ".join(parts)


def _heading(text: str) -> TextBlock:
    return TextBlock(text=text, weight="Bolder", size="Medium", wrap=True, separator=True)


def _reached(group: HuntGroupView) -> str:
    """Where callers reach a group, after its member count, when it has a number."""
    return f"; {group.reached_at}" if group.extension is not None or group.number else ""


def _groups_section(
    user: UserView,
    groups: Sequence[HuntGroupView],
    ticked: Sequence[str],
    form: TelephonyInputs,
    errors: Errors,
) -> list[CardElement]:
    ent = user.enterprise_id
    items: list[CardElement] = [_heading("Hunt groups")]
    if groups:
        listed = {str(group.id) for group in groups}
        picker = ChoiceSetInput(
            id="groups",
            label=f"Groups that ring {user.display_name}",
            is_multi_select=True,
            style="expanded",
            # Only this enterprise's groups can be ticked, whatever ids a payload carried.
            value=",".join(g for g in ticked if g in listed) or None,
            choices=[
                Choice(
                    title=f"{group.name} ({group.members} member"
                    f"{'s' if group.members != 1 else ''}{_reached(group)})",
                    value=str(group.id),
                )
                for group in groups
            ],
        )
        items += [
            picker,
            *field_error(errors, "groups"),
            action_row(
                button("Save groups", SaveHuntGroups(ent=ent, user_id=user.id), primary=True)
            ),
        ]
    else:
        items += [
            paragraph(
                "This enterprise has no hunt groups yet: create the first below.", subtle=True
            ),
            *field_error(errors, "groups"),
        ]
    items += [
        *text_input(
            "new_group",
            "New hunt group",
            form.new_group,
            errors,
            placeholder="e.g. Sales",
            max_length=MAX_GROUP_NAME,
        ),
        *text_input(
            "new_group_extension",
            "Its extension (optional)",
            form.new_group_extension,
            errors,
            placeholder="a free extension, e.g. 2000",
            max_length=8,
        ),
        *text_input(
            "new_group_number",
            "Its direct number (optional)",
            form.new_group_number,
            errors,
            placeholder="a free number, e.g. 020 7946 0500",
            max_length=20,
        ),
        action_row(button("Create group", CreateHuntGroup(ent=ent, user_id=user.id))),
    ]
    return items


def _desk_phone_section(user: UserView, has_desk_phone: bool, errors: Errors) -> list[CardElement]:
    ent = user.enterprise_id
    state = (
        "🟢 A desk phone login is set up. Its password was shown once, when it was issued; "
        "Switchboard does not keep it."
        if has_desk_phone
        else "No desk phone login."
    )
    items: list[CardElement] = [_heading("Desk phone"), paragraph(state)]
    if has_desk_phone:
        items.append(
            paragraph(
                "Replacing or revoking the login stops the phone that uses it from registering.",
                subtle=True,
            )
        )
        buttons = [
            button("Replace login", IssueDeskPhone(ent=ent, user_id=user.id, replace=True)),
            button("Revoke", RevokeDeskPhone(ent=ent, user_id=user.id)),
        ]
    else:
        buttons = [button("Issue desk phone login", IssueDeskPhone(ent=ent, user_id=user.id))]
    return [*items, *field_error(errors, "desk_phone"), action_row(*buttons)]


def telephony_card(
    user: UserView,
    enterprise: EnterpriseView,
    groups: Sequence[HuntGroupView],
    member_of: Sequence[HuntGroupView],
    status: PbxStatusView,
    has_desk_phone: bool,
    form: TelephonyInputs | None = None,
    errors: Errors | None = None,
    *,
    success: str | None = None,
    notice: str | None = None,
) -> Card:
    """A user's hunt groups (tick the ones they ring in), a new group, and their desk phone.

    The ticks and the name box come from `form` when the admin submitted the card, so a refused
    action shows them again; otherwise the saved groups are ticked.
    """
    ent = enterprise.id
    errors = errors or {}
    ticked = (
        [str(group_id) for group_id in form.groups]
        if form is not None
        else [str(group.id) for group in member_of]
    )
    form = form or TelephonyInputs(ent=ent, user_id=user.id)
    extension = str(user.extension) if user.extension is not None else "—"
    body: list[CardElement] = [
        facts(
            [
                ("Number", number_text(user.number)),
                ("Extension", extension),
                ("Hunt groups", hunt_group_names(member_of)),
                ("Desk phone", "login set up" if has_desk_phone else "none"),
                ("PBX", pbx_status_text(status)),
            ]
        ),
    ]
    if user.licence is None:
        body.append(
            paragraph(
                f"{plain(user.display_name)} has no calling licence, so the PBX has no line to ring: "
                "they cannot join hunt groups or have a desk phone until they get one on the "
                "user card.",
                color="Attention",
            )
        )
    body += _groups_section(user, groups, ticked, form, errors)
    body += _desk_phone_section(user, has_desk_phone, errors)
    body += field_error(errors, "form")
    return frame(
        f"Hunt groups & desk phone: {user.display_name}",
        body,
        help_text=TELEPHONY_HELP,
        ent=ent,
        notice=("Nothing was changed: see ⚠ below." if errors else notice),
        success=None if errors else success,
        actions=[
            button("Open user", UserRef(ent=ent, user_id=user.id)),
            button("Reload", OpenTelephony(ent=ent, user_id=user.id)),
        ],
    )


def _credential(label: str, value: str, *, monospace: bool = True) -> CardElement:
    shown = TextBlock(text=value, wrap=True, weight="Bolder")
    if monospace:
        shown.font_type = "Monospace"
    return columns([paragraph(label, subtle=True)], [shown], widths=["110px", "stretch"])


def desk_phone_issued_card(
    user: UserView, enterprise: EnterpriseView, login: SipLogin, *, replaced: bool = False
) -> Card:
    """The desk phone login, password included: the only card that ever shows it."""
    ent = enterprise.id
    rings_for = f"extension {user.extension}" if user.extension is not None else "this user"
    if user.number:
        rings_for = f"{number_text(user.number)}, {rings_for}"
    body: list[CardElement] = [
        _credential("Username", login.username),
        _credential("Password", login.password),
        _credential("Realm", login.realm),
        _credential(
            "Registrar",
            login.registrar or NO_REGISTRAR,
            monospace=bool(login.registrar),
        ),
        paragraph(
            f"The phone rings for {rings_for}. It can register once the PBX has the login: "
            "the **PBX** line of the user's card says so.",
            subtle=True,
        ),
    ]
    return frame(
        f"Desk phone login: {user.display_name}",
        body,
        help_text=ISSUED_HELP,
        ent=ent,
        notice=COPY_IT_NOW,
        success=(
            "A new login was issued; the previous one no longer works."
            if replaced
            else "Desk phone login issued."
        ),
        actions=[
            button(
                "I have copied it: hide the password",
                OpenTelephony(ent=ent, user_id=user.id),
                primary=True,
            ),
            button("Open user", UserRef(ent=ent, user_id=user.id)),
        ],
    )


def desk_phone_already_issued_card(user: UserView, enterprise: EnterpriseView) -> Card:
    """What a repeated delivery of an issued login gets: the password was shown once, and is gone."""
    ent = enterprise.id
    return frame(
        f"Desk phone login: {user.display_name}",
        [
            paragraph(
                "This login was already issued, and its password shown once; Switchboard does "
                "not keep it. If it was lost, issue a new one from the user's hunt groups & desk "
                "phone card: the old login then stops working."
            )
        ],
        help_text=TELEPHONY_HELP,
        ent=ent,
        notice="This login was already issued: issue a new one if it was lost.",
        actions=[
            button(
                "Hunt groups & desk phone", OpenTelephony(ent=ent, user_id=user.id), primary=True
            ),
            button("Open user", UserRef(ent=ent, user_id=user.id)),
        ],
    )

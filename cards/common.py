"""Building blocks every Switchboard card shares: the frame with its help section, field
errors, status indicators, buttons. Cards are Adaptive Card 1.5, built with the Teams models."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from microsoft_teams.cards import (
    Action,
    ActionSet,
    AdaptiveCard,
    CardElement,
    Choice,
    ChoiceSetInput,
    Column,
    ColumnSet,
    Container,
    ExecuteAction,
    Fact,
    FactSet,
    RefreshDefinition,
    TableCell,
    TeamsCardProperties,
    TextBlock,
    TextColor,
    TextInput,
    ToggleVisibilityAction,
)

from cards.actions import ActionData, Home, UserRef
from services.domain import LicenceProduct, ProvisioningStatus
from services.phone import pretty
from services.views import UserView

Card = dict[str, Any]
Errors = dict[str, str]

# What Adaptive Card markdown could read as markup anywhere in a line (links, emphasis, code,
# HTML, entities), and what it could read as a list or heading at the start of one.
_MARKUP = re.compile(r"([\\`*_\[\]~<>#|&])")
_BULLET = re.compile(r"^(\s*)([-+])(?=\s|$)", re.MULTILINE)
_NUMBERED = re.compile(r"^(\s*\d+)([.)])", re.MULTILINE)

STATUS_LABELS: dict[ProvisioningStatus, str] = {
    ProvisioningStatus.NOT_SYNCED: "⚪ Not synced",
    ProvisioningStatus.PENDING: "🟡 Pending",
    ProvisioningStatus.IN_PROGRESS: "🔵 In progress",
    ProvisioningStatus.PROVISIONED: "🟢 Provisioned",
    ProvisioningStatus.FAILED: "🔴 Failed",
}
BUTTONS_PER_ROW = 3
# Teams refreshes a card by itself for at most this many listed users.
MAX_REFRESH_VIEWERS = 60
LICENCE_CHOICES = [
    Choice(title="Essentials: direct number and extension", value=LicenceProduct.ESSENTIALS.value),
    Choice(title="Basic: extension only", value=LicenceProduct.BASIC.value),
]


def plain(text: str) -> str:
    """`text` (a name, an e-mail, anything an admin typed) as markdown that shows exactly it:
    a display name like "[Click me](https://...)" must never become a link."""
    escaped = _MARKUP.sub(r"\\\1", text)
    escaped = _BULLET.sub(r"\1\\\2", escaped)
    return _NUMBERED.sub(r"\1\\\2", escaped)


# Where an e-mail address may wrap in a narrow column: after its "@" and after each dot, never
# inside a word (a zero-width space is a break opportunity that shows nothing).
_EMAIL_BREAKS = re.compile(r"(?<=[@.])(?=.)")


def breakable_email(address: str) -> str:
    """`address` as markdown that shows exactly it, and wraps after its "@" or a dot rather
    than in the middle of a word when its column is narrower than the address."""
    return _EMAIL_BREAKS.sub("\u200b", plain(address))


def status_label(status: ProvisioningStatus, error: str | None = None) -> str:
    """The provisioning status as the indicator admins see, with the failure reason."""
    label = STATUS_LABELS[status]
    return f"{label}: {plain(error)}" if status is ProvisioningStatus.FAILED and error else label


def user_status_label(user: UserView) -> str:
    """A user's sync indicator: a user without a calling licence has nothing for Teams Phone
    to provision, so they never read as "Provisioned"."""
    if user.licence is None and user.status is ProvisioningStatus.PROVISIONED:
        return "⚪ No calling licence"
    return status_label(user.status, user.status_error)


def number_text(e164: str | None) -> str:
    """A number for display, or a dash."""
    return pretty(e164) if e164 else "—"


def button(title: str, data: ActionData, *, primary: bool = False) -> ExecuteAction:
    """An Action.Execute carrying typed data; the verb rides in the data too, for Action.Submit."""
    action = ExecuteAction(title=title, verb=data.verb.value, data=data.payload())
    if primary:
        action.style = "positive"
    return action


def heading(text: str) -> TextBlock:
    """The card's title."""
    return TextBlock(text=text, size="Large", weight="Bolder", wrap=True, style="heading")


def paragraph(text: str, *, subtle: bool = False, color: TextColor | None = None) -> TextBlock:
    """Wrapped body text."""
    block = TextBlock(text=text, wrap=True, is_subtle=subtle or None)
    if color:
        block.color = color
    return block


def banner(text: str, *, good: bool = False) -> Container:
    """A coloured strip for a warning (attention) or a success (good)."""
    return Container(
        style="good" if good else "warning",
        items=[TextBlock(text=text, wrap=True, weight="Bolder")],
    )


def field_error(errors: Errors, field: str) -> list[CardElement]:
    """The message for one field, placed right under its input; nothing when it is fine."""
    message = errors.get(field)
    if not message:
        return []
    return [
        TextBlock(
            text=f"⚠ {plain(message)}", wrap=True, color="Attention", size="Small", spacing="None"
        )
    ]


def form_notice(errors: Errors) -> str | None:
    """The banner of a form that came back: a refusal no field can fix (or someone else's
    save) leads with itself and its remedy; field errors point at their fields."""
    lead = errors.get("refusal") or errors.get("version")
    if lead:
        return lead
    if not errors:
        return None
    fields = len([f for f in errors if f != "form"])
    if fields > 1:
        return f"Nothing was saved: fix the {fields} fields marked ⚠."
    if fields:
        return "Nothing was saved: fix the field marked ⚠."
    return "Nothing was saved: see the message marked ⚠."


def text_input(
    field: str,
    label: str,
    value: str,
    errors: Errors,
    *,
    placeholder: str = "",
    required: bool = False,
    max_length: int | None = None,
    error_message: str = "",
) -> list[CardElement]:
    """A labelled text input followed by its server-side error, if any."""
    box = TextInput(id=field, label=label, value=value or None, placeholder=placeholder or None)
    if required:
        box.is_required = True
        box.error_message = error_message or f"{label} is required."
    if max_length:
        box.max_length = max_length
    return [box, *field_error(errors, field)]


def choice_input(
    field: str,
    label: str,
    choices: Sequence[tuple[str, str]],
    value: str,
    errors: Errors,
    *,
    expanded: bool = False,
    required: bool = False,
) -> list[CardElement]:
    """A single-choice input followed by its error, if any."""
    box = ChoiceSetInput(
        id=field,
        label=label,
        value=value or None,
        choices=[Choice(title=title, value=val) for title, val in choices],
        style="expanded" if expanded else "compact",
    )
    if required:
        box.is_required = True
        box.error_message = f"Choose {label.lower()}."
    return [box, *field_error(errors, field)]


def facts(pairs: Sequence[tuple[str, str]]) -> FactSet:
    """Label and value pairs, shown as they are (values are often what an admin typed)."""
    return FactSet(facts=[Fact(title=plain(title), value=plain(value)) for title, value in pairs])


def columns(*cells: Sequence[CardElement], widths: Sequence[str] | None = None) -> ColumnSet:
    """Side-by-side columns."""
    return ColumnSet(
        columns=[
            Column(items=list(items), width=(widths[i] if widths else "stretch"))
            for i, items in enumerate(cells)
        ]
    )


def frame(
    title: str,
    body: Sequence[CardElement],
    *,
    help_text: str,
    actions: Sequence[Action] = (),
    ent: int | None = None,
    home: bool = True,
    notice: str | None = None,
    success: str | None = None,
    refresh: ActionData | None = None,
    viewers: Sequence[str] = (),
) -> Card:
    """A full card: title, optional banner, body, a collapsible help section, and buttons.

    With `refresh`, Teams re-runs that (read-only) action whenever the card is shown again,
    so a card about work in progress never shows a stale state; `viewers` are the Teams user
    ids (MRIs, `29:…`) of the admins for whom Teams does so by itself (at most 60).
    """
    items: list[CardElement] = [heading(plain(title))]
    # Banners are plain sentences, often quoting what the admin typed: never markup.
    if success:
        items.append(banner(plain(success), good=True))
    if notice:
        items.append(banner(plain(notice)))
    items.extend(body)
    # Task buttons sit in rows inside the body: hosts cap a card's own actions at five.
    task_buttons = list(actions)
    for start in range(0, len(task_buttons), BUTTONS_PER_ROW):
        items.append(ActionSet(actions=task_buttons[start : start + BUTTONS_PER_ROW]))
    items.append(
        Container(
            id="help",
            is_visible=False,
            separator=True,
            items=[paragraph(part, subtle=True) for part in help_text.split("\n\n")],
        )
    )
    buttons: list[Action] = []
    if home:
        buttons.append(button("Home", Home(ent=ent)))
    buttons.append(ToggleVisibilityAction(title="Help", target_elements=["help"]))
    card = AdaptiveCard(version="1.5", body=items, actions=buttons)
    if refresh is not None:
        card.refresh = RefreshDefinition(
            action=button("Refresh", refresh),
            user_ids=list(dict.fromkeys(viewers))[:MAX_REFRESH_VIEWERS] or None,
        )
    card.msteams = TeamsCardProperties(width="full")
    return card.model_dump(by_alias=True, exclude_none=True)


def user_link_cell(
    name: str, ent: int, user_id: int, *extra: CardElement, bold: bool = False
) -> TableCell:
    """A table cell with a user's name (and `extra` lines) that opens the user when selected."""
    return TableCell(
        items=[
            TextBlock(
                text=plain(name), wrap=True, color="Accent", weight="Bolder" if bold else None
            ),
            *extra,
        ],
        select_action=button(f"Open {name}", UserRef(ent=ent, user_id=user_id)),
    )


def action_row(*actions: Action) -> ActionSet:
    """Buttons inside the body, next to what they act on."""
    return ActionSet(actions=list(actions))


def notice_card(title: str, message: str, *, ent: int | None = None, help_text: str = "") -> Card:
    """A short card that says one thing and leads back home."""
    return frame(
        title,
        [paragraph(message)],
        help_text=help_text or "Type **help** at any time to see what Switchboard can do for you.",
        ent=ent,
    )


def apology_card(reference: str, *, ent: int | None = None) -> Card:
    """What an admin sees when something failed on our side: never the error itself."""
    return notice_card(
        "Sorry, that did not work",
        "Something went wrong on our side and your request was not completed. "
        f"Try again in a moment; if it keeps happening, contact support and quote reference "
        f"**{reference}**.",
        ent=ent,
    )


def outage_card(*, ent: int | None = None) -> Card:
    """What every turn answers while the database cannot be reached: not a bug, and nothing
    was changed, so the admin simply tries again."""
    return notice_card(
        "Switchboard can't reach its database",
        "Switchboard can't reach its database right now; nothing was changed. "
        "Try again in a minute.",
        ent=ent,
    )


def microsoft_outage_card(*, ent: int | None = None) -> Card:
    """What a turn that needs Microsoft (Graph) answers while Microsoft cannot be reached or is
    failing: not a bug, and nothing was changed, so the admin simply tries again."""
    return notice_card(
        "Switchboard can't reach Microsoft",
        "Switchboard can't reach Microsoft right now; nothing was changed. "
        "Try again in a minute.",
        ent=ent,
    )


def already_handled_card(*, ent: int | None = None) -> Card:
    """The answer to a request that reached Switchboard twice, when the first delivery's own
    answer is not known: the change was made once, and nothing was done again."""
    return notice_card(
        "Switchboard already did this",
        "This request reached Switchboard twice. It was carried out the first time, and "
        "nothing was done again: open it from Home to see the result.",
        ent=ent,
    )

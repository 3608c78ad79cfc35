"""The free-number card: browse the free numbers by their last digits, and give one to a user,
let Switchboard take the next free one, or release the user's number into quarantine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from microsoft_teams.cards import (
    Action,
    CardElement,
    Choice,
    ChoiceSetInput,
    QueryData,
)

from cards.actions import (
    AssignNumber,
    AutoAssignNumber,
    Dataset,
    OpenCallerId,
    OpenNumbers,
    ReleaseNumber,
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
from cards.users import free_number_input
from services.domain import LicenceProduct
from services.views import EnterpriseView, Page, UserView

# Fields that have an input of their own on this card; any other refusal shows at the bottom.
_FIELDS_WITH_INPUTS = ("digits", "number", "user_id")
# Messages shown as the card's banner rather than next to an input.
_BANNER_FIELDS = ("version", "user")


@dataclass(frozen=True)
class NumbersForm:
    """What the admin had typed on the card, kept when it comes back with a refusal."""

    digits: str = ""
    number: str = ""


def quarantine_note(days: int) -> str:
    """What happens to a number that is released or replaced."""
    if days <= 0:
        return "A released or replaced number goes straight back to the free list."
    return (
        f"A released or replaced number goes into **quarantine for {days} days**: nobody can be "
        "given it until then, so callers who still dial it do not reach a stranger."
    )


def numbers_help(days: int) -> str:
    """The card's help text."""
    return (
        "The list shows this enterprise's **free** direct numbers (DDIs). Type the last digits "
        "you want (typing **1111** finds the numbers ending in 1111) and press **Search**; the "
        "picker also searches as you type.\n\n"
        "For a user: **Next free number** gives them the lowest free number; **Assign this "
        "number** gives them the one picked in the list, or the one free number ending in the "
        "digits typed. A number already assigned to someone can never be assigned again.\n\n"
        f"{quarantine_note(days)}\n\n"
        "**Essentials** users always keep a direct number (replace it rather than release it); "
        "**Basic** users have an extension only and no direct number."
    )


def _free_list(enterprise: EnterpriseView, free: Page[str], digits: str) -> list[CardElement]:
    if not free.items:
        message = (
            f"No free number ends in {digits}."
            if digits
            else f"{plain(enterprise.name)} has no free number left. Ask your service provider to add "
            "numbers, or release one."
        )
        return [paragraph(message)]
    first = (free.page - 1) * free.page_size + 1
    last = first + len(free.items) - 1
    what = f"ending in **{digits}**" if digits else "in the inventory"
    summary = paragraph(
        f"Free numbers {what}: {first}–{last} of {free.total}.",
        subtle=True,
    )
    half = -(-len(free.items) // 2)
    halves = (free.items[:half], free.items[half:])
    return [
        summary,
        columns(*([paragraph(number_text(n)) for n in part] for part in halves)),
    ]


def _pager(
    enterprise: EnterpriseView, free: Page[str], digits: str, user_id: int | None
) -> list[CardElement]:
    pager: list[Action] = []
    if free.page > 1:
        pager.append(
            button(
                "◀ Previous",
                OpenNumbers(ent=enterprise.id, user_id=user_id, digits=digits, page=free.page - 1),
            )
        )
    if free.page < free.pages:
        pager.append(
            button(
                "Next ▶",
                OpenNumbers(ent=enterprise.id, user_id=user_id, digits=digits, page=free.page + 1),
            )
        )
    return [action_row(*pager)] if pager else []


def _user_picker(users: Sequence[UserView], errors: Errors) -> list[CardElement]:
    # Static choices serve clients without type-ahead; Teams searches all users as you type.
    picker = ChoiceSetInput(
        id="user_id",
        label="Give a number to (type a name to search)",
        choices=[Choice(title=f"{u.display_name} · {u.email}", value=str(u.id)) for u in users],
        choices_data=QueryData(dataset=Dataset.USERS.value),
        style="filtered",
        placeholder="Name or e-mail",
    )
    return [picker, *field_error(errors, "user_id")]


def _user_facts(user: UserView, errors: Errors) -> list[CardElement]:
    body: list[CardElement] = [
        facts(
            [
                ("User", f"{user.display_name} · {user.email}"),
                ("Licence", user.licence.label if user.licence else "none"),
                ("Current number", number_text(user.number)),
            ]
        )
    ]
    if user.licence is LicenceProduct.BASIC:
        body.append(
            paragraph(
                f"{plain(user.display_name)} has a **Basic** licence: an extension only, no direct "
                "number. Change the licence to Essentials on the user card to give them one."
            )
        )
        body.extend(field_error(errors, "number"))
    return body


def _user_controls(
    user: UserView, version: int, days: int, form: NumbersForm, free: Page[str], errors: Errors
) -> tuple[list[CardElement], list[Action]]:
    """The picker, the notes and the buttons that act on the user's number."""
    ent = user.enterprise_id
    others: list[Action] = [
        button("Caller ID", OpenCallerId(ent=ent, user_id=user.id)),
        button("Open user", UserRef(ent=ent, user_id=user.id)),
    ]
    if user.licence is LicenceProduct.BASIC:
        return [], others
    body = free_number_input("number", "Number to assign", form.number, free.items, errors)
    actions: list[Action] = [
        button(
            "Assign this number",
            AssignNumber(ent=ent, user_id=user.id, version=version),
            primary=True,
        ),
        button("Next free number", AutoAssignNumber(ent=ent, user_id=user.id, version=version)),
    ]
    if user.number is not None and user.licence is None:
        actions.append(
            button("Release number", ReleaseNumber(ent=ent, user_id=user.id, version=version))
        )
    elif user.number is not None:
        body.append(
            paragraph(
                f"An Essentials user always has a direct number: to free "
                f"{number_text(user.number)}, assign another one.",
                subtle=True,
            )
        )
    if user.number is not None:
        body.append(paragraph(f"⏳ {quarantine_note(days)}", subtle=True))
    return body, actions + others


def numbers_card(
    enterprise: EnterpriseView,
    free: Page[str],
    *,
    digits: str = "",
    user: UserView | None = None,
    version: int | None = None,
    quarantine_days: int = 0,
    form: NumbersForm | None = None,
    errors: Errors | None = None,
    success: str | None = None,
    users: Sequence[UserView] = (),
) -> Card:
    """The free numbers (a page, filtered by last digits) and, for a user, what to do with them.

    Without a user, `users` are the first choices of the user picker.

    `version` is the version of the user the buttons act on: the one the admin saw, so that a
    change someone else made in between is refused rather than overwritten.
    """
    ent = enterprise.id
    errors = errors or {}
    form = form or NumbersForm(digits=digits)
    user_id = user.id if user else None
    body: list[CardElement] = _user_facts(user, errors) if user else []
    body.extend(
        text_input(
            "digits", "Last digits of the number", form.digits, errors, placeholder="e.g. 1111"
        )
    )
    body.append(
        action_row(button("Search", OpenNumbers(ent=ent, user_id=user_id, digits=form.digits)))
    )
    body.extend(_free_list(enterprise, free, digits))
    body.extend(_pager(enterprise, free, digits, user_id))
    actions: list[Action]
    if user is None:
        body.extend(_user_picker(users, errors))
        actions = [
            button("Choose this user", OpenNumbers(ent=ent, digits=form.digits, choose=True))
        ]
    else:
        # The picker and its buttons come last, right above the buttons that act on them.
        controls, actions = _user_controls(
            user,
            version if version is not None else user.version,
            quarantine_days,
            form,
            free,
            errors,
        )
        body.extend(controls)
    for field, message in errors.items():
        if field not in _FIELDS_WITH_INPUTS and field not in _BANNER_FIELDS:
            body.extend(field_error({field: message}, field))
    banner = next((errors[f] for f in _BANNER_FIELDS if f in errors), None)
    if banner is None and errors:
        banner = "Nothing was changed: see the message marked ⚠."
    return frame(
        f"Number for {user.display_name}" if user else "Free numbers",
        body,
        help_text=numbers_help(quarantine_days),
        ent=ent,
        notice=banner,
        success=success,
        actions=actions,
    )

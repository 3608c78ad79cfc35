"""The welcome and home cards, the enterprise picker, and the card for people we don't know."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from microsoft_teams.cards import CardElement, Choice, ChoiceSetInput

from cards.actions import (
    ExportDirectory,
    FindUser,
    OpenCreateUser,
    OpenDirectory,
    OpenExtensions,
    OpenImport,
    OpenNumbers,
    OpenSync,
    OpenUnlicensed,
    PickEnterprise,
)
from cards.common import Card, button, facts, frame, number_text, paragraph, plain
from services.domain import AdminRole
from services.views import EnterpriseView, PoolView

ROLE_NAMES = {
    AdminRole.GLOBAL_ADMIN: "Global Admin",
    AdminRole.ENTERPRISE_ADMIN: "Enterprise admin",
    AdminRole.SERVICE_PROVIDER: "Service provider admin",
}

HOME_HELP = (
    "Switchboard sets up Teams Phone users on your PBX. To fully enable a person: "
    "**create the user**, give them a calling licence, a phone number and an extension, then "
    "check their **caller ID** (new users often still present the company's main number).\n\n"
    "Changes reach the PBX at once. Microsoft learns them through **Sync Teams Users**: "
    "automatic once your enterprise allows management by the service provider and its first "
    "sync is done; otherwise the Global Admin starts it from the sync card."
)
# What an admin can type, and what each does: shown on the home card itself.
COMMANDS = (
    ("create user", "a new user, with licence, number and extension"),
    ("find priya", "a user by name, e-mail, number or extension"),
    ("directory", "every user, with their numbers, extensions and licences"),
    ("numbers 1111", "the free numbers ending in 1111"),
    ("unlicensed", "the users without a calling licence, to enable them"),
    ("sync", "Sync Teams Users and its status"),
    ("export", "every user as a spreadsheet, to edit and import again"),
    ("import", "create, update or remove many users from a spreadsheet"),
    ("help", "this card"),
)


# The words each command starts with, for matching what an admin typed to the commands.
COMMAND_WORDS = {
    "create user": "create user",
    "find": "find priya",
    "directory": "directory",
    "numbers": "numbers 1111",
    "unlicensed": "unlicensed",
    "sync": "sync",
    "export": "export",
    "import": "import",
    "caller id": "caller id priya",
    "help": "help",
}


def closest_commands(typed: str, *, limit: int = 3) -> list[str]:
    """The commands closest to what was typed (typos tolerated), best first."""
    cleaned = " ".join(typed.lower().split())[:100]
    if not cleaned:
        return []
    candidates = {cleaned, cleaned.split()[0], " ".join(cleaned.split()[:2])}
    scores: dict[str, float] = {}
    for word, example in COMMAND_WORDS.items():
        best = max(difflib.SequenceMatcher(None, word, text).ratio() for text in candidates)
        if best >= 0.6:
            scores[example] = max(scores.get(example, 0.0), best)
    return sorted(scores, key=lambda example: -scores[example])[:limit]


def not_understood_card(typed: str, enterprise: EnterpriseView | None) -> Card:
    """The answer to a message that is no command: what was not understood, the closest
    commands, and every command."""
    shown = " ".join(typed.split())[:80]
    close = closest_commands(typed)
    body: list[CardElement] = [
        paragraph(
            f"I didn't understand “{plain(shown)}”." if shown else "I didn't understand that."
        )
    ]
    if close:
        body.append(
            paragraph("Did you mean " + " or ".join(f"**{command}**" for command in close) + "?")
        )
    body.append(paragraph("**You can type**\n\n" + command_list()))
    return frame(
        "Switchboard",
        body,
        help_text=HOME_HELP,
        ent=enterprise.id if enterprise else None,
    )


def command_list() -> str:
    """The typed commands, one a line."""
    return "\n".join(f"- **{command}**: {what}" for command, what in COMMANDS)


def home_card(
    admin_name: str,
    role: AdminRole,
    enterprise: EnterpriseView | None,
    pools: Sequence[PoolView] = (),
    *,
    enterprises: Sequence[EnterpriseView] = (),
    welcome: bool = False,
) -> Card:
    """What this admin can do, for the enterprise they act for."""
    ent = enterprise.id if enterprise else None
    greeting = f"Welcome to Switchboard, {admin_name}" if welcome else "Switchboard"
    body: list[CardElement] = [
        paragraph(
            f"You are signed in as **{plain(admin_name)}** ({ROLE_NAMES[role]})"
            + (f" for **{plain(enterprise.name)}**." if enterprise else ".")
        )
    ]
    if role is AdminRole.SERVICE_PROVIDER:
        body.extend(_enterprise_picker(enterprises, enterprise))
    if enterprise is None:
        return frame(
            greeting,
            body,
            help_text=HOME_HELP,
            home=False,
            actions=(button("Act for this enterprise", PickEnterprise(), primary=True),)
            if enterprises
            else (),
        )
    summary = [
        ("Main number", number_text(enterprise.main_number)),
        ("Extensions", f"{enterprise.extension_start}–{enterprise.extension_end}"),
        ("Sync", "automatic" if enterprise.syncs_automatically else "manual (Global Admin)"),
    ]
    summary += [(f"{p.product.label} licences", f"{p.free} free of {p.total}") for p in pools]
    body.append(facts(summary))
    body.append(paragraph("**You can type**\n\n" + command_list()))
    actions = [
        button("Create user", OpenCreateUser(ent=ent), primary=True),
        button("Find user", FindUser(ent=ent)),
        button("Directory", OpenDirectory(ent=ent)),
        button("Free numbers", OpenNumbers(ent=ent)),
        button("Free extensions", OpenExtensions(ent=ent)),
        button("Unlicensed users", OpenUnlicensed(ent=ent)),
        button("Sync status", OpenSync(ent=ent)),
        button("Export", ExportDirectory(ent=ent)),
        button("Import", OpenImport(ent=ent)),
    ]
    return frame(greeting, body, help_text=HOME_HELP, actions=actions, ent=ent, home=False)


def _enterprise_picker(
    enterprises: Sequence[EnterpriseView], current: EnterpriseView | None
) -> list[ChoiceSetInput]:
    if not enterprises:
        return []
    return [
        ChoiceSetInput(
            id="ent",
            label="Enterprise you act for",
            value=str(current.id) if current else None,
            choices=[
                Choice(title=f"{e.name} ({e.tenant_id})", value=str(e.id)) for e in enterprises
            ],
            style="compact",
            is_required=True,
            error_message="Choose an enterprise.",
        )
    ]


def unknown_admin_card(tenant_known: bool) -> Card:
    """For someone who is not one of our admins: who to ask, and nothing else."""
    if tenant_known:
        message = (
            "You are not set up as a Switchboard admin for your organisation yet. "
            "Ask your Global Admin or your telephony service provider to add you."
        )
    else:
        message = (
            "Your organisation is not set up with Switchboard. If you expected it to be, "
            "contact your telephony service provider."
        )
    return frame(
        "Switchboard",
        [paragraph(message)],
        help_text="Switchboard is used by the admins who set up Teams Phone users on a PBX.",
        home=False,
    )

"""Removing a user (offboarding): the confirmation that says what will happen, and the result."""

from __future__ import annotations

from datetime import datetime

from cards.actions import OpenDirectory, OpenSync, RemoveUser, UserRef
from cards.common import Card, button, frame, paragraph, plain
from cards.confirm import confirmation_card, quarantine_sentence
from services.views import EnterpriseView, PoolView, UserView

REMOVED_HELP = (
    "A removed user is gone from Switchboard and the PBX at once: their line no longer rings "
    "and their desk phone login stops working.\n\n"
    "Microsoft learns it through **Sync Teams Users**: the calling licence is taken away and "
    "the number unassigned in Teams. The Microsoft 365 account itself stays: it belongs to "
    "the person's organisation, not to the phone system.\n\n"
    "The number rests in quarantine before anyone else can be given it; the extension and the "
    "licence are free again at once."
)


def _microsoft_line(enterprise: EnterpriseView, user: UserView) -> str:
    what = "take the calling licence away and unassign the number in Teams"
    when = "automatically" if enterprise.syncs_automatically else "with the next Sync Teams Users"
    return f"Tell Microsoft {when}: {what} (the Microsoft 365 account of {user.email} stays)."


def removal_lines(
    user: UserView,
    enterprise: EnterpriseView,
    pool: PoolView | None,
    *,
    now: datetime,
    quarantine_days: int,
) -> list[str]:
    """Exactly what removing `user` does, a sentence each."""
    name = user.display_name
    lines = [
        f"Remove {name} ({user.email}) from Switchboard and from the PBX: their line stops "
        "ringing and any desk phone login stops working."
    ]
    if user.licence is not None:
        pool_now = f" ({pool.free} of {pool.total} free now)" if pool is not None else ""
        lines.append(f"Return their {user.licence.label} licence to the pool{pool_now}.")
    if user.number is not None:
        lines.append(quarantine_sentence(user.number, now, quarantine_days))
    if user.extension is not None:
        lines.append(f"Free extension {user.extension} for someone else at once.")
    lines.append(_microsoft_line(enterprise, user))
    return lines


def removal_confirmation_card(
    user: UserView,
    enterprise: EnterpriseView,
    pool: PoolView | None,
    *,
    now: datetime,
    quarantine_days: int,
) -> Card:
    """The question before a user is removed, saying exactly what will happen."""
    ent = enterprise.id
    return confirmation_card(
        f"Remove {user.display_name}?",
        removal_lines(user, enterprise, pool, now=now, quarantine_days=quarantine_days),
        confirm_title="Remove the user",
        confirm=RemoveUser(ent=ent, user_id=user.id, version=user.version, confirmed=True),
        cancel_title="Keep the user",
        cancel=UserRef(ent=ent, user_id=user.id),
        ent=ent,
        destructive=True,
    )


def user_removed_card(
    user: UserView, enterprise: EnterpriseView, *, now: datetime, quarantine_days: int
) -> Card:
    """The result of removing a user: what was freed, and what Microsoft will be told."""
    ent = enterprise.id
    done = []
    if user.licence is not None:
        done.append(f"Their {user.licence.label} licence is back in the pool.")
    if user.number is not None:
        done.append(quarantine_sentence(user.number, now, quarantine_days))
    if user.extension is not None:
        done.append(f"Extension {user.extension} is free.")
    done.append(
        "Microsoft is told automatically."
        if enterprise.syncs_automatically
        else "Microsoft is told with the next Sync Teams Users (Sync status)."
    )
    return frame(
        f"{user.display_name} was removed",
        [paragraph(f"• {plain(line)}") for line in done],
        help_text=REMOVED_HELP,
        ent=ent,
        success=f"{user.display_name} is no longer on the PBX.",
        actions=[
            button("Directory", OpenDirectory(ent=ent), primary=True),
            button("Sync status", OpenSync(ent=ent)),
        ],
    )

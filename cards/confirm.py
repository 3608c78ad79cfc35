"""Confirmation cards: what cannot be undone in one click is said in full before it is done."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from cards.actions import ActionData
from cards.common import Card, button, frame, number_text, paragraph, plain

CONFIRM_HELP = (
    "Nothing has changed yet. Press the first button to go ahead, or the second to go back "
    "without changing anything.\n\n"
    "A number taken from a user goes into quarantine so that callers who still dial it do not "
    "reach a stranger; nobody can be given it until the quarantine ends."
)


def quarantine_until(now: datetime, days: int) -> str:
    """When a number released now is free again, as admins read it."""
    return (now + timedelta(days=days)).strftime("%d %b %Y")


def quarantine_sentence(number: str, now: datetime, days: int) -> str:
    """What happens to `number` once it is taken away from its user."""
    if days <= 0:
        return f"{number_text(number)} goes straight back to the free numbers."
    return (
        f"{number_text(number)} goes into quarantine until {quarantine_until(now, days)} "
        f"({days} days): nobody can be given it before then."
    )


def confirmation_card(
    title: str,
    what_happens: Sequence[str],
    *,
    confirm_title: str,
    confirm: ActionData,
    cancel_title: str,
    cancel: ActionData,
    ent: int,
    destructive: bool = False,
) -> Card:
    """A card that says exactly what will happen, with a button to do it and one to go back.

    `what_happens` are plain sentences (they often quote names an admin typed); a
    `destructive` action's button is shown as one (red), not as the usual next step."""
    body = [paragraph("**This will:**")]
    body.extend(paragraph(f"• {plain(line)}") for line in what_happens)
    body.append(paragraph("This cannot be undone in one click.", subtle=True))
    go = button(confirm_title, confirm, primary=not destructive)
    if destructive:
        go.style = "destructive"
    return frame(
        title,
        body,
        help_text=CONFIRM_HELP,
        ent=ent,
        actions=[go, button(cancel_title, cancel)],
    )

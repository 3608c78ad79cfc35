"""The free-extensions card: which extensions of the enterprise's range nobody has."""

from __future__ import annotations

from microsoft_teams.cards import CardElement

from cards.actions import OpenCreateUser, OpenDirectory, OpenNumbers
from cards.common import Card, button, facts, frame, paragraph
from services.views import EnterpriseView, ExtensionRanges

EXTENSIONS_HELP = (
    "Every user with a calling licence, and every hunt group, has an extension: a short number "
    "colleagues dial inside the company. An extension already taken can never be given to "
    "someone else.\n\n"
    "The list shows the free ones as runs (1004–1099 means every extension from 1004 to 1099). "
    "Type one into the **Extension** box of the create or edit form, or let Switchboard take "
    "the next free one. The range itself is set by your service provider."
)
# Runs listed on the card; the rest are counted (a range cut into more runs is rare).
LISTED_RUNS = 40


def _run(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}–{last} ({last - first + 1})"


def free_extensions_card(enterprise: EnterpriseView, ranges: ExtensionRanges) -> Card:
    """The enterprise's free extensions, as runs of consecutive ones."""
    ent = enterprise.id
    body: list[CardElement] = [
        facts(
            [
                ("Range", f"{ranges.start}–{ranges.end}"),
                ("Free", str(ranges.free)),
                ("Taken", str(ranges.taken)),
            ]
        )
    ]
    if not ranges.free_runs:
        body.append(
            paragraph(
                "Every extension is taken. Ask your service provider to widen the range, or "
                "remove a user who has left."
            )
        )
    else:
        shown = ranges.free_runs[:LISTED_RUNS]
        lines = "\n".join(f"- {_run(first, last)}" for first, last in shown)
        more = len(ranges.free_runs) - len(shown)
        if more:
            lines += f"\n- …and {more} more runs"
        body.append(paragraph(f"**Free extensions**\n\n{lines}"))
    return frame(
        "Free extensions",
        body,
        help_text=EXTENSIONS_HELP,
        ent=ent,
        actions=[
            button("Create user", OpenCreateUser(ent=ent), primary=True),
            button("Free numbers", OpenNumbers(ent=ent)),
            button("Directory", OpenDirectory(ent=ent)),
        ],
    )

"""The turn pipeline: every step a turn goes through, in order, one small module each.

Before the chain, at the HTTP edge (bot/http.py): the Bot Framework token's signature and
claims are checked before the body is read (401 otherwise); the body's size and JSON nesting
are bounded, the activity parsed and every field the bot reads validated (bot/inbound.py, 400
otherwise); then the token's service URL is matched against the activity's.

Then each step runs, and calls the next (or answers and stops):
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.steps import (
    Step,
    TurnState,
    errors,
    identity,
    ledger,
    references,
    request,
    routing,
    tenancy,
)

STEPS: tuple[Step, ...] = (
    errors.contain,  # nothing escapes: the outage card or the apology, never a 500
    request.read,  # what is asked: a card action, a typed command, a search, a welcome
    references.remember,  # where to reach this admin later (conversation reference)
    identity.identify,  # who asks: the admin and their role, or a stranger
    tenancy.choose_enterprise,  # for which enterprise; the Turn handlers receive
    ledger.once,  # a change runs once per activity; a redelivery gets the first answer
    routing.route,  # the handler of the verb (bot/router.py), home, or the results
)


async def run(turn: TurnState, steps: Sequence[Step] = STEPS) -> None:
    """Run `turn` through `steps`, each calling the next."""

    async def step_at(index: int) -> None:
        if index < len(steps):
            await steps[index](turn, lambda: step_at(index + 1))

    await step_at(0)

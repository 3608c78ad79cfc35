"""The steps of a turn, one small module each; bot/pipeline.py lists them in order.

Every step is `async def step(turn: TurnState, next: Next) -> None`: it reads and fills the
turn's state, and calls `next()` to let the rest of the chain run (or does not, to stop it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from botbuilder.core import TurnContext
from botbuilder.schema import Activity

from bot.adapter import reference_id
from bot.router import Router, Turn
from cards.common import Card
from services.container import Services
from services.views import AdminView

# What the activity asks for: a card action (Action.Execute or Action.Submit), a typed
# command, a type-ahead search, a welcome (the bot added or installed), or nothing of ours.
TurnKind = Literal["action", "command", "search", "welcome", "other"]


@dataclass
class KnownReferences:
    """Conversation references this process already stored, to skip unchanged saves."""

    saved: dict[tuple[str, str, str], tuple[Any, ...]] = field(default_factory=dict)
    limit: int = 10_000


@dataclass
class SearchRequest:
    """A type-ahead request: the text typed, the dataset, how many results fit."""

    query: str
    dataset: str
    limit: int


@dataclass
class TurnState:
    """One turn as it goes through the steps: what was asked, by whom, and the answer."""

    context: TurnContext
    services: Services  # every service of the domain (services/container.py)
    router: Router
    references: KnownReferences
    kind: TurnKind = "other"
    verb: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    search: SearchRequest | None = None
    admin: AdminView | None = None
    tenant_known: bool = False
    turn: Turn | None = None
    # The answer: a card (actions, commands, welcomes) or type-ahead results (searches).
    card: Card | None = None
    results: list[tuple[str, str]] | None = None

    @property
    def activity(self) -> Activity:
        """The inbound activity (already validated by bot/inbound.py)."""
        return self.context.activity

    @property
    def reference(self) -> str:
        """The id an admin quotes to support for this turn."""
        return reference_id(self.context)


Next = Callable[[], Awaitable[None]]
Step = Callable[[TurnState, Next], Awaitable[None]]


def as_dict(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def tenant_id(activity: Activity) -> str:
    """The enterprise's Entra tenant, as Teams names it in the channel data."""
    tenant = as_dict(as_dict(activity.channel_data).get("tenant"))
    return str(tenant.get("id") or "").strip().lower()

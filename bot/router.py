"""Routing by verb: one handler per card action, one search handler per type-ahead dataset.

Cross-cutting work lives here once: parsing the typed payload, refusing what the admin's
role does not allow, and turning a domain refusal into the form again with the admin's input
kept and the message next to the field.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import ValidationError as PayloadError

from cards.actions import ActionData, Dataset
from cards.common import Card, Errors, notice_card, plain
from services.directory import Directory
from services.errors import DomainError, PermissionDeniedError
from services.models import AdminRole
from services.views import Actor, AdminView, EnterpriseView

logger = logging.getLogger(__name__)

D = TypeVar("D", bound=ActionData)


@dataclass
class Turn:
    """Who acts, for which enterprise, with what: all a handler needs, no Bot Framework types."""

    directory: Directory
    admin: AdminView
    actor: Actor
    enterprise: EnterpriseView | None
    reference: str
    data: dict[str, Any] = field(default_factory=dict)
    # The card a redelivery of this activity gets instead of this turn's own card (see below).
    redelivery_card: Card | None = None

    def answer_redelivery_with(self, card: Card) -> None:
        """Keep `card`, not the one this turn shows, as the answer to a redelivery of the same
        activity: for a card that shows a secret once, which must never be stored."""
        self.redelivery_card = card

    @property
    def ent(self) -> int | None:
        """The id of the enterprise acted for, for the cards' buttons."""
        return self.enterprise.id if self.enterprise else None

    def require_enterprise(self) -> EnterpriseView:
        """The enterprise acted for; provider admins must have picked one."""
        if self.enterprise is None:
            raise PermissionDeniedError("Pick the enterprise you act for first (Home).")
        return self.enterprise


Handler = Callable[[Turn, D], Awaitable[Card]]
FormBuilder = Callable[[Turn, D, Errors], Awaitable[Card]]
SearchHandler = Callable[[Turn, str, int], Awaitable[list[tuple[str, str]]]]


@dataclass(frozen=True)
class Route(Generic[D]):
    """A verb's handler, its payload model, and the form to show again on refusal."""

    model: type[D]
    handler: Handler[D]
    form: FormBuilder[D] | None
    needs_enterprise: bool
    roles: frozenset[AdminRole] | None


class Router:
    """Handlers registered by verb (and searches by dataset), included from feature modules."""

    def __init__(self) -> None:
        self.routes: dict[str, Route[Any]] = {}
        self.searches: dict[str, SearchHandler] = {}

    def action(
        self,
        model: type[D],
        *,
        form: FormBuilder[D] | None = None,
        needs_enterprise: bool = True,
        roles: Iterable[AdminRole] | None = None,
    ) -> Callable[[Handler[D]], Handler[D]]:
        """Register the decorated function as the handler of `model.verb`."""

        def register(handler: Handler[D]) -> Handler[D]:
            verb = model.verb.value
            if verb in self.routes:
                raise ValueError(f"verb {verb} is registered twice")
            self.routes[verb] = Route(
                model, handler, form, needs_enterprise, frozenset(roles) if roles else None
            )
            return handler

        return register

    def search(self, dataset: Dataset) -> Callable[[SearchHandler], SearchHandler]:
        """Register the decorated function as the type-ahead handler of `dataset`."""

        def register(handler: SearchHandler) -> SearchHandler:
            self.searches[dataset.value] = handler
            return handler

        return register

    def include(self, other: Router) -> None:
        """Take over every route of a feature's router."""
        for verb, route in other.routes.items():
            if verb in self.routes:
                raise ValueError(f"verb {verb} is registered twice")
            self.routes[verb] = route
        self.searches.update(other.searches)

    def changes_state(self, verb: str) -> bool:
        """Whether the verb's action changes anything (and so must not run twice)."""
        route = self.routes.get(verb)
        return route is not None and route.model.changes_state

    async def dispatch(self, verb: str, turn: Turn) -> Card:
        """Run the handler of `verb` and return the card to show."""
        route = self.routes.get(verb)
        if route is None:
            logger.warning("Unknown card verb %r (reference %s)", verb[:80], turn.reference)
            return notice_card(
                "Switchboard did not understand that",
                "That button is not one Switchboard knows, perhaps from an older card. "
                "Start again from Home.",
                ent=turn.ent,
            )
        try:
            payload = route.model.model_validate(turn.data)
        except PayloadError as error:
            fields = sorted({str(e["loc"][0]) for e in error.errors() if e["loc"]})
            logger.warning(
                "Malformed %s payload, fields %s (reference %s)", verb, fields, turn.reference
            )
            return notice_card(
                "That request was incomplete",
                "The card sent something Switchboard could not read"
                + (f" ({', '.join(fields)})" if fields else "")
                + ". Open the card again from Home and retry.",
                ent=turn.ent,
            )
        if route.roles is not None and turn.admin.role not in route.roles:
            return notice_card("Not allowed", "Your role does not allow this action.", ent=turn.ent)
        try:
            if route.needs_enterprise:
                turn.require_enterprise()
            return await route.handler(turn, payload)
        except DomainError as refusal:
            if route.form is not None and not isinstance(refusal, PermissionDeniedError):
                try:
                    return await route.form(
                        turn, payload, {refusal.field or "form": refusal.message}
                    )
                except DomainError:
                    pass  # the form itself cannot be drawn again: the refusal says why
            return notice_card("That could not be done", plain(refusal.message), ent=turn.ent)

    async def run_search(
        self, dataset: str, turn: Turn, query: str, limit: int
    ) -> list[tuple[str, str]]:
        """The type-ahead results for a dataset: at most `limit` (title, value) pairs."""
        handler = self.searches.get(dataset)
        if handler is None or turn.enterprise is None:
            return []
        try:
            return (await handler(turn, query, limit))[:limit]
        except DomainError:
            return []

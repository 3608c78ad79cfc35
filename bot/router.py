"""Routing by verb: one handler per card action, one search handler per type-ahead dataset.

Cross-cutting work lives here once: parsing the typed payload, refusing what the admin's
role does not allow or what needs an enterprise not yet picked, handing each handler what its
signature names, and turning a domain refusal into the form again with the admin's input kept
and the message next to the field.

A handler names what it needs by parameter name:

    @router.action(UserRef)
    async def open_user(turn: EnterpriseTurn, data: UserRef, *, users: Users) -> Card: ...

`data` or `form` is the typed payload, `turn` the turn (an EnterpriseTurn: the enterprise is
always there), and any of DEPENDENCIES by its name. A route's form (drawn again after a
refusal, and naming `errors` too) and its redelivery builder name what they need the same way.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import ValidationError as PayloadError

from cards.actions import CHOICE_ERROR, ActionData, Dataset
from cards.common import Card, Errors, notice_card, plain
from services.container import Services
from services.domain import AdminRole
from services.errors import DomainError, OutsideUnreachableError, PermissionDeniedError
from services.graph.errors import GraphError
from services.views import Actor, AdminView, EnterpriseView

logger = logging.getLogger(__name__)

D = TypeVar("D", bound=ActionData)


@dataclass(frozen=True)
class Origin:
    """Where a turn comes from in Teams, as plain ids."""

    conversation_id: str = ""
    # The message holding the card whose button was pressed (an invoke's replyToId).
    card_activity_id: str | None = None
    # The admin's Teams user id (`29:…`).
    viewer_id: str = ""


@dataclass
class Turn:
    """Who acts, for which enterprise, with what: all a handler needs, no Bot Framework types."""

    services: Services
    admin: AdminView
    actor: Actor
    enterprise: EnterpriseView | None
    reference: str
    data: dict[str, Any] = field(default_factory=dict)
    # The card a redelivery of this activity gets instead of this turn's own card (see below).
    redelivery_card: Card | None = None
    # Where the turn comes from: the chat, the card whose button was pressed (its message id),
    # and the admin's Teams user id (MRI), which a card's refresh lists.
    origin: Origin = field(default_factory=lambda: Origin())

    def answer_redelivery_with(self, card: Card) -> None:
        """Keep `card`, not the one this turn shows, as the answer to a redelivery of the same
        activity: for a card that shows a secret once, which must never be stored."""
        self.redelivery_card = card

    @property
    def ent(self) -> int | None:
        """The id of the enterprise acted for, for the cards' buttons."""
        return self.enterprise.id if self.enterprise else None

    def acting(self) -> EnterpriseTurn | None:
        """This turn with its enterprise, or None while a provider admin has picked none."""
        if self.enterprise is None:
            return None
        return EnterpriseTurn(
            self.services,
            self.admin,
            self.actor,
            self.enterprise,
            self.reference,
            self.data,
            origin=self.origin,
        )


@dataclass
class EnterpriseTurn(Turn):
    """A turn acting for an enterprise: what every feature handler receives."""

    enterprise: EnterpriseView

    @property
    def ent(self) -> int:
        """The id of the enterprise acted for, for the cards' buttons."""
        return self.enterprise.id


PICK_ENTERPRISE_FIRST = "Pick the enterprise you act for first (Home)."

# What a handler may name in its signature, and where the router finds it.
DEPENDENCIES: dict[str, Callable[[EnterpriseTurn], Any]] = {
    "turn": lambda turn: turn,
    "enterprise": lambda turn: turn.enterprise,
    "actor": lambda turn: turn.actor,
    "admin": lambda turn: turn.admin,
    "services": lambda turn: turn.services,
    "enterprises": lambda turn: turn.services.enterprises,
    "users": lambda turn: turn.services.users,
    "directory": lambda turn: turn.services.directory,
    "inventory": lambda turn: turn.services.inventory,
    "licences": lambda turn: turn.services.licences,
    "syncs": lambda turn: turn.services.syncs,
    "hunt_groups": lambda turn: turn.services.hunt_groups,
    "desk_phones": lambda turn: turn.services.desk_phones,
    "pbx_statuses": lambda turn: turn.services.pbx_statuses,
    "settings": lambda turn: turn.services.settings,
}
PAYLOAD_NAMES = frozenset({"data", "form"})

# Handlers, forms and redelivery builders all name what they need (see the module docstring).
Handler = Callable[..., Awaitable[Card]]
# The card again after a refusal: names `errors` (field -> message) besides the payload.
FormBuilder = Callable[..., Awaitable[Card]]
# The card for a redelivery whose first delivery's answer is lost (its instance stopped right
# after the change committed): built from what the change left, or None when not found.
RedeliveryBuilder = Callable[..., Awaitable[Card | None]]
SearchHandler = Callable[..., Awaitable[list[tuple[str, str]]]]


SEARCH_NAMES = frozenset({"query", "limit"})
FORM_NAMES = PAYLOAD_NAMES | {"errors"}


def _needs(handler: Callable[..., Any], given: frozenset[str]) -> tuple[str, ...]:
    """The names a handler's signature asks for; an unknown one is refused at registration
    (unless it has a default: it then keeps it)."""
    parameters = inspect.signature(handler).parameters
    names = tuple(
        name
        for name, parameter in parameters.items()
        if name in DEPENDENCIES or name in given or parameter.default is inspect.Parameter.empty
    )
    unknown = [n for n in names if n not in DEPENDENCIES and n not in given]
    if unknown:
        raise TypeError(
            f"{handler.__qualname__} asks for {unknown}: not one of {list(DEPENDENCIES)}"
        )
    return names


@dataclass(frozen=True)
class Injected:
    """A function and the names its signature asks for: it is called with exactly those, each
    given by the caller (the payload, the errors, ...) or found in DEPENDENCIES."""

    function: Callable[..., Awaitable[Any]]
    needs: tuple[str, ...]

    @classmethod
    def of(cls, function: Callable[..., Awaitable[Any]], given: frozenset[str]) -> Injected:
        """`function`, its signature checked against what it can be given."""
        return cls(function, _needs(function, given))

    async def __call__(self, turn: EnterpriseTurn, **given: Any) -> Any:
        arguments = {
            name: given[name] if name in given else DEPENDENCIES[name](turn) for name in self.needs
        }
        return await self.function(**arguments)


@dataclass(frozen=True)
class Route(Generic[D]):
    """A verb's handler, its payload model, the roles it is for, the form to show again on
    refusal and the card for a redelivery whose first answer was lost."""

    model: type[D]
    handler: Injected
    form: Injected | None
    roles: frozenset[AdminRole] | None
    redelivered: Injected | None = None

    async def call(self, turn: EnterpriseTurn, payload: D) -> Card:
        """Run the handler with what its signature names."""
        card: Card = await self.handler(turn, data=payload, form=payload)
        return card

    async def refused(self, turn: EnterpriseTurn, payload: D, errors: Errors) -> Card | None:
        """The form again with the errors next to its fields; None when the route has none."""
        if self.form is None:
            return None
        card: Card = await self.form(turn, data=payload, form=payload, errors=errors)
        return card

    async def answer_redelivery(self, turn: EnterpriseTurn, payload: D) -> Card | None:
        """The card built from what the first delivery changed, or None."""
        if self.redelivered is None:
            return None
        card: Card | None = await self.redelivered(turn, data=payload, form=payload)
        return card


@dataclass(frozen=True)
class SearchRoute:
    """A dataset's type-ahead handler and what its signature names."""

    handler: Injected

    async def call(self, turn: EnterpriseTurn, query: str, limit: int) -> list[tuple[str, str]]:
        """Run the handler with the query, the limit and what else its signature names."""
        results: list[tuple[str, str]] = await self.handler(turn, query=query, limit=limit)
        return results


def is_outside_outage(error: BaseException) -> bool:
    """Whether `error` means a service outside Switchboard (Microsoft Graph, Entra) is out of
    reach or failing right now: an outage to tell as one, not a refusal of the admin's input."""
    return isinstance(error, OutsideUnreachableError) or (
        isinstance(error, GraphError) and error.transient
    )


def _read_payload(route: Route[Any], data: dict[str, Any]) -> tuple[ActionData | None, Errors]:
    """The typed payload, and the fields holding a choice the card does not offer (each with
    the message saying what to choose): those read as their defaults, so the form can be shown
    again. None, with the fields that cannot be read, when anything else is wrong."""
    try:
        return route.model.model_validate(data), {}
    except PayloadError as error:
        problems = error.errors()
    fields = {str(problem["loc"][0]): problem for problem in problems if problem["loc"]}
    if not fields or any(problem["type"] != CHOICE_ERROR for problem in problems):
        return None, {field: "" for field in fields}
    mistakes = {field: str(problem["msg"]) for field, problem in fields.items()}
    try:
        kept = {key: value for key, value in data.items() if key not in mistakes}
        return route.model.model_validate(kept), mistakes
    except PayloadError:
        return None, {field: "" for field in fields}


class Router:
    """Handlers registered by verb (and searches by dataset), included from feature modules."""

    def __init__(self) -> None:
        self.routes: dict[str, Route[Any]] = {}
        self.searches: dict[str, SearchRoute] = {}

    def action(
        self,
        model: type[D],
        *,
        form: FormBuilder[D] | None = None,
        roles: Iterable[AdminRole] | None = None,
        redelivered: RedeliveryBuilder[D] | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function as the handler of `model.verb`; only `roles`, when
        given, may run it. `form` draws the form again after a refusal; `redelivered` answers a
        redelivery from the change itself when the first answer was lost."""

        def register(handler: Handler) -> Handler:
            verb = model.verb.value
            if verb in self.routes:
                raise ValueError(f"verb {verb} is registered twice")
            self.routes[verb] = Route(
                model,
                Injected.of(handler, PAYLOAD_NAMES),
                Injected.of(form, FORM_NAMES) if form else None,
                frozenset(roles) if roles else None,
                Injected.of(redelivered, PAYLOAD_NAMES) if redelivered else None,
            )
            return handler

        return register

    def search(self, dataset: Dataset) -> Callable[[SearchHandler], SearchHandler]:
        """Register the decorated function as the type-ahead handler of `dataset`."""

        def register(handler: SearchHandler) -> SearchHandler:
            self.searches[dataset.value] = SearchRoute(Injected.of(handler, SEARCH_NAMES))
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
        payload, mistakes = _read_payload(route, turn.data)
        if payload is None:
            fields = sorted(mistakes)
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
        acting = turn.acting()
        if acting is None:
            return notice_card("That could not be done", PICK_ENTERPRISE_FIRST, ent=turn.ent)
        if mistakes:
            # A choice the card does not offer (a mode, a product, a selection): the form
            # again, the other inputs kept, the message next to the field.
            try:
                form = await route.refused(acting, payload, mistakes)
            except DomainError:
                form = None
            return form or notice_card(
                "That could not be done", plain(" ".join(mistakes.values())), ent=turn.ent
            )
        try:
            return await route.call(acting, payload)
        except DomainError as refusal:
            if is_outside_outage(refusal):
                raise  # not the admin's to fix: told as an outage (bot/steps/errors.py)
            if not isinstance(refusal, PermissionDeniedError):
                try:
                    form = await route.refused(
                        acting, payload, {refusal.field or "form": refusal.message}
                    )
                except DomainError:
                    form = None  # the form itself cannot be drawn again: the refusal says why
                if form is not None:
                    return form
            return notice_card("That could not be done", plain(refusal.message), ent=turn.ent)
        finally:
            turn.redelivery_card = acting.redelivery_card

    async def answer_redelivery(self, verb: str, turn: Turn) -> Card | None:
        """The card for a redelivery of `verb` whose first answer was lost, from what the
        first delivery changed; None when the verb has no such card or it cannot be built."""
        route = self.routes.get(verb)
        acting = turn.acting()
        if route is None or acting is None:
            return None
        try:
            return await route.answer_redelivery(acting, route.model.model_validate(turn.data))
        except (PayloadError, DomainError):
            return None

    async def run_search(
        self, dataset: str, turn: Turn, query: str, limit: int
    ) -> list[tuple[str, str]]:
        """The type-ahead results for a dataset: at most `limit` (title, value) pairs."""
        search = self.searches.get(dataset)
        acting = turn.acting()
        if search is None or acting is None:
            return []
        try:
            return (await search.call(acting, query, limit))[:limit]
        except DomainError:
            return []

"""The Teams bot: turns activities into verbs for the router, and cards back into replies.

Bot Framework types stop here. Identity and role, tenant isolation, duplicate delivery and
conversation references are handled once, for every handler.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from botbuilder.core import (
    ActivityHandler,
    CardFactory,
    InvokeResponse,
    MessageFactory,
    TurnContext,
)
from botbuilder.schema import Activity, ActivityTypes, ChannelAccount

from bot.adapter import reference_id
from bot.router import Router, Turn
from cards.actions import Verb, database_id
from cards.common import Card, apology_card, outage_card
from cards.home import home_card, unknown_admin_card
from services.conversations import RedeliveredError
from services.db import is_unreachable
from services.directory import Directory
from services.models import AdminRole
from services.views import Actor, AdminView, EnterpriseView

logger = logging.getLogger(__name__)

CARD_RESPONSE = "application/vnd.microsoft.card.adaptive"
SEARCH_RESPONSE = "application/vnd.microsoft.search.searchResponse"
MAX_SEARCH_RESULTS = 15
DUPLICATE_WAIT_SECONDS = 5.0
# Where a turn leaves the card the ledger keeps instead of the one shown (Turn.redelivery_card).
REDELIVERY_CARD = "switchboard.redelivery_card"

# Typed commands, matched on the whole message: a verb and the data it starts with.
_COMMANDS: list[tuple[re.Pattern[str], Verb, Callable[[re.Match[str]], dict[str, Any]]]] = [
    (re.compile(r"^(?:help|hi|hello|home|menu|start|\?)$"), Verb.HOME, lambda m: {}),
    (re.compile(r"^(?:create|new|add)(?: user)?$"), Verb.USER_CREATE_OPEN, lambda m: {}),
    (
        re.compile(r"^(?:find|search|user|edit)(?: user)?(?:\s+(?P<q>.+))?$"),
        Verb.USER_FIND,
        lambda m: {"query": m.group("q") or ""},
    ),
    (re.compile(r"^(?:directory|users|list users|list)$"), Verb.DIRECTORY_OPEN, lambda m: {}),
    (
        re.compile(r"^(?:free )?numbers?(?:\s+(?P<d>[\d\s+]+))?$"),
        Verb.NUMBERS_OPEN,
        lambda m: {"digits": (m.group("d") or "").strip()},
    ),
    (
        re.compile(r"^caller ?id(?:\s+(?P<q>.+))?$"),
        Verb.USER_FIND,
        lambda m: {"query": m.group("q") or ""},
    ),
    (
        re.compile(r"^(?:unlicensed|unlicensed users|licences|licenses|enable)$"),
        Verb.UNLICENSED_OPEN,
        lambda m: {},
    ),
    (re.compile(r"^(?:sync|sync status|status|sync teams users)$"), Verb.SYNC_OPEN, lambda m: {}),
]


def parse_command(text: str) -> tuple[Verb, dict[str, Any]] | None:
    """The verb a typed message asks for, or None when it is not a command."""
    cleaned = " ".join(text.replace("\x00", "").strip().lower().split())
    for pattern, verb, data in _COMMANDS:
        match = pattern.match(cleaned)
        if match:
            return verb, data(match)
    return None


class SwitchboardBot(ActivityHandler):  # type: ignore[misc]
    """Switchboard's activity handler."""

    def __init__(self, directory: Directory, router: Router) -> None:
        self.directory = directory
        self.router = router
        # Conversation references already stored by this process, to skip unchanged saves.
        self._known_references: dict[tuple[str, str, str], tuple[Any, ...]] = {}

    # --- identity ------------------------------------------------------------------------

    async def _identify(self, context: TurnContext) -> tuple[AdminView | None, bool]:
        activity = context.activity
        tenant = _tenant_id(activity)
        person = (activity.from_property.aad_object_id if activity.from_property else None) or ""
        admin = await self.directory.enterprises.identify(tenant, person) if tenant else None
        if admin is not None:
            return admin, True
        known = bool(tenant) and await self.directory.enterprises.by_tenant(tenant) is not None
        return None, known

    async def _turn(self, context: TurnContext, admin: AdminView, data: dict[str, Any]) -> Turn:
        enterprise: EnterpriseView | None = None
        if admin.role is AdminRole.SERVICE_PROVIDER:
            # Provider admins act for any enterprise: the one named by the card they used.
            wanted = enterprise_id(data.get("ent"))
            if wanted is not None:
                enterprise = await self.directory.enterprises.by_id(wanted)
        elif admin.enterprise is not None:
            # Enterprise admins only ever act for their own enterprise, whatever the card says.
            enterprise = admin.enterprise
            data = {**data, "ent": enterprise.id}
        name = context.activity.from_property.name if context.activity.from_property else ""
        actor = Actor(
            admin.aad_object_id,
            admin.display_name or name or "",
            admin.role,
            enterprise.id if enterprise else None,
        )
        return Turn(self.directory, admin, actor, enterprise, reference_id(context), data)

    async def _home(self, turn: Turn, *, welcome: bool = False) -> Card:
        enterprises = (
            await self.directory.enterprises.all()
            if turn.admin.role is AdminRole.SERVICE_PROVIDER
            else []
        )
        pools = await self.directory.licences.pools(turn.enterprise.id) if turn.enterprise else []
        return home_card(
            turn.actor.display_name or "admin",
            turn.admin.role,
            turn.enterprise,
            pools,
            enterprises=enterprises,
            welcome=welcome,
        )

    async def _run_verb(self, context: TurnContext, verb: str, data: dict[str, Any]) -> Card:
        admin, tenant_known = await self._identify(context)
        if admin is None:
            return unknown_admin_card(tenant_known)
        turn = await self._turn(context, admin, data)
        if verb in (Verb.HOME.value, Verb.ENTERPRISE_PICK.value):
            return await self._home(turn)
        card = await self.router.dispatch(verb, turn)
        if turn.redelivery_card is not None:
            context.turn_state[REDELIVERY_CARD] = turn.redelivery_card
        return card

    async def _guarded(
        self, context: TurnContext, verb: str, work: Callable[[], Awaitable[Card]]
    ) -> Card:
        """Run a turn's work once per activity id, answering a redelivery with the first card.

        Only actions that change something are guarded: reading twice does no harm. The claim
        on the activity commits with the turn's first change, so a redelivery can never repeat
        a change, and a turn refused before changing anything may simply run again.
        """
        key = delivery_key(context.activity)
        if key is None or not self.router.changes_state(verb):
            return await self._safely(context, work)
        with self.directory.ledger.claiming(key) as claim:
            try:
                card = await self._safely(context, work)
            except RedeliveredError:
                return await self._first_answer(context, key)
        if claim.claimed:
            # A card showing a secret is answered, never stored: the ledger keeps its stand-in.
            self.directory.ledger.keep(key, context.turn_state.get(REDELIVERY_CARD, card))
        elif await self.directory.ledger.peek(key) is not None:
            # Refused before changing anything because another delivery of this very activity
            # had changed it: the admin gets that delivery's answer, not the refusal.
            return await self._first_answer(context, key)
        return card

    async def _first_answer(self, context: TurnContext, key: str) -> Card:
        """The card the first delivery of this activity answered, once it has answered."""
        waited = 0.0
        claim = await self.directory.ledger.peek(key)
        while (claim is None or claim.response is None) and waited < DUPLICATE_WAIT_SECONDS:
            await asyncio.sleep(0.1)
            waited += 0.1
            claim = await self.directory.ledger.peek(key)
        logger.info("Duplicate delivery of activity %s answered from the ledger", key)
        return (claim.response if claim else None) or apology_card(reference_id(context))

    async def _safely(self, context: TurnContext, work: Callable[[], Awaitable[Card]]) -> Card:
        try:
            return await work()
        except RedeliveredError:
            raise
        except Exception as error:
            return failure_card(context, error)

    async def on_turn(self, turn_context: TurnContext) -> None:
        """Run the turn; whatever escapes it (the database gone while the conversation
        reference, the ledger or the welcome is written) still gets its card, never a 500."""
        try:
            await super().on_turn(turn_context)
        except RedeliveredError:
            raise
        except Exception as error:
            card = failure_card(turn_context, error)
            activity = turn_context.activity
            if activity.type != ActivityTypes.invoke:
                await turn_context.send_activity(
                    MessageFactory.attachment(CardFactory.adaptive_card(card))
                )
            elif activity.name == "application/search":
                _answer(turn_context, _search_response([]))
            else:
                _answer(turn_context, _card_response(card))

    async def _remember_conversation(self, context: TurnContext) -> None:
        activity = context.activity
        tenant = _tenant_id(activity)
        person = activity.from_property.aad_object_id if activity.from_property else None
        if not tenant or not person or not activity.conversation:
            return
        key = (tenant, person, activity.conversation.id)
        # What a reference is made of, compared before building one: most turns change none.
        fingerprint = _reference_fingerprint(activity)
        if self._known_references.get(key) == fingerprint:
            return
        reference = TurnContext.get_conversation_reference(activity).serialize()
        reference.pop("activityId", None)  # proactive messages start new threads
        await self.directory.conversations.save(
            tenant_id=tenant,
            aad_object_id=person,
            conversation_id=activity.conversation.id,
            is_personal=(activity.conversation.conversation_type or "personal") == "personal",
            reference=reference,
        )
        if len(self._known_references) > 10_000:
            self._known_references.clear()
        self._known_references[key] = fingerprint

    # --- activities -----------------------------------------------------------------------

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        """Typed commands, and Action.Submit cards (which arrive as messages with a value)."""
        await self._remember_conversation(turn_context)
        activity = turn_context.activity
        value = activity.value if isinstance(activity.value, dict) else None
        if value is not None:
            verb = str(value.get("verb") or "")

            async def submitted() -> Card:
                return await self._run_verb(turn_context, verb, value)

            card = await self._guarded(turn_context, verb, submitted)
        else:
            command = parse_command(command_text(activity))

            async def typed() -> Card:
                if command is None:
                    return await self._run_verb(turn_context, Verb.HOME.value, {})
                return await self._run_verb(turn_context, command[0].value, command[1])

            card = await self._safely(turn_context, typed)
        await turn_context.send_activity(MessageFactory.attachment(CardFactory.adaptive_card(card)))

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        """Action.Execute (`adaptiveCard/action`) and type-ahead (`application/search`)."""
        name = turn_context.activity.name
        if name == "adaptiveCard/action":
            return _answer(turn_context, await self._card_action(turn_context))
        if name == "application/search":
            return _answer(turn_context, await self._search(turn_context))
        return await super().on_invoke_activity(turn_context)

    async def _card_action(self, context: TurnContext) -> InvokeResponse:
        value = _dict(context.activity.value)
        action = _dict(value.get("action"))
        verb = str(action.get("verb") or "")
        data = _dict(action.get("data"))
        await self._remember_conversation(context)

        async def execute() -> Card:
            return await self._run_verb(context, verb, data)

        return _card_response(await self._guarded(context, verb, execute))

    async def _search(self, context: TurnContext) -> InvokeResponse:
        value = _dict(context.activity.value)
        query = str(value.get("queryText") or "")[:100]
        dataset = str(value.get("dataset") or "")
        options = _dict(value.get("queryOptions"))
        top = options.get("top")
        top = top if isinstance(top, int) else MAX_SEARCH_RESULTS
        limit = max(1, min(MAX_SEARCH_RESULTS, top))
        results: list[tuple[str, str]] = []
        # No stored value holds a NUL (PostgreSQL cannot store one): such a query finds nothing.
        admin = None if "\x00" in query else (await self._identify(context))[0]
        if admin is not None:
            data = _dict(value.get("data"))
            turn = await self._turn(context, admin, data)
            results = await self.router.run_search(dataset, turn, query, limit)
        return _search_response(results)

    async def on_members_added_activity(
        self, members_added: list[ChannelAccount], turn_context: TurnContext
    ) -> None:
        """Welcome when the bot itself is added to a chat or a team."""
        bot_id = turn_context.activity.recipient.id if turn_context.activity.recipient else None
        if any(member.id == bot_id for member in members_added):
            await self._welcome(turn_context)

    async def on_installation_update_add(self, turn_context: TurnContext) -> None:
        """Welcome on install (Teams may also announce it as members added: once is enough)."""
        await self._welcome(turn_context)

    async def _welcome(self, context: TurnContext) -> None:
        await self._remember_conversation(context)
        conversation = context.activity.conversation.id if context.activity.conversation else ""
        claim = await self.directory.ledger.claim(f"welcome|{conversation}")
        if not claim.first:
            return

        async def welcome() -> Card:
            admin, tenant_known = await self._identify(context)
            if admin is None:
                return unknown_admin_card(tenant_known)
            return await self._home(await self._turn(context, admin, {}), welcome=True)

        card = await self._safely(context, welcome)
        await context.send_activity(MessageFactory.attachment(CardFactory.adaptive_card(card)))


def failure_card(context: TurnContext, error: Exception) -> Card:
    """The card for a turn that failed: the outage card while the database cannot be reached
    (a warning: it is not a bug), otherwise the apology with the reference to quote."""
    reference = reference_id(context)
    if is_unreachable(error):
        logger.warning(
            "The database cannot be reached (reference %s): %s", reference, type(error).__name__
        )
        return outage_card()
    logger.exception("A turn failed (reference %s)", reference, exc_info=error)
    return apology_card(reference)


def _card_response(card: Card) -> InvokeResponse:
    return InvokeResponse(
        status=int(HTTPStatus.OK), body={"statusCode": 200, "type": CARD_RESPONSE, "value": card}
    )


def _search_response(results: list[tuple[str, str]]) -> InvokeResponse:
    return InvokeResponse(
        status=int(HTTPStatus.OK),
        body={
            "statusCode": 200,
            "type": SEARCH_RESPONSE,
            "value": {"results": [{"title": t, "value": v} for t, v in results]},
        },
    )


def _answer(context: TurnContext, response: InvokeResponse) -> InvokeResponse:
    """Hand the invoke response straight to the adapter: sent as an activity, botbuilder
    would deep-copy the whole card first, the costliest step of a turn."""
    context.turn_state[TurnContext._INVOKE_RESPONSE_KEY] = Activity(
        type=ActivityTypes.invoke_response, value=response
    )
    return response


def command_text(activity: Activity) -> str:
    """What the admin typed, without the @mention of the bot a channel message starts with.

    Done here rather than with botbuilder's helper, which reads a mention's name as a regular
    expression (a name with a bracket breaks it) and fails on a message without text.
    """
    text = activity.text if isinstance(activity.text, str) else ""
    bot_id = activity.recipient.id if activity.recipient else None
    for entity in activity.entities or []:
        properties = getattr(entity, "additional_properties", None) or {}
        mentioned = properties.get("mentioned")
        marker = properties.get("text")
        if (
            entity.type == "mention"
            and isinstance(mentioned, dict)
            and mentioned.get("id") == bot_id
            and isinstance(marker, str)
            and marker
        ):
            text = text.replace(marker, "")
    return text


def _reference_fingerprint(activity: Activity) -> tuple[Any, ...]:
    """Every field of an activity that its conversation reference keeps."""
    people = [
        (account.id, account.name, account.aad_object_id, account.role) if account else None
        for account in (activity.from_property, activity.recipient)
    ]
    conversation = activity.conversation
    return (
        activity.service_url,
        activity.channel_id,
        activity.locale,
        *people,
        conversation.id,
        conversation.name,
        conversation.conversation_type,
        conversation.tenant_id,
        conversation.is_group,
    )


def enterprise_id(value: Any) -> int | None:
    """The enterprise id a card names, if it is one the database can hold."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    return database_id(str(value))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _tenant_id(activity: Activity) -> str:
    channel_data = _dict(activity.channel_data)
    tenant = _dict(channel_data.get("tenant"))
    return str(tenant.get("id") or "").strip().lower()


def delivery_key(activity: Activity) -> str | None:
    """The key the ledger knows an activity by: its tenant, conversation and id."""
    if not activity.id or not activity.conversation:
        return None
    return f"{_tenant_id(activity)}|{activity.conversation.id}|{activity.id}"

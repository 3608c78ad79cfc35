"""What an inbound activity must look like before any of it is trusted: a bounded body, bounded
JSON nesting, and every field the bot reads of the right type and length.

Anything else is answered 400 here, before a turn starts: no malformed activity reaches the
handlers, the database or botbuilder's own code (which assumes these fields exist).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from botbuilder.schema import Activity
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

# aiohttp refuses larger bodies with 413 before they are read. A Teams message is at most about
# 28 KB and a card's submitted inputs far less: a megabyte is generous.
MAX_BODY_BYTES = 1024 * 1024
# Teams activities nest a handful of levels (value.action.data.<input>); a card's data holds
# plain values. Deeper JSON is no activity, and would exhaust the parser's recursion.
MAX_JSON_DEPTH = 32
# Entra object ids and tenant ids are GUIDs (36 characters); the database keeps 64.
MAX_ENTRA_ID = 64
MAX_ACCOUNT_ID = 256
MAX_NAME = 512
MAX_CONVERSATION_ID = 1024
MAX_ACTIVITY_ID = 512
MAX_URL = 2048


class MalformedActivityError(ValueError):
    """The body is not an activity the bot can handle; the message says why (no secrets)."""


def _no_nul(value: str) -> str:
    # PostgreSQL cannot store NUL in text, and no identifier or name from Teams has one.
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    return value


EntraId = Annotated[str, StringConstraints(max_length=MAX_ENTRA_ID), AfterValidator(_no_nul)]
AccountId = Annotated[str, StringConstraints(max_length=MAX_ACCOUNT_ID), AfterValidator(_no_nul)]
Name = Annotated[str, StringConstraints(max_length=MAX_NAME), AfterValidator(_no_nul)]
Kind = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME), AfterValidator(_no_nul)]
# Conversation and activity ids become part of the Bot Connector's URLs: printable ASCII only.
_URL_SAFE = r"^[\x21-\x7e]*$"
ConversationId = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_CONVERSATION_ID, pattern=_URL_SAFE)
]
ActivityId = Annotated[str, StringConstraints(max_length=MAX_ACTIVITY_ID, pattern=_URL_SAFE)]
Url = Annotated[str, StringConstraints(min_length=1, max_length=MAX_URL), AfterValidator(_no_nul)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True)


class Account(_Strict):
    """A sender, recipient or added member."""

    id: AccountId
    name: Name | None = None
    aad_object_id: EntraId | None = Field(default=None, alias="aadObjectId")
    role: Name | None = None


class Conversation(_Strict):
    """The conversation the activity belongs to: its id keys references and the ledger."""

    id: ConversationId
    name: Name | None = None
    conversation_type: Name | None = Field(default=None, alias="conversationType")
    tenant_id: EntraId | None = Field(default=None, alias="tenantId")
    is_group: bool | None = Field(default=None, alias="isGroup")


class Tenant(_Strict):
    """The enterprise, as Teams names it."""

    id: EntraId | None = None


class ChannelData(_Strict):
    """Teams' channel data: the bot reads only the tenant."""

    tenant: Tenant | None = None


class Entity(_Strict):
    """An entity; a mention must say whom it mentions."""

    type: Kind
    mentioned: Account | None = None
    text: Name | None = None

    @model_validator(mode="after")
    def _mention_names_someone(self) -> Entity:
        if self.type == "mention" and self.mentioned is None:
            raise ValueError("a mention without the account it mentions")
        return self


class InboundActivity(_Strict):
    """The fields of an activity the bot reads, each of the type and length it expects."""

    type: Kind
    id: ActivityId | None = None
    service_url: Url = Field(alias="serviceUrl")
    channel_id: Name | None = Field(default=None, alias="channelId")
    from_: Account = Field(alias="from")
    recipient: Account
    conversation: Conversation
    channel_data: ChannelData | None = Field(default=None, alias="channelData")
    name: Name | None = None
    text: str | None = None
    locale: Name | None = None
    reply_to_id: ActivityId | None = Field(default=None, alias="replyToId")
    entities: list[Entity] | None = None
    members_added: list[Account] | None = Field(default=None, alias="membersAdded")
    members_removed: list[Account] | None = Field(default=None, alias="membersRemoved")


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether `value` nests lists and objects deeper than `limit` levels."""
    level: list[Any] = [value]
    depth = 0
    while level:
        containers = [item for item in level if isinstance(item, dict | list)]
        if not containers:
            return False
        depth += 1
        if depth > limit:
            return True
        level = [
            child
            for container in containers
            for child in (container.values() if isinstance(container, dict) else container)
        ]
    return False


def parse_activity(body: bytes) -> Activity:
    """The activity in `body`, or MalformedActivityError saying what is wrong with it."""
    try:
        # The standard library keeps integers of any size exact (orjson would make 10**30 a
        # float): a card's typed values reach the handlers as sent.
        payload = json.loads(body)
    except RecursionError:
        raise MalformedActivityError("body nests too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise MalformedActivityError("body is not JSON") from None
    if not isinstance(payload, dict):
        raise MalformedActivityError("body is not an activity")
    if json_depth_exceeds(payload, MAX_JSON_DEPTH):
        raise MalformedActivityError("body nests too deeply")
    try:
        InboundActivity.model_validate(payload)
    except ValidationError as error:
        fields = sorted({".".join(str(part) for part in e["loc"]) for e in error.errors()})
        raise MalformedActivityError("activity is malformed: " + ", ".join(fields[:5])) from None
    try:
        return Activity().deserialize(payload)
    except Exception:
        raise MalformedActivityError("body is not an activity") from None

"""Teams-shaped inbound activities, as JSON dicts ready to POST to /api/messages.

Every activity has ``channelId: msteams``, a ``serviceUrl`` (the fake connector),
``channelData.tenant.id``, ``from.aadObjectId`` and a fresh id; conversations are
personal (1:1 chat) or a team channel.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

ConversationKind = Literal["personal", "channel"]

DEFAULT_TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
DEFAULT_TEAM_ID = "19:team-general@thread.tacv2"
DEFAULT_CHANNEL_ID = "19:provisioning@thread.tacv2"

_sequence = itertools.count(1)


def unique_suffix() -> str:
    """Return a short id fragment unique within the test run."""
    return f"{next(_sequence):06d}{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class TeamsUser:
    """A person in Teams: their Entra object id is what Switchboard keys admins on."""

    aad_object_id: str
    name: str = "Adele Vance"

    @property
    def teams_id(self) -> str:
        """The Teams user id (``29:...``) derived from the object id."""
        return f"29:1{self.aad_object_id.replace('-', '')}"

    def account(self) -> dict[str, Any]:
        """The ``from`` / member account of this user."""
        return {"id": self.teams_id, "name": self.name, "aadObjectId": self.aad_object_id}

    @classmethod
    def random(cls, name: str = "Adele Vance") -> TeamsUser:
        """A user with a fresh object id."""
        return cls(str(uuid.uuid4()), name)


DEFAULT_USER = TeamsUser("a1b2c3d4-0000-4000-8000-00000000ad01", "Adele Vance")


@dataclass(frozen=True)
class TeamsActivities:
    """Builds activities from ``user`` in ``tenant_id`` to the bot ``bot_app_id``.

    ``with_user`` / ``with_tenant`` return a copy acting as someone else.
    """

    service_url: str
    bot_app_id: str
    tenant_id: str = DEFAULT_TENANT_ID
    user: TeamsUser = DEFAULT_USER
    bot_name: str = "Switchboard"
    locale: str = "en-US"
    team_id: str = DEFAULT_TEAM_ID
    channel_id: str = DEFAULT_CHANNEL_ID
    _personal_conversation_ids: dict[str, str] = field(default_factory=dict, compare=False)

    def with_user(self, user: TeamsUser) -> TeamsActivities:
        """Return a builder acting as ``user``."""
        return replace(self, user=user)

    def with_tenant(self, tenant_id: str) -> TeamsActivities:
        """Return a builder acting in another tenant (enterprise)."""
        return replace(self, tenant_id=tenant_id, _personal_conversation_ids={})

    @property
    def bot_account(self) -> dict[str, Any]:
        """The bot's account (``28:<app id>``) as Teams addresses it."""
        return {"id": f"28:{self.bot_app_id or 'switchboard-local'}", "name": self.bot_name}

    def personal_conversation(self) -> dict[str, Any]:
        """The 1:1 chat between the user and the bot (stable per user)."""
        conversation_id = self._personal_conversation_ids.setdefault(
            self.user.aad_object_id, f"a:1personal{unique_suffix()}"
        )
        return {
            "conversationType": "personal",
            "id": conversation_id,
            "tenantId": self.tenant_id,
        }

    def channel_conversation(self, thread_id: str | None = None) -> dict[str, Any]:
        """A thread in the team channel (a new thread unless ``thread_id`` is given)."""
        root = thread_id or str(next(_sequence) + 1_700_000_000_000)
        return {
            "isGroup": True,
            "conversationType": "channel",
            "id": f"{self.channel_id};messageid={root}",
            "name": "Provisioning",
            "tenantId": self.tenant_id,
        }

    def channel_data(self, conversation: ConversationKind) -> dict[str, Any]:
        """The Teams ``channelData`` for a conversation of that kind."""
        data: dict[str, Any] = {"tenant": {"id": self.tenant_id}}
        if conversation == "channel":
            data.update(
                teamsTeamId=self.team_id,
                teamsChannelId=self.channel_id,
                team={"id": self.team_id, "name": "Telephony"},
                channel={"id": self.channel_id, "name": "Provisioning"},
            )
        return data

    def base(
        self, activity_type: str, conversation: ConversationKind = "personal"
    ) -> dict[str, Any]:
        """The fields every inbound activity shares."""
        now = datetime.now(UTC)
        return {
            "type": activity_type,
            "id": f"1{unique_suffix()}",
            "timestamp": now.isoformat().replace("+00:00", "Z"),
            "localTimestamp": now.isoformat(),
            "serviceUrl": self.service_url,
            "channelId": "msteams",
            "from": self.user.account(),
            "conversation": (
                self.personal_conversation()
                if conversation == "personal"
                else self.channel_conversation()
            ),
            "recipient": self.bot_account,
            "locale": self.locale,
            "channelData": self.channel_data(conversation),
            "entities": [
                {
                    "type": "clientInfo",
                    "locale": self.locale,
                    "country": "US",
                    "platform": "Web",
                    "timezone": "Europe/London",
                }
            ],
        }

    def message(self, text: str, *, conversation: ConversationKind = "personal") -> dict[str, Any]:
        """A text message from the user."""
        activity = self.base("message", conversation)
        if conversation == "channel":
            # In a channel the bot only hears messages that @mention it.
            bot = self.bot_account
            mention = f"<at>{bot['name']}</at>"
            activity["text"] = f"{mention} {text}"
            activity["entities"].append({"type": "mention", "mentioned": bot, "text": mention})
        else:
            activity["text"] = text
        activity["textFormat"] = "plain"
        return activity

    def members_added(
        self,
        members: list[TeamsUser] | None = None,
        *,
        include_bot: bool = True,
        conversation: ConversationKind = "personal",
    ) -> dict[str, Any]:
        """A ``conversationUpdate`` adding ``members`` (and, by default, the bot)."""
        activity = self.base("conversationUpdate", conversation)
        added = [member.account() for member in members or []]
        if include_bot:
            added.append(self.bot_account)
        activity["membersAdded"] = added
        activity["channelData"]["eventType"] = (
            "teamMemberAdded" if conversation == "channel" else "membersAdded"
        )
        return activity

    def installation_added(self, *, conversation: ConversationKind = "personal") -> dict[str, Any]:
        """An ``installationUpdate`` for the app being installed."""
        activity = self.base("installationUpdate", conversation)
        activity["action"] = "add"
        activity["channelData"]["source"] = {"name": "message"}
        return activity

    def card_action(
        self,
        verb: str,
        data: dict[str, Any] | None = None,
        *,
        conversation: ConversationKind = "personal",
        reply_to_id: str | None = None,
    ) -> dict[str, Any]:
        """An ``adaptiveCard/action`` invoke: the user pressed an ``Action.Execute``."""
        activity = self.base("invoke", conversation)
        activity["name"] = "adaptiveCard/action"
        activity["value"] = {
            "action": {"type": "Action.Execute", "verb": verb, "data": dict(data or {})},
            "trigger": "manual",
        }
        if reply_to_id is not None:
            activity["replyToId"] = reply_to_id
        return activity

    def search(
        self,
        query_text: str,
        dataset: str,
        *,
        skip: int = 0,
        top: int = 15,
        conversation: ConversationKind = "personal",
    ) -> dict[str, Any]:
        """An ``application/search`` invoke: Data.Query type-ahead in an Input.ChoiceSet."""
        activity = self.base("invoke", conversation)
        activity["name"] = "application/search"
        activity["value"] = {
            "queryText": query_text,
            "queryOptions": {"skip": skip, "top": top},
            "dataset": dataset,
        }
        return activity

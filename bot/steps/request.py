"""What the activity asks for: a card action and its data, a typed command, a type-ahead
search or a welcome. The activity itself was parsed and validated before the turn began
(bot/inbound.py): this step only reads it."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from botbuilder.schema import Activity, ActivityTypes

from bot.steps import Next, SearchRequest, TurnState, as_dict
from cards.actions import Verb

ACTION_INVOKE = "adaptiveCard/action"
SEARCH_INVOKE = "application/search"
FILE_CONSENT_INVOKE = "fileConsent/invoke"
FILE_DOWNLOAD_INFO = "application/vnd.microsoft.teams.file.download.info"
MAX_SEARCH_RESULTS = 15
MAX_QUERY = 100

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
        lambda m: {"query": m.group("q") or "", "then": "callerid"},
    ),
    (
        re.compile(r"^(?:unlicensed|unlicensed users|licences|licenses|enable)$"),
        Verb.UNLICENSED_OPEN,
        lambda m: {},
    ),
    (re.compile(r"^(?:sync|sync status|status|sync teams users)$"), Verb.SYNC_OPEN, lambda m: {}),
    (re.compile(r"^(?:export|export users|export directory)$"), Verb.BULK_EXPORT, lambda m: {}),
    (
        re.compile(r"^(?:template|blank template|export template)$"),
        Verb.BULK_EXPORT,
        lambda m: {"template": True},
    ),
    (re.compile(r"^(?:import|import users|bulk|bulk import)$"), Verb.BULK_IMPORT_OPEN, lambda m: {}),
]


def parse_command(text: str) -> tuple[Verb, dict[str, Any]] | None:
    """The verb a typed message asks for, or None when it is not a command."""
    cleaned = " ".join(text.replace("\x00", "").strip().lower().split())
    for pattern, verb, data in _COMMANDS:
        match = pattern.match(cleaned)
        if match:
            return verb, data(match)
    return None


def _not_understood(typed: str) -> tuple[Verb, dict[str, Any]]:
    """A message that is no command: the closest commands for something typed, home for an
    empty message (an attachment alone, a bare mention)."""
    text = " ".join(typed.replace("\x00", "").split())
    return (Verb.COMMAND_UNKNOWN, {"text": text}) if text else (Verb.HOME, {})


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


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def attached_file(activity: Activity) -> dict[str, Any] | None:
    """The file a message carries (Teams' download info: where to fetch it, its name and
    type), as the upload verb's data; None when it carries none."""
    for attachment in activity.attachments or []:
        if getattr(attachment, "content_type", None) == FILE_DOWNLOAD_INFO:
            content = as_dict(getattr(attachment, "content", None))
            return {
                "url": _text(content.get("downloadUrl")),
                "name": _text(getattr(attachment, "name", None)),
                "file_type": _text(content.get("fileType")),
            }
    return None


def file_consent(value: dict[str, Any]) -> dict[str, Any]:
    """The answer on a file consent card: accept or decline, the context the card carried,
    and where Teams lets the bot upload the file."""
    context = as_dict(value.get("context"))
    upload = as_dict(value.get("uploadInfo"))
    return {
        "ent": context.get("ent"),
        "file": _text(context.get("file")),
        "action": _text(value.get("action")),
        "upload_url": _text(upload.get("uploadUrl")),
        "content_url": _text(upload.get("contentUrl")),
        "unique_id": _text(upload.get("uniqueId")),
        "name": _text(upload.get("name")),
        "file_type": _text(upload.get("fileType")),
    }


def _is_welcome(activity: Activity) -> bool:
    if activity.type == ActivityTypes.installation_update:
        return activity.action in ("add", "add-upgrade")
    if activity.type == ActivityTypes.conversation_update and activity.members_added:
        bot_id = activity.recipient.id if activity.recipient else None
        return any(member.id == bot_id for member in activity.members_added)
    return False


def _search(value: dict[str, Any]) -> SearchRequest:
    top = as_dict(value.get("queryOptions")).get("top")
    top = top if isinstance(top, int) and not isinstance(top, bool) else MAX_SEARCH_RESULTS
    return SearchRequest(
        query=str(value.get("queryText") or "")[:MAX_QUERY],
        dataset=str(value.get("dataset") or ""),
        limit=max(1, min(MAX_SEARCH_RESULTS, top)),
    )


async def read(turn: TurnState, next: Next) -> None:
    """Name the kind of turn, its verb and data; turns of no kind of ours end here."""
    activity = turn.activity
    if activity.type == ActivityTypes.message:
        value = activity.value if isinstance(activity.value, dict) else None
        upload = attached_file(activity)
        if value is not None:  # an Action.Submit card arrives as a message with a value
            turn.kind, turn.verb, turn.data = "action", str(value.get("verb") or ""), value
        elif upload is not None:  # a file attached in the chat: a spreadsheet to import
            turn.kind, turn.verb, turn.data = "command", Verb.BULK_UPLOAD.value, upload
        else:
            typed = command_text(activity)
            verb, data = parse_command(typed) or _not_understood(typed)
            turn.kind, turn.verb, turn.data = "command", verb.value, data
    elif activity.type == ActivityTypes.invoke and activity.name == ACTION_INVOKE:
        action = as_dict(as_dict(activity.value).get("action"))
        turn.kind, turn.verb = "action", str(action.get("verb") or "")
        turn.data = as_dict(action.get("data"))
    elif activity.type == ActivityTypes.invoke and activity.name == FILE_CONSENT_INVOKE:
        turn.kind, turn.verb = "action", Verb.BULK_FILE_CONSENT.value
        turn.data = file_consent(as_dict(activity.value))
    elif activity.type == ActivityTypes.invoke and activity.name == SEARCH_INVOKE:
        value = as_dict(activity.value)
        turn.kind, turn.search = "search", _search(value)
        turn.data, turn.results = as_dict(value.get("data")), []
        if "\x00" in turn.search.query:
            return  # no stored value holds a NUL (PostgreSQL cannot store one): nothing found
    elif _is_welcome(activity):
        turn.kind = "welcome"
    else:
        return
    await next()

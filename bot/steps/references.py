"""Conversation references: where to reach this admin later (sync finished, overdue), saved
from every action, command and welcome; unchanged ones are not written again."""

from __future__ import annotations

from typing import Any

from botbuilder.core import TurnContext
from botbuilder.schema import Activity

from bot.steps import Next, TurnState, tenant_id


def _fingerprint(activity: Activity) -> tuple[Any, ...]:
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


async def remember(turn: TurnState, next: Next) -> None:
    """Save the conversation reference when it is new or changed, then go on."""
    if turn.kind in ("action", "command", "welcome"):
        await _save(turn)
    await next()


async def _save(turn: TurnState) -> None:
    activity = turn.activity
    tenant = tenant_id(activity)
    person = activity.from_property.aad_object_id if activity.from_property else None
    if not tenant or not person or not activity.conversation:
        return
    known = turn.references
    key = (tenant, person, activity.conversation.id)
    fingerprint = _fingerprint(activity)
    if known.saved.get(key) == fingerprint:
        return
    reference = TurnContext.get_conversation_reference(activity).serialize()
    reference.pop("activityId", None)  # proactive messages start new threads
    await turn.services.conversations.save(
        tenant_id=tenant,
        aad_object_id=person,
        conversation_id=activity.conversation.id,
        is_personal=(activity.conversation.conversation_type or "personal") == "personal",
        reference=reference,
    )
    if len(known.saved) > known.limit:
        known.saved.clear()
    known.saved[key] = fingerprint

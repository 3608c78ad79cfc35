"""Proactive messages: "sync finished" and "sync overdue" cards, sent through the Bot Connector.

Notices are rows the sync engine writes in the same transaction as the change that calls for
them, so none is lost to a restart. Each goes out with `continue_conversation` over the stored
conversation reference; the connector's 429, 412, 502 and 504 are retried with backoff,
honouring `Retry-After`; a recipient already reached is not messaged again on a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from botbuilder.core import CardFactory, MessageFactory, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import ChannelAccount, ConversationAccount, ConversationReference

from cards.common import Card
from cards.notifications import sync_finished_card, sync_overdue_card
from services.config import SyncSettings
from services.container import Services
from services.domain import NoticeKind
from services.models import utcnow
from services.provisioning import Notice, SyncNotices
from services.retry import backoff_seconds, run_passes

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({0, 412, 429, 502, 504})
MAX_RETRY_AFTER_SECONDS = 60.0


class DeliveryFailed(Exception):
    """The Bot Connector did not take the message."""

    def __init__(self, status: int) -> None:
        super().__init__(f"Bot Connector answered {status or 'nothing'}")
        self.status = status

    @property
    def transient(self) -> bool:
        """Whether the connector may take it later (throttling, outage, lost connection)."""
        return self.status in RETRYABLE_STATUSES


def card_for(notice: Notice) -> Card:
    """The card a notice shows."""
    if notice.kind is NoticeKind.SYNC_OVERDUE:
        return sync_overdue_card(notice.report, utcnow())
    return sync_finished_card(notice.report)


def _status_of(error: BaseException) -> tuple[int, float | None]:
    """The HTTP status and Retry-After of a failed connector call (0 when there was none)."""
    response: Any = getattr(error, "response", None)
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    headers = getattr(response, "headers", None) or {}
    retry_after: float | None = None
    raw = headers.get("Retry-After") if hasattr(headers, "get") else None
    if raw:
        with contextlib.suppress(ValueError):
            retry_after = min(MAX_RETRY_AFTER_SECONDS, max(0.0, float(raw)))
    return (int(status) if isinstance(status, int) else 0), retry_after


class ProactiveNotifier:
    """Sends the sync engine's notices to the people (and channel) they concern."""

    def __init__(
        self,
        adapter: CloudAdapter,
        app_id: str,
        services: Services,
        settings: SyncSettings,
        *,
        notices: SyncNotices | None = None,
    ) -> None:
        self.adapter = adapter
        self.app_id = app_id
        self.services = services
        self.settings = settings
        self.notices = notices or SyncNotices(services.db)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    async def start(self) -> None:
        """Start sending in the background."""
        self._task = asyncio.create_task(self._run(), name="proactive-notifier")

    async def stop(self) -> None:
        """Stop sending (notices not yet sent stay queued)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        """Send what is due now rather than at the next poll."""
        self._wake.set()

    async def _run(self) -> None:
        await run_passes(
            self._pass,
            wake=self._wake,
            interval=self.settings.notifier_poll_seconds,
            logger=logger,
            failure="Sending sync notices failed; will try again",
        )

    async def _pass(self) -> None:
        await self.deliver_due()

    async def deliver_due(self) -> int:
        """Send every notice due now; returns how many were handled."""
        due = await self.notices.due()
        for notice in due:
            try:
                await self._deliver(notice)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Notice %s could not be sent; will try again", notice.id)
                await self.notices.retry(
                    notice.id, "unexpected error", self._backoff(notice.attempts)
                )
        return len(due)

    async def _deliver(self, notice: Notice) -> None:
        card = card_for(notice)
        recipients = await self._recipients(notice)
        if not recipients:
            logger.warning(
                "Nobody to tell about sync %s (%s): no stored conversation",
                notice.report.run.id,
                notice.kind.value,
            )
            await self.notices.done(notice.id, error="no conversation to send to")
            return
        waiting: list[int] = []
        refused: list[int] = []
        for key, reference in recipients:
            if key in notice.delivered_to or f"refused:{key}" in notice.delivered_to:
                continue
            try:
                await self._send(reference, card)
            except DeliveryFailed as failure:
                if failure.transient:
                    waiting.append(failure.status)
                    continue
                refused.append(failure.status)
                logger.warning(
                    "The Bot Connector refused notice %s for one recipient (%s)",
                    notice.id,
                    failure.status,
                )
                await self.notices.delivered(notice.id, f"refused:{key}")
                continue
            self.sent += 1
            await self.notices.delivered(notice.id, key)
        if waiting and notice.attempts < self.settings.notifier_max_attempts:
            await self.notices.retry(
                notice.id,
                f"Bot Connector busy ({', '.join(map(str, waiting))})",
                self._backoff(notice.attempts),
            )
            return
        problems = waiting + refused
        await self.notices.done(
            notice.id,
            error=f"not delivered ({', '.join(map(str, problems))})" if problems else None,
        )

    async def _recipients(self, notice: Notice) -> list[tuple[str, ConversationReference]]:
        found: list[tuple[str, ConversationReference]] = []
        conversations = self.services.conversations
        if notice.kind is NoticeKind.SYNC_OVERDUE:
            for stored in await conversations.service_providers():
                found.append((f"personal:{stored.aad_object_id}", _reference(stored.reference)))
        else:
            run = notice.report.run
            if run.requested_by:
                stored_personal = await conversations.personal(
                    notice.report.enterprise.tenant_id, run.requested_by
                )
                if stored_personal is not None:
                    found.append(
                        (f"personal:{run.requested_by}", _reference(stored_personal.reference))
                    )
        channel = self.settings.notification_channel_id
        if channel:
            stored_channel = await conversations.by_conversation(channel)
            found.append(
                (
                    f"channel:{channel}",
                    _reference(stored_channel.reference)
                    if stored_channel
                    else self._channel_reference(channel),
                )
            )
        return found

    def _channel_reference(self, channel_id: str) -> ConversationReference:
        return ConversationReference(
            channel_id="msteams",
            service_url=self.settings.notification_service_url,
            conversation=ConversationAccount(
                id=channel_id, is_group=True, conversation_type="channel"
            ),
            bot=ChannelAccount(id=f"28:{self.app_id}" if self.app_id else "switchboard"),
        )

    async def _send(self, reference: ConversationReference, card: Card) -> None:
        """Post one card, retrying what the connector asks to retry."""
        attempts = self.settings.notifier_max_attempts
        for attempt in range(1, attempts + 1):
            status, retry_after = await self._send_once(reference, card)
            if status is None:
                return
            if status not in RETRYABLE_STATUSES or attempt == attempts:
                raise DeliveryFailed(status)
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            logger.info(
                "Bot Connector answered %s; retry %d in %.2fs", status or "nothing", attempt, delay
            )
            await asyncio.sleep(delay)

    async def _send_once(
        self, reference: ConversationReference, card: Card
    ) -> tuple[int | None, float | None]:
        failures: list[BaseException] = []

        async def post(turn_context: TurnContext) -> None:
            # Caught here: the adapter's turn error handler would answer with an apology.
            try:
                await turn_context.send_activity(
                    MessageFactory.attachment(CardFactory.adaptive_card(card))
                )
            except Exception as error:
                failures.append(error)

        try:
            await self.adapter.continue_conversation(reference, post, bot_app_id=self.app_id)
        except Exception as error:
            failures.append(error)
        if not failures:
            return None, None
        return _status_of(failures[0])

    def _backoff(self, attempt: int) -> float:
        return backoff_seconds(
            attempt, base=self.settings.notifier_backoff_seconds, cap=MAX_RETRY_AFTER_SECONDS
        )


def _reference(serialized: dict[str, Any]) -> ConversationReference:
    reference: ConversationReference = ConversationReference().deserialize(serialized)
    return reference

"""Proactive messages: "sync finished", "sync overdue" and "consent changed" cards, sent
through the Bot Connector.

Notices are rows written in the same transaction as the change that calls for them, so none is
lost to a restart, and claimed from a queue, so with several workers each goes out once. Each
goes out with `continue_conversation` over the stored conversation reference; the connector's
429, 412, 502 and 504 are retried with backoff, honouring `Retry-After`; a recipient already
reached is not messaged again on a retry.

Every finished sync is told: a manual one to the Global Admin who started it; an automatic one
to the admins whose changes it carried, or, when none of them can be reached, to the
enterprise's admins the bot can reach; and to the team channel when one is configured. The sync
card the Global Admin pressed is updated in place with the run's outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from botbuilder.core import CardFactory, MessageFactory, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import ChannelAccount, ConversationAccount, ConversationReference

from bot.features.sync import requester_names
from cards.common import Card
from cards.notifications import consent_changed_card, sync_finished_card, sync_overdue_card
from cards.sync import build_sync_status_card
from services.config import SyncSettings
from services.container import Services
from services.db import is_unreachable
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
    if notice.consent is not None:
        return consent_changed_card(notice.consent)
    if notice.report is None:
        raise LookupError(f"notice {notice.id} has nothing to show")
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
            expected=is_unreachable,
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
        await self._update_pressed_card(notice)
        recipients = await self._recipients(notice)
        if not recipients:
            logger.warning(
                "Nobody to tell about %s of %s: no stored conversation",
                notice.kind.value,
                notice.enterprise.name,
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
        conversations = self.services.conversations
        if notice.kind is not NoticeKind.SYNC_FINISHED:
            # Overdue syncs and consent changes are the service provider's business.
            found = [
                (f"personal:{stored.aad_object_id}", _reference(stored.reference))
                for stored in await conversations.service_providers()
            ]
        else:
            found = await self._admins_to_tell(notice)
        channel = self.settings.notification_channel_id
        if channel and notice.kind is not NoticeKind.CONSENT_CHANGED:
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

    async def _admins_to_tell(self, notice: Notice) -> list[tuple[str, ConversationReference]]:
        """Who hears that a sync finished: whoever started it; for an automatic run, the admins
        whose changes it carried, else the enterprise's admins the bot can reach."""
        if notice.report is None:
            return []
        conversations = self.services.conversations
        run, enterprise = notice.report.run, notice.report.enterprise
        people = [run.requested_by] if run.requested_by else list(notice.authors)
        found: list[tuple[str, ConversationReference]] = []
        for person in people:
            stored = await conversations.personal(enterprise.tenant_id, person)
            if stored is not None:
                found.append((f"personal:{person}", _reference(stored.reference)))
        if not found and run.is_automatic:
            for stored in await conversations.enterprise_admins(
                enterprise.tenant_id, enterprise.id
            ):
                found.append((f"personal:{stored.aad_object_id}", _reference(stored.reference)))
        return found

    async def _update_pressed_card(self, notice: Notice) -> None:
        """Show the run's outcome on the sync card its Global Admin pressed, in place (once)."""
        place, report = notice.card, notice.report
        if place is None or report is None or notice.kind is not NoticeKind.SYNC_FINISHED:
            return
        key = f"card:{place.activity_id}"
        if key in notice.delivered_to:
            return
        stored = await self.services.conversations.by_conversation(place.conversation_id)
        if stored is None:
            return
        reference = _reference(stored.reference)
        viewer = reference.user.id if reference.user is not None else ""
        overview = await self.services.syncs.overview(report.enterprise.id)
        card = build_sync_status_card(
            overview,
            now=utcnow(),
            is_global_admin=True,  # the card was the Global Admin's, who pressed its button
            requester_names=await requester_names(overview, self.services.enterprises),
            viewers=[viewer] if viewer else [],
        )
        try:
            await self._send(reference, card, replace=place.activity_id)
        except DeliveryFailed as failure:
            if failure.transient:
                raise  # the whole notice is tried again later
            logger.warning(
                "The sync card of run %s could not be updated (%s)", report.run.id, failure.status
            )
        await self.notices.delivered(notice.id, key)

    def _channel_reference(self, channel_id: str) -> ConversationReference:
        return ConversationReference(
            channel_id="msteams",
            service_url=self.settings.notification_service_url,
            conversation=ConversationAccount(
                id=channel_id, is_group=True, conversation_type="channel"
            ),
            bot=ChannelAccount(id=f"28:{self.app_id}" if self.app_id else "switchboard"),
        )

    async def _send(
        self, reference: ConversationReference, card: Card, *, replace: str | None = None
    ) -> None:
        """Post one card (or put it in place of the message `replace`), retrying what the
        connector asks to retry."""
        attempts = self.settings.notifier_max_attempts
        for attempt in range(1, attempts + 1):
            status, retry_after = await self._send_once(reference, card, replace)
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
        self, reference: ConversationReference, card: Card, replace: str | None = None
    ) -> tuple[int | None, float | None]:
        failures: list[BaseException] = []

        async def post(turn_context: TurnContext) -> None:
            # Caught here: the adapter's turn error handler would answer with an apology.
            try:
                message = MessageFactory.attachment(CardFactory.adaptive_card(card))
                if replace is None:
                    await turn_context.send_activity(message)
                else:
                    message.id = replace
                    await turn_context.update_activity(message)
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

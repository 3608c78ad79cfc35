"""What the bot shows of a sync: its report, and the proactive notices waiting to go out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.db import Database
from services.domain import NoticeKind, OutboxStatus
from services.enterprises import enterprise_view
from services.journal import AUTHOR
from services.models import (
    Enterprise,
    OutboxItem,
    ProvisioningItem,
    SyncNotice,
    SyncRun,
    User,
    utcnow,
)
from services.provisioning.state import of_run
from services.queue import WorkQueue
from services.sync import CardPlace, card_of, run_view
from services.views import ConsentChange, EnterpriseView, SyncFailure, SyncReport

MAX_REPORTED_FAILURES = 25

# The notices as a queue: a claimed notice stays pending, its lease is its due time, and every
# claim counts as an attempt.
NOTICES = WorkQueue(
    SyncNotice,
    id=SyncNotice.id,
    status=SyncNotice.status,
    due_at=SyncNotice.next_attempt_at,
    attempts=SyncNotice.attempts,
    held=OutboxStatus.PENDING,
)


# --- what the bot shows ----------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """A proactive message to send: what happened (a run's outcome, or a change of the
    enterprise's consent), whom it concerns, whom it reached.

    `authors` are the Entra object ids of the admins whose changes the run carried, and
    `card` the sync card its Global Admin pressed, to update in place.
    """

    id: int
    kind: NoticeKind
    report: SyncReport | None
    delivered_to: frozenset[str]
    attempts: int
    authors: tuple[str, ...] = ()
    card: CardPlace | None = None
    consent: ConsentChange | None = None

    @property
    def enterprise(self) -> EnterpriseView:
        """The enterprise the notice is about."""
        if self.report is not None:
            return self.report.enterprise
        if self.consent is not None:
            return self.consent.enterprise
        raise LookupError(f"notice {self.id} names no enterprise")


async def run_authors(session: AsyncSession, sync_id: int) -> tuple[str, ...]:
    """The admins (Entra object ids) whose changes a run carried, in the order they made them."""
    payloads = await session.execute(
        select(OutboxItem.payload).where(of_run(sync_id)).order_by(OutboxItem.id)
    )
    authors = (str((payload or {}).get(AUTHOR) or "") for (payload,) in payloads)
    return tuple(dict.fromkeys(author for author in authors if author))


async def _notice(session: AsyncSession, row: SyncNotice) -> Notice:
    """A claimed notice row with everything the notifier needs to send it."""
    delivered = frozenset(row.delivered_to or [])
    if row.sync_id is None:
        enterprise = await session.get(Enterprise, row.enterprise_id or 0)
        if enterprise is None:
            raise LookupError(f"no enterprise for notice {row.id}")
        detail = row.detail or {}
        change = ConsentChange(
            enterprise=enterprise_view(enterprise),
            consent=bool(detail.get("consent")),
            by=str(detail.get("by") or "an administrator"),
            at=row.created_at,
        )
        return Notice(row.id, row.kind, None, delivered, row.attempts, consent=change)
    run = await session.get(SyncRun, row.sync_id)
    automatic = run is not None and run.is_automatic
    return Notice(
        id=row.id,
        kind=row.kind,
        report=await sync_report(session, row.sync_id),
        delivered_to=delivered,
        attempts=row.attempts,
        authors=await run_authors(session, row.sync_id) if automatic else (),
        card=card_of(run) if run is not None else None,
    )


async def sync_report(session: AsyncSession, sync_id: int) -> SyncReport:
    """The outcome of a run, as the proactive cards show it."""
    run = await session.get(SyncRun, sync_id)
    if run is None:
        raise LookupError(f"no sync run {sync_id}")
    enterprise = await session.get(Enterprise, run.enterprise_id)
    if enterprise is None:
        raise LookupError(f"no enterprise {run.enterprise_id} for sync run {sync_id}")
    counts: dict[OutboxStatus, int] = dict.fromkeys(OutboxStatus, 0)
    for status, count in await session.execute(
        select(ProvisioningItem.status, func.count())
        .where(ProvisioningItem.sync_id == sync_id)
        .group_by(ProvisioningItem.status)
    ):
        counts[status] = int(count)
    failed_rows = await session.execute(
        select(ProvisioningItem.payload, ProvisioningItem.last_error, User.display_name, User.email)
        .outerjoin(User, User.id == ProvisioningItem.user_id)
        .where(
            ProvisioningItem.sync_id == sync_id,
            ProvisioningItem.status == OutboxStatus.FAILED,
        )
        .order_by(User.display_name, ProvisioningItem.id)
        .limit(MAX_REPORTED_FAILURES)
    )
    failures = [
        SyncFailure(
            display_name=name or str(payload.get("display_name") or payload.get("email") or ""),
            email=email or str(payload.get("email") or ""),
            reason=error or "Microsoft refused the change.",
        )
        for payload, error, name, email in failed_rows
    ]
    return SyncReport(
        run=run_view(run),
        enterprise=enterprise_view(enterprise),
        total=sum(counts.values()),
        provisioned=counts[OutboxStatus.DONE],
        failed=counts[OutboxStatus.FAILED],
        waiting=counts[OutboxStatus.PENDING] + counts[OutboxStatus.IN_PROGRESS],
        failures=failures,
    )


class SyncNotices:
    """The proactive messages waiting to go out, for the bot's notifier to send."""

    def __init__(self, db: Database, *, lease_seconds: float = 60.0) -> None:
        self.db = db
        self.lease_seconds = lease_seconds

    async def due(self, limit: int = 20) -> list[Notice]:
        """Claim the notices due now; another claimant sees them again after the lease."""
        now = utcnow()
        async with self.db.unit_of_work() as uow:
            session = uow.session
            ids = await NOTICES.claim(
                session,
                now,
                self.lease_seconds,
                order_by=(SyncNotice.next_attempt_at, SyncNotice.id),
                limit=limit,
                count_attempt=True,
            )
            claimed = (
                await session.execute(select(SyncNotice).where(SyncNotice.id.in_(ids)))
            ).scalars()
            rows = sorted(claimed, key=lambda row: ids.index(row.id))  # in the order they fell due
            notices = [await _notice(session, row) for row in rows]
            await uow.commit()
            return notices

    async def delivered(self, notice_id: int, recipient: str) -> None:
        """Remember that one recipient has the message, so a retry skips them."""
        async with self.db.unit_of_work() as uow:
            row = await uow.session.get(SyncNotice, notice_id)
            if row is not None and recipient not in (row.delivered_to or []):
                row.delivered_to = [*(row.delivered_to or []), recipient]
                await uow.commit()

    async def done(self, notice_id: int, error: str | None = None) -> None:
        """Every recipient was reached (or cannot be): the notice is finished."""
        async with self.db.unit_of_work() as uow:
            await NOTICES.settle(
                uow.session,
                SyncNotice.id == notice_id,
                OutboxStatus.FAILED if error else OutboxStatus.DONE,
                last_error=error,
                sent_at=utcnow(),
            )
            await uow.commit()

    async def retry(self, notice_id: int, error: str, delay_seconds: float) -> None:
        """Try the recipients not reached yet again later."""
        async with self.db.unit_of_work() as uow:
            await NOTICES.settle(
                uow.session,
                SyncNotice.id == notice_id,
                OutboxStatus.PENDING,
                last_error=error,
                next_attempt_at=utcnow() + timedelta(seconds=delay_seconds),
            )
            await uow.commit()

    async def report(self, sync_id: int) -> SyncReport:
        """The outcome of one run."""
        async with self.db.unit_of_work(readonly=True) as uow:
            return await sync_report(uow.session, sync_id)

"""What the bot shows of a sync: its report, and the proactive notices waiting to go out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.db import Database
from services.enterprises import enterprise_view
from services.models import (
    Enterprise,
    NoticeKind,
    OutboxStatus,
    ProvisioningItem,
    SyncNotice,
    SyncRun,
    User,
    utcnow,
)
from services.sync import run_view
from services.views import EnterpriseView, SyncRunView

MAX_REPORTED_FAILURES = 25


# --- what the bot shows ----------------------------------------------------------------------


@dataclass(frozen=True)
class SyncFailure:
    """One user the sync could not set up, and why."""

    display_name: str
    email: str
    reason: str


@dataclass(frozen=True)
class SyncReport:
    """A sync run's outcome: counts and the failures with their reasons."""

    run: SyncRunView
    enterprise: EnterpriseView
    total: int
    provisioned: int
    failed: int
    waiting: int
    failures: list[SyncFailure] = field(default_factory=list)

    @property
    def duration_seconds(self) -> float | None:
        """How long the run took, once it finished."""
        if self.run.finished_at is None:
            return None
        return max(0.0, (self.run.finished_at - self.run.requested_at).total_seconds())


@dataclass(frozen=True)
class Notice:
    """A proactive message to send: what happened, about which run, whom it reached."""

    id: int
    kind: NoticeKind
    report: SyncReport
    delivered_to: frozenset[str]
    attempts: int


async def sync_report(session: AsyncSession, sync_id: int) -> SyncReport:
    """The outcome of a run, as the proactive cards show it."""
    run = await session.get(SyncRun, sync_id)
    if run is None:
        raise LookupError(f"no sync run {sync_id}")
    enterprise = await session.get(Enterprise, run.enterprise_id)
    assert enterprise is not None
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
            query = (
                select(SyncNotice)
                .where(
                    SyncNotice.status == OutboxStatus.PENDING,
                    SyncNotice.next_attempt_at <= now,
                )
                .order_by(SyncNotice.next_attempt_at, SyncNotice.id)
                .limit(limit)
            )
            if self.db.is_postgres:
                query = query.with_for_update(skip_locked=True)
            rows = list((await session.execute(query)).scalars())
            notices = []
            for row in rows:
                row.attempts += 1
                row.next_attempt_at = now + timedelta(seconds=self.lease_seconds)
                notices.append(
                    Notice(
                        id=row.id,
                        kind=row.kind,
                        report=await sync_report(session, row.sync_id),
                        delivered_to=frozenset(row.delivered_to or []),
                        attempts=row.attempts,
                    )
                )
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
            row = await uow.session.get(SyncNotice, notice_id)
            if row is not None:
                row.status = OutboxStatus.FAILED if error else OutboxStatus.DONE
                row.last_error = error
                row.sent_at = utcnow()
                await uow.commit()

    async def retry(self, notice_id: int, error: str, delay_seconds: float) -> None:
        """Try the recipients not reached yet again later."""
        async with self.db.unit_of_work() as uow:
            row = await uow.session.get(SyncNotice, notice_id)
            if row is not None:
                row.last_error = error
                row.next_attempt_at = utcnow() + timedelta(seconds=delay_seconds)
                await uow.commit()

    async def report(self, sync_id: int) -> SyncReport:
        """The outcome of one run."""
        async with self.db.unit_of_work(readonly=True) as uow:
            return await sync_report(uow.session, sync_id)

"""Sync requests and status: whether a manual "Sync Teams Users" is needed, who may start one,
and what the changes waiting for Microsoft look like."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import func, select

from services import journal
from services.db import Database
from services.domain import AdminRole, ProvisioningStatus
from services.enterprises import enterprise_view, load_enterprise
from services.errors import DomainError, OutsideUnreachableError, PermissionDeniedError
from services.models import OutboxItem, SyncRun, User
from services.provisioning.state import open_run, start_run, waiting_for_microsoft
from services.views import Actor, SyncOverview, SyncRunView, UserSyncState

MAX_LISTED_USERS = 200

# Asks Microsoft whether a person (Entra object id) is a Global Administrator of a tenant.
GlobalAdminCheck = Callable[[str, str], Awaitable[bool]]


@dataclass(frozen=True)
class CardPlace:
    """A card the bot posted: its message id in a conversation, to update it in place."""

    activity_id: str
    conversation_id: str


def card_of(run: SyncRun) -> CardPlace | None:
    """The card the run's Global Admin pressed "Sync Teams Users" on, if it is known."""
    if run.card_activity_id and run.card_conversation_id:
        return CardPlace(run.card_activity_id, run.card_conversation_id)
    return None


def run_view(run: SyncRun) -> SyncRunView:
    """A sync run as a plain value."""
    return SyncRunView(
        id=run.id,
        status=run.status,
        is_first=run.is_first,
        is_automatic=run.is_automatic,
        requested_by=run.requested_by,
        requested_at=run.requested_at,
        expected_by=run.expected_by,
        finished_at=run.finished_at,
    )


class Syncs:
    """Starting a sync and reading its state."""

    def __init__(
        self,
        db: Database,
        first_sync_hours: int,
        later_sync_hours: int,
        *,
        global_admin_check: GlobalAdminCheck | None = None,
    ) -> None:
        self.db = db
        self.first_sync_hours = first_sync_hours
        self.later_sync_hours = later_sync_hours
        # Also asks Microsoft whether whoever starts a sync is the tenant's Global Administrator.
        self.global_admin_check = global_admin_check

    async def _confirm_global_admin(self, actor: Actor, enterprise_id: int) -> None:
        check = self.global_admin_check
        if check is None:
            return
        async with self.db.unit_of_work(readonly=True) as uow:
            tenant_id = (await load_enterprise(uow.session, enterprise_id)).tenant_id
        try:
            confirmed = await check(tenant_id, actor.aad_object_id)
        except DomainError as error:
            if getattr(error, "status", None) == 403:
                # Not a passing outage: this organisation has not granted the permission.
                raise PermissionDeniedError(
                    "Switchboard is not allowed to read this organisation's administrator roles "
                    "in Microsoft (its RoleManagement.Read.Directory and GroupMember.Read.All "
                    "permissions are not granted), so it cannot confirm you are a Global "
                    "Administrator and no sync was started. Ask your service provider."
                ) from None
            if getattr(error, "transient", False):
                # Microsoft is out of reach or failing: an outage, told as one.
                raise OutsideUnreachableError(
                    "Switchboard can't reach Microsoft right now; nothing was changed. "
                    "Try again in a minute."
                ) from error
            raise PermissionDeniedError(
                "Switchboard could not confirm with Microsoft that you are a Global "
                "Administrator of this organisation, so no sync was started. Try again in a moment."
            ) from None
        if not confirmed:
            raise PermissionDeniedError(
                "Microsoft says you are not a Global Administrator of this organisation, neither "
                "yourself nor through a group, so you cannot start “Sync Teams Users”. You can "
                "check the sync status instead."
            )

    async def request(
        self, actor: Actor, enterprise_id: int, *, card: CardPlace | None = None
    ) -> tuple[SyncRunView, bool]:
        """Start a manual sync (Global Admin only); a second request returns the running one.

        `card` is where the card with the pressed button is, for the bot to update it in place
        when the run ends. Returns the run and whether this call started it.
        """
        if actor.role is not AdminRole.GLOBAL_ADMIN or actor.enterprise_id != enterprise_id:
            raise PermissionDeniedError(
                "Only the enterprise's Global Admin can start “Sync Teams Users”. "
                "You can check the sync status instead."
            )
        await self._confirm_global_admin(actor, enterprise_id)
        for _ in range(3):
            async with self.db.unit_of_work() as uow:
                session = uow.session
                enterprise = await load_enterprise(session, enterprise_id)
                running = await open_run(session, enterprise.id)
                if running is not None:
                    return run_view(running), False
                is_first = enterprise.first_sync_completed_at is None
                run = await start_run(
                    session,
                    enterprise.id,
                    is_first=is_first,
                    requested_by=actor.aad_object_id,
                    hours=self.first_sync_hours if is_first else self.later_sync_hours,
                )
                if run is None:
                    continue  # another admin started one at the same moment: show theirs
                if card is not None:
                    run.card_activity_id = card.activity_id[:128]
                    run.card_conversation_id = card.conversation_id[:512]
                journal.audit(
                    session,
                    actor,
                    enterprise.id,
                    "sync.request",
                    f"sync {run.id}",
                    after={"first": is_first},
                )
                view = run_view(run)
                await uow.commit()
                return view, True
        async with self.db.unit_of_work(readonly=True) as uow:
            running = await open_run(uow.session, enterprise_id)
            if running is None:
                raise PermissionDeniedError("The sync could not be started; try again.")
            return run_view(running), False

    async def overview(self, enterprise_id: int) -> SyncOverview:
        """What the sync card shows for the enterprise."""
        async with self.db.unit_of_work(readonly=True) as uow:
            session = uow.session
            enterprise = await load_enterprise(session, enterprise_id)
            running = await open_run(session, enterprise.id)
            last = (
                await session.execute(
                    select(SyncRun)
                    .where(SyncRun.enterprise_id == enterprise.id)
                    .order_by(SyncRun.requested_at.desc(), SyncRun.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            counts = {status: 0 for status in ProvisioningStatus}
            unlicensed = 0
            for status, licensed, count in await session.execute(
                select(User.provisioning_status, User.licence.is_not(None), func.count())
                .where(User.enterprise_id == enterprise.id)
                .group_by(User.provisioning_status, User.licence.is_not(None))
            ):
                if status is ProvisioningStatus.PROVISIONED and not licensed:
                    unlicensed += int(count)
                else:
                    counts[status] += int(count)
            listed = await session.execute(
                select(
                    User.id, User.display_name, User.provisioning_status, User.provisioning_error
                )
                .where(
                    User.enterprise_id == enterprise.id,
                    User.provisioning_status != ProvisioningStatus.PROVISIONED,
                )
                .order_by(User.provisioning_status, User.display_name)
                .limit(MAX_LISTED_USERS)
            )
            users = [
                UserSyncState(
                    row.id, row.display_name, row.provisioning_status, row.provisioning_error
                )
                for row in listed
            ]
            waiting = int(
                (
                    await session.execute(
                        select(func.count())
                        .select_from(OutboxItem)
                        .where(waiting_for_microsoft(enterprise.id))
                    )
                ).scalar_one()
            )
            return SyncOverview(
                enterprise=enterprise_view(enterprise),
                open_run=run_view(running) if running else None,
                last_run=run_view(last) if last else None,
                counts=counts,
                users=users,
                waiting_changes=waiting,
                unlicensed=unlicensed,
            )

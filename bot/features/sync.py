"""Sync Teams Users: the status card, and the Global Admin's button that starts a sync."""

from __future__ import annotations

from bot.router import EnterpriseTurn, Router
from cards.actions import OpenSync, SetConsent, StartSync
from cards.common import Card
from cards.sync import build_sync_status_card, when
from services.domain import AdminRole, SyncStatus
from services.errors import PermissionDeniedError
from services.models import utcnow
from services.views import EnterpriseView, SyncOverview

router = Router()


def is_global_admin_of(turn: EnterpriseTurn, enterprise: EnterpriseView) -> bool:
    """Whether the admin of this turn is the Global Admin of the enterprise."""
    return turn.admin.role is AdminRole.GLOBAL_ADMIN and turn.admin.enterprise_id == enterprise.id


async def requester_names(turn: EnterpriseTurn, overview: SyncOverview) -> dict[str, str]:
    """Names of the admins who requested the runs on the card (object ids stay hidden)."""
    enterprise = overview.enterprise
    wanted = {
        run.requested_by
        for run in (overview.open_run, overview.last_run)
        if run is not None and run.requested_by
    }
    names: dict[str, str] = {}
    for object_id in wanted:
        if object_id == turn.actor.aad_object_id:
            names[object_id] = f"{turn.actor.display_name or 'You'} (you)"
            continue
        admin = await turn.services.enterprises.identify(enterprise.tenant_id, object_id)
        if admin is not None and admin.enterprise_id == enterprise.id and admin.display_name:
            names[object_id] = admin.display_name
    return names


async def show_sync(
    turn: EnterpriseTurn, *, notice: str | None = None, success: str | None = None
) -> Card:
    """The enterprise's sync card as this admin may act on it."""
    enterprise = turn.enterprise
    overview = await turn.services.syncs.overview(enterprise.id)
    return build_sync_status_card(
        overview,
        now=utcnow(),
        is_global_admin=is_global_admin_of(turn, enterprise),
        requester_names=await requester_names(turn, overview),
        notice=notice,
        success=success,
    )


@router.action(OpenSync)
async def open_sync(turn: EnterpriseTurn, data: OpenSync) -> Card:
    """Whether a manual sync is needed, the runs, and every user's status."""
    return await show_sync(turn)


@router.action(SetConsent)
async def set_consent(turn: EnterpriseTurn, data: SetConsent, enterprise: EnterpriseView) -> Card:
    """The Global Admin allows or withdraws "Allow Management by Service Provider" (recorded in
    the audit log, where the provider sees it); anyone else is told who can."""
    if not is_global_admin_of(turn, enterprise):
        return await show_sync(
            turn,
            notice="Only the enterprise's Global Admin can allow or withdraw management by the "
            "service provider.",
        )
    if data.consent == enterprise.sp_management_consent:
        state = "allowed" if data.consent else "not allowed"
        return await show_sync(
            turn,
            notice=f"Management by the service provider is {state} already: nothing was changed.",
        )
    updated = await turn.services.enterprises.set_consent(turn.actor, enterprise.id, data.consent)
    if not data.consent:
        success = "Consent withdrawn: from now on changes reach Microsoft only when you run Sync Teams Users."
    elif updated.syncs_automatically:
        success = "Management by the service provider allowed: changes now sync to Microsoft automatically."
    else:
        success = (
            "Management by the service provider allowed: once the first sync is done, changes "
            "sync to Microsoft automatically. Run Sync Teams Users for that first sync."
        )
    return await show_sync(turn, success=success)


@router.action(StartSync)
async def start_sync(turn: EnterpriseTurn, data: StartSync, enterprise: EnterpriseView) -> Card:
    """Start "Sync Teams Users"; with one already open, show that one instead."""
    try:
        run, started = await turn.services.syncs.request(turn.actor, enterprise.id)
    except PermissionDeniedError as refusal:
        return await show_sync(turn, notice=refusal.message)
    if started:
        return await show_sync(
            turn,
            success=f"Sync started. Microsoft should have every change by {when(run.expected_by)}.",
        )
    state = "running" if run.status is SyncStatus.RUNNING else "already requested"
    return await show_sync(
        turn,
        notice=f"A sync is {state}, so no second one was started. Here is its status.",
    )

"""Sync Teams Users: the status card, and the Global Admin's button that starts a sync."""

from __future__ import annotations

from bot.router import EnterpriseTurn, Router
from cards.actions import OpenSync, RefreshSync, SetConsent, StartSync
from cards.common import Card
from cards.sync import build_sync_status_card, when
from services.domain import AdminRole, SyncStatus
from services.enterprises import Enterprises
from services.errors import PermissionDeniedError
from services.models import utcnow
from services.sync import CardPlace, Syncs
from services.views import Actor, AdminView, EnterpriseView, SyncOverview

router = Router()


def is_global_admin_of(admin: AdminView, enterprise: EnterpriseView) -> bool:
    """Whether `admin` is the Global Admin of the enterprise."""
    return admin.role is AdminRole.GLOBAL_ADMIN and admin.enterprise_id == enterprise.id


async def requester_names(
    overview: SyncOverview, enterprises: Enterprises, viewer: Actor | None = None
) -> dict[str, str]:
    """Names of the admins who requested the runs on the card (object ids stay hidden); the
    viewer reads their own name with "(you)"."""
    enterprise = overview.enterprise
    wanted = {
        run.requested_by
        for run in (overview.open_run, overview.last_run)
        if run is not None and run.requested_by
    }
    names: dict[str, str] = {}
    for object_id in wanted:
        if viewer is not None and object_id == viewer.aad_object_id:
            names[object_id] = f"{viewer.display_name or 'You'} (you)"
            continue
        admin = await enterprises.identify(enterprise.tenant_id, object_id)
        if admin is not None and admin.enterprise_id == enterprise.id and admin.display_name:
            names[object_id] = admin.display_name
    return names


async def show_sync(
    turn: EnterpriseTurn,
    syncs: Syncs,
    enterprises: Enterprises,
    *,
    notice: str | None = None,
    success: str | None = None,
) -> Card:
    """The enterprise's sync card as this admin may act on it, refreshed for them when shown."""
    enterprise = turn.enterprise
    overview = await syncs.overview(enterprise.id)
    return build_sync_status_card(
        overview,
        now=utcnow(),
        is_global_admin=is_global_admin_of(turn.admin, enterprise),
        requester_names=await requester_names(overview, enterprises, turn.actor),
        notice=notice,
        success=success,
        viewers=[turn.origin.viewer_id] if turn.origin.viewer_id else [],
    )


@router.action(OpenSync)
async def open_sync(
    turn: EnterpriseTurn, data: OpenSync, syncs: Syncs, enterprises: Enterprises
) -> Card:
    """Whether a manual sync is needed, the runs, and every user's status."""
    return await show_sync(turn, syncs, enterprises)


@router.action(RefreshSync)
async def refresh_sync(
    turn: EnterpriseTurn, data: RefreshSync, syncs: Syncs, enterprises: Enterprises
) -> Card:
    """The sync card as it is now: Teams asks when a card carrying this refresh is shown."""
    return await show_sync(turn, syncs, enterprises)


@router.action(SetConsent)
async def set_consent(
    turn: EnterpriseTurn,
    data: SetConsent,
    enterprise: EnterpriseView,
    syncs: Syncs,
    enterprises: Enterprises,
) -> Card:
    """The Global Admin allows or withdraws "Allow Management by Service Provider" (recorded in
    the audit log, and told to the provider's admins); anyone else is told who can."""
    if not is_global_admin_of(turn.admin, enterprise):
        return await show_sync(
            turn,
            syncs,
            enterprises,
            notice="Only the enterprise's Global Admin can allow or withdraw management by the "
            "service provider.",
        )
    if data.consent == enterprise.sp_management_consent:
        state = "allowed" if data.consent else "not allowed"
        return await show_sync(
            turn,
            syncs,
            enterprises,
            notice=f"Management by the service provider is {state} already: nothing was changed.",
        )
    updated = await enterprises.set_consent(turn.actor, enterprise.id, data.consent)
    if not data.consent:
        success = "Consent withdrawn: from now on changes reach Microsoft only when you run Sync Teams Users."
    elif updated.syncs_automatically:
        success = "Management by the service provider allowed: changes now sync to Microsoft automatically."
    else:
        success = (
            "Management by the service provider allowed: once the first sync is done, changes "
            "sync to Microsoft automatically. Run Sync Teams Users for that first sync."
        )
    return await show_sync(turn, syncs, enterprises, success=success)


async def show_started(
    turn: EnterpriseTurn, enterprise: EnterpriseView, syncs: Syncs, enterprises: Enterprises
) -> Card | None:
    """A sync started by an earlier delivery of the same press: its status."""
    run = (await syncs.overview(enterprise.id)).open_run
    if run is None:
        return None
    return await show_sync(
        turn,
        syncs,
        enterprises,
        success=f"Sync started. Microsoft should have every change by {when(run.expected_by)}.",
    )


@router.action(StartSync, redelivered=show_started)
async def start_sync(
    turn: EnterpriseTurn,
    data: StartSync,
    enterprise: EnterpriseView,
    syncs: Syncs,
    enterprises: Enterprises,
) -> Card:
    """Start "Sync Teams Users"; with one already open, show that one instead. The card the
    button was on is kept with the run, to be updated in place when it ends."""
    origin = turn.origin
    card = (
        CardPlace(origin.card_activity_id, origin.conversation_id)
        if origin.card_activity_id and origin.conversation_id
        else None
    )
    try:
        run, started = await syncs.request(turn.actor, enterprise.id, card=card)
    except PermissionDeniedError as refusal:
        return await show_sync(turn, syncs, enterprises, notice=refusal.message)
    if started:
        return await show_sync(
            turn,
            syncs,
            enterprises,
            success=f"Sync started. Microsoft should have every change by {when(run.expected_by)}.",
        )
    state = "running" if run.status is SyncStatus.RUNNING else "already requested"
    return await show_sync(
        turn,
        syncs,
        enterprises,
        notice=f"A sync is {state}, so no second one was started. Here is its status.",
    )

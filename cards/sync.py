"""The sync status card: whether a manual "Sync Teams Users" is needed, the open and the last
run, and every user's provisioning indicator with the counts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from microsoft_teams.cards import (
    CardElement,
    ColumnDefinition,
    Table,
    TableCell,
    TableRow,
    TextBlock,
)

from cards.actions import OpenDirectory, OpenSync, RefreshSync, SetConsent, StartSync
from cards.common import (
    STATUS_LABELS,
    Card,
    button,
    facts,
    frame,
    paragraph,
    plain,
    status_label,
    user_link_cell,
)
from services.domain import ProvisioningStatus, SyncStatus
from services.views import EnterpriseView, SyncOverview, SyncRunView

SYNC_HELP = (
    "Changes you make reach the PBX at once. For Teams users to make and take calls through it, "
    "Microsoft must learn them too: that is **Sync Teams Users**.\n\n"
    "It runs by itself when both hold: the enterprise consented to “Allow Management by Service "
    "Provider”, and its first sync (which sets up the initial users) is done. Otherwise only the "
    "enterprise's Global Admin can start it, from this card.\n\n"
    "A sync takes time: the first within 24 hours, later ones within 4 hours. Only one runs at a "
    "time; pressing the button again shows the running one. A sync past its promised time is "
    "escalated to your service provider.\n\n"
    "Each user's indicator: ⚪ not synced (changes wait for a sync), 🟡 pending (in a sync, not "
    "started), 🔵 in progress, 🟢 provisioned, 🔴 failed (with the reason)."
)
RUN_LABELS: dict[SyncStatus, str] = {
    SyncStatus.REQUESTED: "🟡 Requested, waiting to start",
    SyncStatus.RUNNING: "🔵 Running",
    SyncStatus.SUCCEEDED: "🟢 Succeeded",
    SyncStatus.PARTIALLY_FAILED: "🔴 Partially failed: see the users below",
}
LISTED_USERS = 25
# Users without a calling licence: Microsoft has nothing of Teams Phone to set up for them.
NO_LICENCE = "⚪ No calling licence"


def when(moment: datetime) -> str:
    """A moment as admins read it, in UTC."""
    return moment.strftime("%d %b %Y, %H:%M UTC")


def _duration(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def requester(run: SyncRunView, names: Mapping[str, str]) -> str:
    """Who asked for a run: the admin's name, or how it started."""
    if run.is_automatic:
        return "Switchboard (automatic sync)"
    if run.requested_by and names.get(run.requested_by):
        return names[run.requested_by]
    return "a Global Admin"


def _promise(run: SyncRunView) -> str:
    hours = round((run.expected_by - run.requested_at).total_seconds() / 3600)
    return f"{hours} hours" + (" (first sync)" if run.is_first else "")


def _open_run(run: SyncRunView, names: Mapping[str, str], now: datetime) -> list[CardElement]:
    left = (run.expected_by - now).total_seconds()
    expected = when(run.expected_by) + (
        f" (in about {_duration(left)})" if left > 0 else " (⚠ overdue)"
    )
    items: list[CardElement] = [
        paragraph(
            "**Sync in progress**" if run.status is SyncStatus.RUNNING else "**Sync requested**"
        ),
        facts(
            [
                ("Status", RUN_LABELS.get(run.status, run.status.value)),
                ("Requested by", requester(run, names)),
                ("Requested", when(run.requested_at)),
                ("Expected by", expected),
                ("Promised within", _promise(run)),
            ]
        ),
    ]
    if left <= 0:
        items.append(
            paragraph(
                "This sync is past its promised time; overdue syncs are escalated to your "
                "service provider.",
                color="Attention",
            )
        )
    return items


def _last_run(run: SyncRunView, names: Mapping[str, str]) -> list[CardElement]:
    pairs = [
        ("Status", RUN_LABELS.get(run.status, run.status.value)),
        ("Requested by", requester(run, names)),
        ("Requested", when(run.requested_at)),
    ]
    if run.finished_at is not None:
        pairs.append(("Finished", when(run.finished_at)))
    return [paragraph("**Last sync**"), facts(pairs)]


def _how_it_syncs(overview: SyncOverview, is_global_admin: bool) -> list[CardElement]:
    enterprise: EnterpriseView = overview.enterprise
    if enterprise.syncs_automatically:
        return [
            paragraph(
                f"**No manual sync is needed.** {plain(enterprise.name)} allows management by the "
                "service provider and its first sync is done, so changes sync to Microsoft "
                "automatically."
            )
        ]
    reasons = []
    if not enterprise.sp_management_consent:
        reasons.append(
            f"{plain(enterprise.name)} has not consented to “Allow Management by Service Provider”"
        )
    if enterprise.first_sync_completed_at is None:
        reasons.append("its first sync, which sets up the initial users, is not done yet")
    why = " and ".join(reasons)
    text = (
        f"**Changes sync manually.** {why[0].upper()}{why[1:]}, so changes reach Microsoft only "
        "when the Global Admin runs **Sync Teams Users**."
    )
    waiting = overview.waiting_changes
    if waiting:
        text += (
            " 1 change waits for the next sync."
            if waiting == 1
            else f" {waiting} changes wait for the next sync."
        )
        if not is_global_admin:
            text += " Ask your Global Admin to run it."
    elif overview.open_run is None:
        text += " No change is waiting right now."
    return [paragraph(text)]


def _consent(enterprise: EnterpriseView, is_global_admin: bool) -> list[CardElement]:
    """The consent to "Allow Management by Service Provider": what it is, what it changes, and
    for the Global Admin, the button that gives or withdraws it."""
    name = plain(enterprise.name)
    if enterprise.sp_management_consent:
        state = "**Management by the service provider: allowed.**"
        if enterprise.first_sync_completed_at is None:
            state += f" {name} consented, so changes will sync automatically once the first "
            state += "sync is done."
        change = (
            " Withdrawing it makes every sync manual again: only the Global Admin can start one."
        )
    else:
        state = (
            f"**Management by the service provider: not allowed.** If {name} allows it, changes "
            "sync to Microsoft automatically once the first sync is done: nobody needs to "
            "press Sync Teams Users any more."
        )
        change = " Only the Global Admin can allow it, and can withdraw it at any time."
    return [paragraph(state + (change if is_global_admin else ""))]


def _users(overview: SyncOverview) -> list[CardElement]:
    counts = overview.counts
    total = sum(counts.values()) + overview.unlicensed
    if total == 0:
        return [paragraph("There are no users yet.", subtle=True)]
    items: list[CardElement] = [
        paragraph(f"**Users ({total})**"),
        facts(
            [
                *(
                    (STATUS_LABELS[status], str(counts.get(status, 0)))
                    for status in ProvisioningStatus
                ),
                *([(NO_LICENCE, str(overview.unlicensed))] if overview.unlicensed else []),
            ]
        ),
    ]
    if not overview.users:
        items.append(paragraph("Every user is provisioned.", subtle=True))
        return items
    ent = overview.enterprise.id
    shown = overview.users[:LISTED_USERS]
    rows = [
        TableRow(
            cells=[
                user_link_cell(user.display_name, ent, user.user_id),
                TableCell(items=[TextBlock(text=status_label(user.status, user.error), wrap=True)]),
            ]
        )
        for user in shown
    ]
    heading = TableRow(
        cells=[
            TableCell(items=[TextBlock(text="User", weight="Bolder", wrap=True)]),
            TableCell(items=[TextBlock(text="Status", weight="Bolder", wrap=True)]),
        ]
    )
    items.append(
        Table(columns=[ColumnDefinition(width=2), ColumnDefinition(width=3)], rows=[heading, *rows])
    )
    not_provisioned = total - counts.get(ProvisioningStatus.PROVISIONED, 0) - overview.unlicensed
    if not_provisioned > len(shown):
        items.append(
            paragraph(
                f"Showing {len(shown)} of the {not_provisioned} users not provisioned, "
                "failed first.",
                subtle=True,
            )
        )
    return items


def build_sync_status_card(
    overview: SyncOverview,
    *,
    now: datetime,
    is_global_admin: bool,
    requester_names: Mapping[str, str] | None = None,
    notice: str | None = None,
    success: str | None = None,
    viewers: Sequence[str] = (),
) -> Card:
    """The sync card for an enterprise, as the admin viewing it may act on it.

    `is_global_admin` says whether the viewer is the Global Admin of this enterprise: only they
    see "Sync Teams Users", and only while no sync is open. `requester_names` maps the Entra
    object ids of requesters to names; `now` dates the expected finish. The card asks Teams to
    refresh it whenever it is shown again (by itself for `viewers`, the admins' Teams ids), so
    a card kept in the chat never shows a sync as running after it finished.
    """
    names = requester_names or {}
    ent = overview.enterprise.id
    body: list[CardElement] = _how_it_syncs(overview, is_global_admin)
    if overview.open_run is not None:
        body += _open_run(overview.open_run, names, now)
    elif overview.last_run is not None:
        body += _last_run(overview.last_run, names)
    else:
        body.append(paragraph("No sync has run yet.", subtle=True))
    body += _consent(overview.enterprise, is_global_admin)
    body += _users(overview)
    actions = []
    if is_global_admin and overview.open_run is None:
        actions.append(button("Sync Teams Users", StartSync(ent=ent), primary=True))
    actions += [
        button("Refresh status", OpenSync(ent=ent), primary=not actions),
        button("Directory", OpenDirectory(ent=ent)),
    ]
    if is_global_admin:
        consent = overview.enterprise.sp_management_consent
        actions.append(
            button(
                "Withdraw consent" if consent else "Allow management by service provider",
                SetConsent(ent=ent, consent=not consent),
            )
        )
    return frame(
        "Sync Teams Users",
        body,
        help_text=SYNC_HELP,
        ent=ent,
        notice=notice,
        success=success,
        actions=actions,
        refresh=RefreshSync(ent=ent),
        viewers=viewers,
    )

"""Proactive cards: "sync finished" for the admins a sync concerns (and a team channel),
"sync overdue" and "consent changed" for the service provider's admins."""

from __future__ import annotations

from datetime import datetime

from microsoft_teams.cards import CardElement

from cards.actions import OpenDirectory, OpenSync
from cards.common import Card, button, facts, frame, paragraph, plain
from services.domain import SyncStatus
from services.views import ConsentChange, SyncReport

FINISHED_HELP = (
    "Switchboard tells you when a **Sync Teams Users** you started has finished: how many users "
    "Microsoft now has set up, and which ones it could not set up, with Microsoft's reason.\n\n"
    "Fix the cause (for example, add licences to the subscription), then run the sync again from "
    "the sync card: a manual sync also retries the users that failed. Quote the Microsoft Graph "
    "request id to your service provider if a reason is unclear."
)
AUTOMATIC_HELP = (
    "This enterprise allows management by the service provider and its first sync is done, so "
    "changes reach Microsoft by themselves: nobody presses **Sync Teams Users**. Switchboard "
    "tells the admins who made the changes when such a sync has finished (or, when it cannot "
    "reach them, the enterprise's other admins).\n\n"
    "Fix the cause of any failure (for example, add licences to the subscription), then change "
    "the user again or ask the Global Admin to run a sync from the sync card: a manual sync "
    "also retries the users that failed."
)
CONSENT_HELP = (
    "“Allow Management by Service Provider” is the enterprise's consent for changes to reach "
    "Microsoft without its Global Admin pressing **Sync Teams Users** (once its first sync is "
    "done). Only the enterprise's Global Admin gives or withdraws it, from the sync card; each "
    "change is in the audit log.\n\n"
    "Allowed: syncs of this enterprise now run by themselves and their outcome is told to the "
    "admins who made the changes. Withdrawn: syncs wait for the Global Admin again."
)
OVERDUE_HELP = (
    "Enterprises are promised their first sync within 24 hours and later ones within 4 hours. "
    "This sync has run past that promise, so it is escalated to you.\n\n"
    "Open the sync card to see each user's status and Microsoft's reasons for any failure. "
    "Common causes: Microsoft Graph throttling or an outage, Switchboard's app missing consent "
    "in the enterprise's tenant, or no sync worker running."
)
OUTCOMES: dict[SyncStatus, str] = {
    SyncStatus.REQUESTED: "🟡 Requested, not started",
    SyncStatus.RUNNING: "🔵 Running",
    SyncStatus.SUCCEEDED: "🟢 Succeeded",
    SyncStatus.PARTIALLY_FAILED: "🔴 Partially failed",
}


def when(moment: datetime) -> str:
    """A moment as admins read it, in UTC."""
    return moment.strftime("%d %b %Y, %H:%M UTC")


def took(seconds: float) -> str:
    """A duration in words: seconds, minutes or hours."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def _how_started(report: SyncReport) -> str:
    run = report.run
    kind = "first sync" if run.is_first else "sync"
    return f"automatic {kind}" if run.is_automatic else f"manual {kind}"


def _failures(report: SyncReport) -> list[CardElement]:
    if not report.failures:
        return []
    items: list[CardElement] = [paragraph("**Could not be set up**")]
    for failure in report.failures:
        who = failure.display_name or failure.email
        if failure.email and failure.email != who:
            who = f"{who} ({failure.email})"
        items.append(paragraph(f"🔴 **{plain(who)}**: {plain(failure.reason)}"))
    if report.failed > len(report.failures):
        items.append(
            paragraph(
                f"… and {report.failed - len(report.failures)} more: see the sync card.",
                subtle=True,
            )
        )
    return items


def sync_finished_card(report: SyncReport) -> Card:
    """The outcome of a sync: counts, and every failure with Microsoft's reason."""
    run = report.run
    ent = report.enterprise.id
    pairs = [
        ("Enterprise", report.enterprise.name),
        ("Outcome", OUTCOMES.get(run.status, run.status.value)),
        ("Users set up", f"{report.provisioned} of {report.total}"),
        ("Failed", str(report.failed)),
        ("Started", f"{when(run.requested_at)} ({_how_started(report)})"),
    ]
    if run.finished_at is not None:
        pairs.append(("Finished", when(run.finished_at)))
    if report.duration_seconds is not None:
        pairs.append(("Took", took(report.duration_seconds)))
    if report.failed:
        title = "Sync finished with failures"
        notice: str | None = (
            f"{report.failed} of {report.total} users could not be set up in Microsoft Teams."
        )
        success = None
    else:
        title = "Sync Teams Users finished"
        notice = None
        success = (
            "Every change reached Microsoft Teams."
            if report.total
            else "There was nothing to sync: Microsoft already had every change."
        )
    return frame(
        title,
        [facts(pairs), *_failures(report)],
        help_text=AUTOMATIC_HELP if run.is_automatic else FINISHED_HELP,
        ent=ent,
        notice=notice,
        success=success,
        actions=[
            button("Sync status", OpenSync(ent=ent), primary=True),
            button("Directory", OpenDirectory(ent=ent)),
        ],
    )


def sync_overdue_card(report: SyncReport, now: datetime) -> Card:
    """For the service provider: a sync has run past its promised time."""
    run = report.run
    ent = report.enterprise.id
    late = max(0.0, (now - run.expected_by).total_seconds())
    pairs = [
        ("Enterprise", f"{report.enterprise.name} ({report.enterprise.tenant_id})"),
        ("Status", OUTCOMES.get(run.status, run.status.value)),
        ("Started", f"{when(run.requested_at)} ({_how_started(report)})"),
        ("Promised by", when(run.expected_by)),
        ("Late by", took(late)),
        ("Users set up", f"{report.provisioned} of {report.total}"),
        ("Failed", str(report.failed)),
        ("Still waiting", str(report.waiting)),
    ]
    return frame(
        f"Sync overdue: {report.enterprise.name}",
        [
            facts(pairs),
            paragraph(
                "The enterprise was promised this sync by "
                f"{when(run.expected_by)}. Check what holds it up."
            ),
            *_failures(report),
        ],
        help_text=OVERDUE_HELP,
        ent=ent,
        notice="This sync is past its promised time.",
        actions=[button("Sync status", OpenSync(ent=ent), primary=True)],
    )


def consent_changed_card(change: ConsentChange) -> Card:
    """For the service provider: an enterprise allowed or withdrew management by them."""
    enterprise = change.enterprise
    ent = enterprise.id
    if change.consent:
        title = f"{enterprise.name} allows management by the service provider"
        effect = (
            "Changes now sync to Microsoft automatically."
            if enterprise.first_sync_completed_at is not None
            else "Changes will sync to Microsoft automatically once its first sync is done."
        )
    else:
        title = f"{enterprise.name} withdrew management by the service provider"
        effect = "Changes now reach Microsoft only when its Global Admin runs Sync Teams Users."
    return frame(
        title,
        [
            facts(
                [
                    ("Enterprise", f"{enterprise.name} ({enterprise.tenant_id})"),
                    ("Consent", "Allowed" if change.consent else "Withdrawn"),
                    ("Changed by", change.by),
                    ("When", when(change.at)),
                ]
            ),
            paragraph(plain(effect)),
        ],
        help_text=CONSENT_HELP,
        ent=ent,
        actions=[button("Sync status", OpenSync(ent=ent), primary=True)],
    )

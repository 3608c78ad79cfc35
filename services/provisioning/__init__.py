"""The "Sync Teams Users" engine: the directory's changes reach Microsoft, user by user.

A sync run gathers the outbox rows waiting for Microsoft; planning turns them into one
provisioning item per user. Each item is a small state machine (Entra user, licence, number,
policy, verify, notify) whose progress is written after every step, so a restarted worker
resumes where the last one stopped, and every step looks before it changes anything.

Workers claim items through `services.queue` (`FOR UPDATE SKIP LOCKED` on PostgreSQL: any
number of processes share a run) and hold them under a lease; SQLite runs one worker
in-process. Each tenant has
its own lane: its own concurrency and its own Graph write budget, so one slow or throttled
tenant never holds up another.

Run with `python -m services.provisioning` to work outside the bot process.

The package: `state` (the one writer of a user's provisioning status and of a run's status,
the auto-sync rule, the outbox rows for Microsoft), `planner` (automatic runs, and requested
runs turned into items), `escalator` (overdue runs reported), `runner` (claims, leases,
heartbeats, the steps driven, items and users settled), `steps` (the per-user steps in
Microsoft), `work` (one item's state), `engine` (one worker: the three roles in one loop),
`reports` (what the bot shows, and the notices' queue), `mails` (the users' e-mails) and
`worker` (the process entry point).

The names below load their module on first use, so that reading the provisioning state (the
journal does on every change) does not load the engine, the Graph client and aiohttp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.provisioning.engine import ProvisioningEngine
    from services.provisioning.mails import confirmation_mail, line_uri, password_mail
    from services.provisioning.reports import (
        MAX_REPORTED_FAILURES,
        Notice,
        SyncNotices,
        sync_report,
    )
    from services.provisioning.state import OPEN_RUN_STATUSES
    from services.provisioning.steps import ProvisioningSteps
    from services.provisioning.work import (
        NEW_SETUP_KINDS,
        NEXT_STEP,
        STEP_LABELS,
        WORK_LEFT,
        LeaseLost,
        StepAgain,
    )
    from services.provisioning.worker import main, run_workers
    from services.views import SyncFailure, SyncReport

_HOMES = {
    "MAX_REPORTED_FAILURES": "reports",
    "NEW_SETUP_KINDS": "work",
    "NEXT_STEP": "work",
    "OPEN_RUN_STATUSES": "state",
    "STEP_LABELS": "work",
    "WORK_LEFT": "work",
    "LeaseLost": "work",
    "Notice": "reports",
    "ProvisioningEngine": "engine",
    "ProvisioningSteps": "steps",
    "StepAgain": "work",
    "SyncFailure": "reports",
    "SyncNotices": "reports",
    "SyncReport": "reports",
    "confirmation_mail": "mails",
    "line_uri": "mails",
    "main": "worker",
    "password_mail": "mails",
    "run_workers": "worker",
    "sync_report": "reports",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "MAX_REPORTED_FAILURES",
    "NEW_SETUP_KINDS",
    "NEXT_STEP",
    "OPEN_RUN_STATUSES",
    "STEP_LABELS",
    "WORK_LEFT",
    "LeaseLost",
    "Notice",
    "ProvisioningEngine",
    "ProvisioningSteps",
    "StepAgain",
    "SyncFailure",
    "SyncNotices",
    "SyncReport",
    "confirmation_mail",
    "line_uri",
    "main",
    "password_mail",
    "run_workers",
    "sync_report",
]

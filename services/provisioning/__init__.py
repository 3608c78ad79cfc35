"""The "Sync Teams Users" engine: the directory's changes reach Microsoft, user by user.

A sync run gathers the outbox rows waiting for Microsoft; planning turns them into one
provisioning item per user. Each item is a small state machine (Entra user, licence, number,
policy, verify, notify) whose progress is written after every step, so a restarted worker
resumes where the last one stopped, and every step looks before it changes anything.

Workers claim items with `FOR UPDATE SKIP LOCKED` on PostgreSQL (any number of processes
share a run) and hold them under a lease; SQLite runs one worker in-process. Each tenant has
its own lane: its own concurrency and its own Graph write budget, so one slow or throttled
tenant never holds up another.

Run with `python -m services.provisioning` to work outside the bot process.

The package: `reports` (what the bot shows), `mails` (the users' e-mails), `work` (one item's
state), `steps` (the per-user steps in Microsoft), `engine` (claiming, leases, lanes, runs) and
`worker` (the process entry point).
"""

from services.provisioning.engine import OPEN_RUN_STATUSES, WORK_LEFT, ProvisioningEngine
from services.provisioning.mails import confirmation_mail, line_uri, password_mail
from services.provisioning.reports import (
    MAX_REPORTED_FAILURES,
    Notice,
    SyncFailure,
    SyncNotices,
    SyncReport,
    sync_report,
)
from services.provisioning.steps import ProvisioningSteps
from services.provisioning.work import (
    NEW_SETUP_KINDS,
    NEXT_STEP,
    STEP_LABELS,
    LeaseLost,
    StepAgain,
)
from services.provisioning.worker import main, run_workers

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

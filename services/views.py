"""Plain values the services hand out: no ORM objects leave a unit of work."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from services.domain import (
    AdminRole,
    CallerIdMode,
    LicenceProduct,
    PbxState,
    ProvisioningStatus,
    RingStrategy,
    SyncStatus,
    syncs_automatically,
)
from services.phone import pretty

T = TypeVar("T")


@dataclass(frozen=True)
class Actor:
    """The admin on whose behalf a service acts (for permissions and the audit log)."""

    aad_object_id: str
    display_name: str
    role: AdminRole
    enterprise_id: int | None

    @property
    def label(self) -> str:
        """How the audit log names this admin."""
        return (
            f"{self.display_name} ({self.aad_object_id})"
            if self.display_name
            else self.aad_object_id
        )


SYSTEM = Actor("system", "Switchboard", AdminRole.SERVICE_PROVIDER, None)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a longer list."""

    items: list[T]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        """How many pages the whole list takes (at least one)."""
        return max(1, -(-self.total // self.page_size))


@dataclass(frozen=True)
class EnterpriseView:
    """An enterprise as admins see it."""

    id: int
    name: str
    tenant_id: str
    main_number: str
    region: str
    extension_start: int
    extension_end: int
    sp_management_consent: bool
    first_sync_completed_at: datetime | None

    @property
    def syncs_automatically(self) -> bool:
        """Changes reach Microsoft without a manual sync (consent given, first sync done)."""
        return syncs_automatically(self.sp_management_consent, self.first_sync_completed_at)


@dataclass(frozen=True)
class CallerIdView:
    """What a user presents on outgoing calls, resolved to actual numbers."""

    mode: CallerIdMode
    presented_number: str | None
    chosen_number: str | None
    caller_name: str | None
    send_pai: bool
    pai_number: str | None
    presents_company_main: bool


@dataclass(frozen=True)
class UserView:
    """A user with everything the directory knows about them."""

    id: int
    enterprise_id: int
    display_name: str
    email: str
    licence: LicenceProduct | None
    number: str | None
    extension: int | None
    caller_id: CallerIdView
    status: ProvisioningStatus
    status_error: str | None
    send_password_email: bool
    notify_user: bool
    version: int
    created_at: datetime
    # Where the password e-mail goes, when not to the user's own address.
    password_email_to: str | None = None


@dataclass(frozen=True)
class PoolView:
    """One licence pool's counts."""

    product: LicenceProduct
    total: int
    used: int

    @property
    def free(self) -> int:
        """Licences left to hand out."""
        return self.total - self.used


@dataclass(frozen=True)
class ImportReport:
    """The result of importing numbers into an inventory."""

    added: int
    already_present: int
    refused: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SyncRunView:
    """A "Sync Teams Users" run."""

    id: int
    status: SyncStatus
    is_first: bool
    is_automatic: bool
    requested_by: str | None
    requested_at: datetime
    expected_by: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class UserSyncState:
    """One user's line on the sync status card."""

    user_id: int
    display_name: str
    status: ProvisioningStatus
    error: str | None


@dataclass(frozen=True)
class SyncOverview:
    """Everything the sync card shows: whether a sync is needed, the runs, per-user states."""

    enterprise: EnterpriseView
    open_run: SyncRunView | None
    last_run: SyncRunView | None
    counts: dict[ProvisioningStatus, int]
    users: list[UserSyncState]
    waiting_changes: int
    # Users without a calling licence whom Microsoft has caught up with: not in `counts`,
    # since there is no Teams Phone set-up of theirs to call "provisioned".
    unlicensed: int = 0

    @property
    def manual_sync_needed(self) -> bool:
        """Whether changes wait for a Global Admin to press "Sync Teams Users"."""
        return not self.enterprise.syncs_automatically and self.waiting_changes > 0


@dataclass(frozen=True)
class AdminView:
    """Who an admin is, as the directory knows them, with their own enterprise if they have one."""

    aad_object_id: str
    display_name: str
    role: AdminRole
    enterprise_id: int | None
    enterprise: EnterpriseView | None = None


@dataclass(frozen=True)
class SyncFailure:
    """One user the sync could not set up, and why."""

    display_name: str
    email: str
    reason: str


@dataclass(frozen=True)
class ConsentChange:
    """An enterprise allowed or withdrew management by the service provider."""

    enterprise: EnterpriseView
    consent: bool
    by: str
    at: datetime


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
class HuntGroupView:
    """A hunt group as admins see it."""

    id: int
    enterprise_id: int
    name: str
    queue: str
    members: int
    strategy: RingStrategy = RingStrategy.RING_ALL
    extension: int | None = None
    number: str | None = None

    @property
    def reached_at(self) -> str:
        """Where callers reach the group, for an admin ("extension 2000, +44 20 7946 0100")."""
        parts = [f"extension {self.extension}" if self.extension is not None else ""]
        parts.append(pretty(self.number) if self.number else "")
        return ", ".join(p for p in parts if p) or "no number yet"


@dataclass(frozen=True)
class HuntGroupMemberView:
    """A member of a hunt group."""

    user_id: int
    display_name: str


@dataclass(frozen=True)
class PbxStatusView:
    """A user's PBX status as the bot shows it."""

    user_id: int
    state: PbxState
    waiting_changes: int = 0
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: datetime | None = None

    @property
    def summary(self) -> str:
        """One line for an admin: what the PBX holds and, when it failed, why."""
        if self.state is PbxState.IN_SYNC:
            return "On the PBX: up to date."
        if self.state is PbxState.PUSHING:
            return "On its way to the PBX."
        when = f" at {self.next_attempt_at:%H:%M:%S} UTC" if self.next_attempt_at else ""
        return (
            f"The PBX has not taken the latest change yet ({self.last_error}); "
            f"retrying{when}. Nothing is lost."
        )


@dataclass(frozen=True)
class SipLogin:
    """What the admin types into the desk phone, shown once: the password is not kept."""

    username: str
    password: str = field(repr=False)
    realm: str
    registrar: str


@dataclass(frozen=True)
class ExtensionRanges:
    """An enterprise's extension range, its free extensions as runs, and how many are taken."""

    start: int
    end: int
    free_runs: tuple[tuple[int, int], ...]
    taken: int

    @property
    def free(self) -> int:
        """How many extensions are free."""
        return sum(last - first + 1 for first, last in self.free_runs)

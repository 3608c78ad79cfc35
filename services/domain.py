"""The domain's values: the states and kinds the directory, the PBX, the sync and the cards
share. Plain enums with no database in them, so cards and views import them without the ORM."""

from __future__ import annotations

import enum


class NumberStatus(enum.StrEnum):
    """Where a direct number (DDI) stands in the inventory."""

    FREE = "free"
    ASSIGNED = "assigned"
    RESERVED = "reserved"
    QUARANTINED = "quarantined"


class LicenceProduct(enum.StrEnum):
    """The calling licence products of the subscription pool."""

    ESSENTIALS = "essentials"
    BASIC = "basic"

    @property
    def label(self) -> str:
        """The product's name as admins know it."""
        return self.value.capitalize()


class CallerIdMode(enum.StrEnum):
    """Which number a user presents on outgoing calls."""

    OWN_DDI = "own_ddi"
    COMPANY_MAIN = "company_main"
    OTHER = "other"
    ANONYMOUS = "anonymous"


class ProvisioningStatus(enum.StrEnum):
    """How far Microsoft has caught up with the user's record."""

    NOT_SYNCED = "not_synced"
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    PROVISIONED = "provisioned"
    FAILED = "failed"


class AdminRole(enum.StrEnum):
    """What an admin may do."""

    GLOBAL_ADMIN = "global_admin"
    ENTERPRISE_ADMIN = "enterprise_admin"
    SERVICE_PROVIDER = "service_provider"


class OutboxStatus(enum.StrEnum):
    """Lifecycle of one change waiting to reach a backend."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    FAILED = "failed"


class SyncStatus(enum.StrEnum):
    """Lifecycle of a "Sync Teams Users" run."""

    REQUESTED = "requested"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIALLY_FAILED = "partially_failed"

    @property
    def is_open(self) -> bool:
        """Whether the run still has work ahead of it."""
        return self in (SyncStatus.REQUESTED, SyncStatus.RUNNING)


class ProvisioningStep(enum.StrEnum):
    """Where one user's provisioning stands: each step is done at most once per item."""

    ENTRA_USER = "entra_user"
    LICENCE = "licence"
    NUMBER = "number"
    POLICY = "policy"
    VERIFY = "verify"
    NOTIFY = "notify"
    DONE = "done"


class ProvisioningAction(enum.StrEnum):
    """What an item asks of Microsoft: set the user up as the directory says, or tear down."""

    PROVISION = "provision"
    REMOVE = "remove"


class NoticeKind(enum.StrEnum):
    """What a proactive message about a sync says."""

    SYNC_FINISHED = "sync.finished"
    SYNC_OVERDUE = "sync.overdue"

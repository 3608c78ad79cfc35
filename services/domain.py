"""The domain's values: the states and kinds the directory, the PBX, the sync and the cards
share. Plain enums with no database in them, so cards and views import them without the ORM."""

from __future__ import annotations

import enum
from datetime import datetime
from enum import StrEnum


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
    CONSENT_CHANGED = "consent.changed"


class RingStrategy(StrEnum):
    """How a hunt group rings its members: Asterisk's queue strategies, as admins name them."""

    RING_ALL = "ringall"
    LEAST_RECENT = "leastrecent"
    FEWEST_CALLS = "fewestcalls"
    RANDOM = "random"
    ROUND_ROBIN = "rrmemory"
    LINEAR = "linear"

    @property
    def label(self) -> str:
        """The strategy in an admin's words."""
        return _STRATEGY_LABELS[self]


class PbxState(StrEnum):
    """Where a user's latest change stands on the PBX."""

    IN_SYNC = "in_sync"
    PUSHING = "pushing"
    RETRYING = "retrying"


class DigitMatch(StrEnum):
    """How typed digits match a number."""

    ENDS_WITH = "ends"
    CONTAINS = "contains"


class DirectorySort(StrEnum):
    """Columns the directory can be sorted by."""

    NAME = "name"
    EMAIL = "email"
    NUMBER = "number"
    EXTENSION = "extension"
    STATUS = "status"


def syncs_automatically(consent: bool, first_sync_completed_at: datetime | None) -> bool:
    """Changes reach Microsoft without a manual sync: consent given and the first sync done."""
    return consent and first_sync_completed_at is not None


_STRATEGY_LABELS = {
    RingStrategy.RING_ALL: "Ring everyone at once",
    RingStrategy.LEAST_RECENT: "Whoever answered least recently",
    RingStrategy.FEWEST_CALLS: "Whoever took the fewest calls",
    RingStrategy.RANDOM: "Someone at random",
    RingStrategy.ROUND_ROBIN: "Round robin",
    RingStrategy.LINEAR: "In order, one after another",
}


MAX_GROUP_NAME = 64


MAX_CALLER_NAME = 50

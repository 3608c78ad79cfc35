"""The work of one item: what a worker holds, whom it is for, and how the steps follow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.domain import LicenceProduct, ProvisioningAction, ProvisioningStep
from services.graph import EntraUser, GraphError, GraphOperations, TeamsUser
from services.queue import UNFINISHED

NEW_SETUP_KINDS = frozenset({"user.create", "user.licence"})

# An item that is waiting or held: its run has work left.
WORK_LEFT = UNFINISHED

STEP_LABELS: dict[ProvisioningStep, str] = {
    ProvisioningStep.ENTRA_USER: "Setting up the Microsoft 365 account",
    ProvisioningStep.LICENCE: "Assigning the Teams Phone licence",
    ProvisioningStep.NUMBER: "Assigning the phone number",
    ProvisioningStep.POLICY: "Assigning the voice routing policy",
    ProvisioningStep.VERIFY: "Checking the user's Teams configuration",
    ProvisioningStep.NOTIFY: "Sending the e-mail",
    ProvisioningStep.DONE: "Finishing",
}
NEXT_STEP: dict[ProvisioningStep, ProvisioningStep] = {
    ProvisioningStep.ENTRA_USER: ProvisioningStep.LICENCE,
    ProvisioningStep.LICENCE: ProvisioningStep.NUMBER,
    ProvisioningStep.NUMBER: ProvisioningStep.POLICY,
    ProvisioningStep.POLICY: ProvisioningStep.VERIFY,
    ProvisioningStep.VERIFY: ProvisioningStep.NOTIFY,
    ProvisioningStep.NOTIFY: ProvisioningStep.DONE,
}


class LeaseLost(Exception):
    """Another worker took the item over (our lease ran out): stop working on it."""


class StepAgain(GraphError):
    """Try the item again later, from an earlier step (Graph's state moved under us)."""

    def __init__(self, message: str, step: ProvisioningStep) -> None:
        super().__init__(message, status=0)
        self.step = step


@dataclass(frozen=True)
class Claimed:
    """An item this worker holds, with what it needs from its enterprise."""

    item_id: int
    sync_id: int
    enterprise_id: int
    tenant_id: str
    region: str
    main_number: str
    user_id: int | None
    action: ProvisioningAction
    kinds: frozenset[str]
    payload: dict[str, Any]
    step: ProvisioningStep
    attempts: int
    entra_created: bool
    # The enterprise's own voice routing policy name; None: the provider's default.
    voice_routing_policy: str | None = None


# The key of an item's payload listing the admins (Entra object ids) who created the user: they
# get the confirmation e-mail once the user is set up in Microsoft.
AUTHORS = "created_by"


@dataclass(frozen=True)
class Person:
    """The directory's record of the user, as it stood when the item was picked up."""

    display_name: str
    email: str
    licence: LicenceProduct | None
    number: str | None
    extension: int | None
    entra_object_id: str | None
    password_ciphertext: str | None
    send_password_email: bool
    notify_user: bool
    # Where the password e-mail goes; None: to the account's own address.
    password_email_to: str | None = None


@dataclass
class Work:
    """One item being worked on, and what this worker learnt from Graph so far."""

    claimed: Claimed
    person: Person | None
    ops: GraphOperations
    entra: EntraUser | None = None
    teams: TeamsUser | None = None
    entra_created: bool = False

    @property
    def known_person(self) -> Person:
        """The directory's record of the user (every step but a removal has one)."""
        if self.person is None:
            raise RuntimeError("the item has no user in the directory")
        return self.person

    @property
    def entra_id(self) -> str:
        """The Entra object id of the user (known after the first step)."""
        if self.entra is None:
            raise RuntimeError("the Entra user is not known yet")
        return self.entra.id


@dataclass
class Lane:
    """A tenant's share of this worker: how many of its items run at once."""

    capacity: int
    active: int = 0

    @property
    def free(self) -> int:
        """Items this lane can take on now."""
        return max(0, self.capacity - self.active)

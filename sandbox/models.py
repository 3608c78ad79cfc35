"""The records the sandbox keeps per tenant, in Graph's vocabulary."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GLOBAL_ADMIN_ROLE_ID = "62e90394-69f5-4237-9190-012177145e10"
DEFAULT_FEATURE_TYPES = ("Teams", "PhoneSystem")


def utc_now() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


def graph_time(moment: datetime) -> str:
    """Format a moment the way Graph does (ISO 8601, UTC, `Z` suffix)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def opaque_id(text: str) -> str:
    """Encode `text` as the unpadded URL-safe base64 identifiers Teams uses."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@dataclass
class RegisteredApp:
    """An Entra application registration with one client secret."""

    client_id: str
    secret: str = field(repr=False)
    home_tenant_id: str
    display_name: str = ""
    multi_tenant: bool = False


@dataclass
class Sku:
    """A subscribed product with its pool of licences."""

    sku_id: str
    sku_part_number: str
    enabled_units: int
    consumed_units: int = 0
    feature_types: tuple[str, ...] = DEFAULT_FEATURE_TYPES

    @property
    def free_units(self) -> int:
        """Licences still available for assignment."""
        return self.enabled_units - self.consumed_units


@dataclass(frozen=True)
class TeamsPolicy:
    """A Teams policy instance of a tenant: its type, its name and its opaque id."""

    policy_type: str
    name: str
    policy_id: str


@dataclass
class Group:
    """A security group (e.g. role-assignable) and the ids of its members (users or groups)."""

    id: str
    display_name: str
    members: set[str] = field(default_factory=set)


@dataclass
class PolicyAssignment:
    """A Teams policy assigned directly to a user."""

    policy_type: str
    policy_id: str
    display_name: str


@dataclass
class User:
    """An Entra user; `props` holds the Graph properties by their Graph names."""

    id: str
    props: dict[str, Any]
    password: str = field(default="", repr=False)
    licenses: list[str] = field(default_factory=list)
    created: datetime = field(default_factory=utc_now)
    enterprise_voice_enabled: bool = False
    teams_modified: datetime = field(default_factory=utc_now)
    policies: dict[str, PolicyAssignment] = field(default_factory=dict)
    # When Teams knows the user (its userConfiguration exists); None: known already.
    teams_ready_at: float | None = None

    @property
    def upn(self) -> str:
        """The user's sign-in name."""
        return str(self.props["userPrincipalName"])


@dataclass
class RoleAssignment:
    """A directory role held by a principal."""

    id: str
    principal_id: str
    role_definition_id: str
    directory_scope_id: str = "/"


@dataclass
class NumberAssignment:
    """A telephone number known to Teams and the account it is assigned to."""

    tenant_id: str
    telephone_number: str
    number_type: str
    assignment_target_id: str | None
    assignment_category: str | None
    location_id: str | None = None
    network_site_id: str | None = None
    reverse_number_lookup_options: list[str] = field(default_factory=list)
    activation_state: str = "activated"

    @property
    def id(self) -> str:
        """Graph's identifier for this number record."""
        return opaque_id(f"{self.tenant_id}|{self.telephone_number}")

    @property
    def assignment_status(self) -> str:
        """`userAssigned` while a user holds the number, else `unassigned`."""
        return "userAssigned" if self.assignment_target_id else "unassigned"


@dataclass
class NumberOperation:
    """An asynchronous assign or unassign order and its outcome."""

    id: str
    kind: str  # "assign" or "unassign"
    telephone_number: str
    number_type: str
    created: datetime
    started_at: float
    due_at: float
    assignment_target_id: str | None = None
    assignment_category: str = "primary"
    location_id: str | None = None
    status: str = "notStarted"
    number_status: str = "notStarted"
    status_detail: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the outcome has been applied."""
        return self.status in ("succeeded", "failed", "skipped")


@dataclass
class Mail:
    """A message sent through `sendMail`."""

    id: str
    tenant_id: str
    sender: str
    to: list[str]
    cc: list[str]
    subject: str
    body: str
    content_type: str
    sent: datetime = field(default_factory=utc_now)

    def to_json(self) -> dict[str, Any]:
        """Return the message as the admin API shows it."""
        return {
            "id": self.id,
            "tenantId": self.tenant_id,
            "sender": self.sender,
            "to": list(self.to),
            "cc": list(self.cc),
            "subject": self.subject,
            "body": self.body,
            "contentType": self.content_type,
            "sentDateTime": graph_time(self.sent),
        }


@dataclass
class Tenant:
    """One enterprise's directory, licences, Teams numbers and policies."""

    id: str
    display_name: str = ""
    domains: list[str] = field(default_factory=list)
    consented_apps: set[str] = field(default_factory=set)
    users: dict[str, User] = field(default_factory=dict)
    skus: dict[str, Sku] = field(default_factory=dict)
    role_assignments: list[RoleAssignment] = field(default_factory=list)
    numbers: dict[str, NumberAssignment] = field(default_factory=dict)
    operations: dict[str, NumberOperation] = field(default_factory=dict)
    pending_operations: list[str] = field(default_factory=list)
    upn_index: dict[str, str] = field(default_factory=dict)
    # Application permissions granted (admin consent) per client id; absent: the default set.
    app_roles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Teams policies by (type, name), lower-cased; ids are opaque and differ per tenant.
    teams_policies: dict[tuple[str, str], TeamsPolicy] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)

    def policy_by_id(self, policy_type: str, policy_id: str) -> TeamsPolicy | None:
        """The tenant's policy of this type with this id, if any."""
        for policy in self.teams_policies.values():
            if policy.policy_type.lower() == policy_type.lower() and policy.policy_id == policy_id:
                return policy
        return None

    def groups_of(self, member_id: str) -> set[str]:
        """Every group a directory object belongs to, directly or through nested groups."""
        found: set[str] = set()
        frontier = {member_id}
        while frontier:
            direct = {g.id for g in self.groups.values() if g.members & frontier} - found
            found |= direct
            frontier = direct
        return found

    def find_user(self, key: str) -> User | None:
        """Find a user by object id or (case-insensitively) by user principal name."""
        user = self.users.get(key)
        if user is not None:
            return user
        user_id = self.upn_index.get(key.lower())
        return self.users.get(user_id) if user_id else None

    def upn_taken(self, upn: str, by_other_than: str | None = None) -> bool:
        """Whether another user already signs in with `upn`."""
        holder = self.upn_index.get(upn.lower())
        return holder is not None and holder != by_other_than

    def put_user(self, user: User, previous_upn: str | None = None) -> None:
        """Store a user, or re-index one whose sign-in name changed from `previous_upn`."""
        if previous_upn is not None:
            self.upn_index.pop(previous_upn.lower(), None)
        self.users[user.id] = user
        self.upn_index[user.upn.lower()] = user.id

    def remove_user(self, user: User) -> None:
        """Forget a user."""
        self.users.pop(user.id, None)
        self.upn_index.pop(user.upn.lower(), None)

    def numbers_of(self, user_id: str) -> list[NumberAssignment]:
        """The numbers currently assigned to a user."""
        return [n for n in self.numbers.values() if n.assignment_target_id == user_id]

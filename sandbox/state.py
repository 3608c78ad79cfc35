"""The sandbox's in-memory cloud: tenants, app registrations and sent mail.

Every method takes `lock`, so tests may seed and inspect from their own thread while
the servers answer from theirs. Graph handlers hold `lock` across a whole request.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from sandbox import telephony
from sandbox.models import (
    DEFAULT_FEATURE_TYPES,
    GLOBAL_ADMIN_ROLE_ID,
    Group,
    Mail,
    NumberAssignment,
    RegisteredApp,
    RoleAssignment,
    Sku,
    TeamsPolicy,
    Tenant,
    User,
    opaque_id,
)
from sandbox.tokens import DEFAULT_APP_ROLES


class SandboxState:
    """All tenants, registered applications and mail of one sandbox."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self._tenants: dict[str, Tenant] = {}
        self._apps: dict[str, RegisteredApp] = {}
        self._mails: list[Mail] = []

    # Tenants and applications

    def add_tenant(
        self, tenant_id: str, display_name: str = "", domains: Iterable[str] = ()
    ) -> Tenant:
        """Create a tenant, or return the existing one with that id."""
        with self.lock:
            tenant = self._tenants.get(tenant_id)
            if tenant is None:
                tenant = Tenant(id=tenant_id, display_name=display_name or tenant_id)
                self._tenants[tenant_id] = tenant
            for domain in domains:
                if domain.lower() not in (d.lower() for d in tenant.domains):
                    tenant.domains.append(domain)
            return tenant

    def tenant(self, tenant_id: str) -> Tenant | None:
        """Return a tenant with its pending number orders brought up to date."""
        with self.lock:
            tenant = self._tenants.get(tenant_id)
            if tenant is not None:
                telephony.advance(tenant, self.clock())
            return tenant

    def require_tenant(self, tenant_id: str) -> Tenant:
        """Return a tenant, or raise KeyError naming it."""
        tenant = self.tenant(tenant_id)
        if tenant is None:
            raise KeyError(f"unknown tenant {tenant_id}")
        return tenant

    def tenants(self) -> list[Tenant]:
        """All tenants, each brought up to date."""
        with self.lock:
            return [self.require_tenant(tenant_id) for tenant_id in list(self._tenants)]

    def register_app(
        self,
        client_id: str,
        secret: str,
        home_tenant_id: str,
        *,
        display_name: str = "",
        multi_tenant: bool = False,
    ) -> RegisteredApp:
        """Register an application (client id and secret) in its home tenant."""
        with self.lock:
            self.add_tenant(home_tenant_id)
            app = RegisteredApp(
                client_id=client_id,
                secret=secret,
                home_tenant_id=home_tenant_id,
                display_name=display_name or client_id,
                multi_tenant=multi_tenant,
            )
            self._apps[client_id] = app
            return app

    def consent_app(self, tenant_id: str, client_id: str) -> None:
        """Record that a tenant's admin consented to a multi-tenant application."""
        with self.lock:
            self.add_tenant(tenant_id).consented_apps.add(client_id)

    def grant_roles(self, tenant_id: str, client_id: str, roles: Iterable[str]) -> None:
        """Set the application permissions an app holds in a tenant (its admin consent)."""
        with self.lock:
            self.add_tenant(tenant_id).app_roles[client_id] = tuple(roles)

    def roles_for(self, tenant_id: str, client_id: str) -> tuple[str, ...]:
        """The application permissions a token for this app in this tenant carries."""
        with self.lock:
            tenant = self._tenants.get(tenant_id)
            if tenant is None:
                return ()
            return tenant.app_roles.get(client_id, DEFAULT_APP_ROLES)

    def app(self, client_id: str) -> RegisteredApp | None:
        """Look up an application registration."""
        with self.lock:
            return self._apps.get(client_id)

    def app_usable_in(self, app: RegisteredApp, tenant_id: str) -> bool:
        """Whether `app` may obtain tokens for `tenant_id`."""
        with self.lock:
            tenant = self._tenants.get(tenant_id)
            if tenant is None:
                return False
            if app.home_tenant_id == tenant_id:
                return True
            return app.multi_tenant and app.client_id in tenant.consented_apps

    # Directory content

    def add_sku(
        self,
        tenant_id: str,
        sku_id: str,
        sku_part_number: str,
        enabled_units: int,
        consumed_units: int = 0,
        feature_types: Iterable[str] = DEFAULT_FEATURE_TYPES,
    ) -> Sku:
        """Add (or replace) a subscribed product with `enabled_units` licences."""
        with self.lock:
            sku = Sku(
                sku_id=sku_id,
                sku_part_number=sku_part_number,
                enabled_units=enabled_units,
                consumed_units=consumed_units,
                feature_types=tuple(feature_types),
            )
            self.add_tenant(tenant_id).skus[sku_id] = sku
            return sku

    def add_user(
        self,
        tenant_id: str,
        user_principal_name: str,
        display_name: str = "",
        *,
        user_id: str | None = None,
        usage_location: str | None = None,
        licenses: Iterable[str] = (),
        password: str = "",
        **props: Any,
    ) -> User:
        """Add an existing user; each licence takes a unit from its SKU's pool."""
        with self.lock:
            tenant = self.add_tenant(tenant_id)
            if tenant.upn_taken(user_principal_name):
                raise ValueError(f"user {user_principal_name} already exists")
            nickname = user_principal_name.split("@", 1)[0]
            user = User(
                id=user_id or str(uuid.uuid4()),
                props={
                    "accountEnabled": True,
                    "displayName": display_name or nickname,
                    "mailNickname": nickname,
                    "userPrincipalName": user_principal_name,
                    "usageLocation": usage_location,
                    **props,
                },
                password=password,
            )
            for sku_id in licenses:
                sku = tenant.skus.get(sku_id)
                if sku is None:
                    raise ValueError(f"unknown SKU {sku_id} in tenant {tenant_id}")
                sku.consumed_units += 1
                user.licenses.append(sku_id)
            tenant.put_user(user)
            return user

    def add_policy(self, tenant_id: str, policy_type: str, name: str) -> TeamsPolicy:
        """Create a Teams policy instance; its id is opaque and differs from tenant to tenant."""
        with self.lock:
            tenant = self.add_tenant(tenant_id)
            key = (policy_type.lower(), name.lower())
            policy = tenant.teams_policies.get(key)
            if policy is None:
                policy_id = opaque_id(f"{tenant_id}|{policy_type}|{name}|{uuid.uuid4().hex[:8]}")
                policy = TeamsPolicy(policy_type, name, policy_id)
                tenant.teams_policies[key] = policy
            return policy

    def remove_policy(self, tenant_id: str, policy_type: str, name: str) -> None:
        """Delete a Teams policy instance (a later one of that name gets a new id)."""
        with self.lock:
            self.require_tenant(tenant_id).teams_policies.pop(
                (policy_type.lower(), name.lower()), None
            )

    def add_group(
        self, tenant_id: str, display_name: str, members: Iterable[str] = (), group_id: str = ""
    ) -> Group:
        """A security group; members are user ids, user principal names or group ids."""
        with self.lock:
            tenant = self.add_tenant(tenant_id)
            ids = set()
            for member in members:
                user = tenant.find_user(member)
                ids.add(user.id if user is not None else member)
            group = Group(group_id or str(uuid.uuid4()), display_name, ids)
            tenant.groups[group.id] = group
            return group

    def add_role_assignment(
        self, tenant_id: str, principal_id: str, role_definition_id: str = GLOBAL_ADMIN_ROLE_ID
    ) -> RoleAssignment:
        """Give a principal a directory role (Global Administrator by default)."""
        with self.lock:
            assignment = RoleAssignment(
                id=str(uuid.uuid4()),
                principal_id=principal_id,
                role_definition_id=role_definition_id,
            )
            self.add_tenant(tenant_id).role_assignments.append(assignment)
            return assignment

    def add_global_admin(self, tenant_id: str, user_key: str) -> RoleAssignment:
        """Make a user (by id or user principal name) a Global Administrator."""
        with self.lock:
            user = self.require_tenant(tenant_id).find_user(user_key)
            principal_id = user.id if user is not None else user_key
            return self.add_role_assignment(tenant_id, principal_id)

    def add_number(
        self,
        tenant_id: str,
        telephone_number: str,
        number_type: str = "directRouting",
        assignment_target_id: str | None = None,
        assignment_category: str = "primary",
        location_id: str | None = None,
    ) -> NumberAssignment:
        """Add a number Teams already knows, optionally assigned to a user (id or UPN)."""
        with self.lock:
            tenant = self.require_tenant(tenant_id)
            number = telephony.normalize_number(telephone_number)
            if number is None:
                raise ValueError(f"not a telephone number: {telephone_number!r}")
            user = tenant.find_user(assignment_target_id) if assignment_target_id else None
            if assignment_target_id and user is None:
                raise ValueError(f"unknown user {assignment_target_id}")
            record = NumberAssignment(
                tenant_id=tenant_id,
                telephone_number=number,
                number_type=number_type,
                assignment_target_id=user.id if user else None,
                assignment_category=assignment_category if user else None,
                location_id=location_id,
            )
            tenant.numbers[number] = record
            if user is not None:
                user.enterprise_voice_enabled = True
            return record

    # Mail

    def record_mail(self, mail: Mail) -> None:
        """Keep a sent message."""
        with self.lock:
            self._mails.append(mail)

    def mails(self, tenant_id: str | None = None) -> list[Mail]:
        """Sent messages, newest first, optionally of one tenant."""
        with self.lock:
            chosen = [m for m in self._mails if tenant_id in (None, m.tenant_id)]
            return list(reversed(chosen))

    # Seeding and reset

    def seed(self, document: dict[str, Any]) -> None:
        """Load tenants, apps, SKUs, users, admins and numbers from a seed document."""
        with self.lock:
            for entry in document.get("tenants", []):
                self._seed_tenant(entry)

    def _seed_tenant(self, entry: dict[str, Any]) -> None:
        tenant_id = str(entry["id"])
        self.add_tenant(tenant_id, entry.get("displayName", ""), entry.get("domains", ()))
        for app in entry.get("apps", []):
            self.register_app(
                app["clientId"],
                app["secret"],
                tenant_id,
                display_name=app.get("displayName", ""),
                multi_tenant=bool(app.get("multiTenant", False)),
            )
        for client_id in entry.get("consentedApps", []):
            self.consent_app(tenant_id, client_id)
        for client_id, roles in (entry.get("grantedRoles") or {}).items():
            self.grant_roles(tenant_id, client_id, roles)
        for policy in entry.get("policies", []):
            self.add_policy(tenant_id, policy["type"], policy["name"])
        for sku in entry.get("skus", []):
            self.add_sku(
                tenant_id,
                sku["skuId"],
                sku.get("skuPartNumber", sku["skuId"]),
                int(sku.get("enabled", sku.get("prepaidUnits", {}).get("enabled", 0))),
                int(sku.get("consumed", sku.get("consumedUnits", 0))),
                sku.get("featureTypes", DEFAULT_FEATURE_TYPES),
            )
        for user in entry.get("users", []):
            fields = dict(user)
            self.add_user(
                tenant_id,
                fields.pop("userPrincipalName"),
                fields.pop("displayName", ""),
                user_id=fields.pop("id", None),
                usage_location=fields.pop("usageLocation", None),
                licenses=fields.pop("licenses", ()),
                password=fields.pop("password", ""),
                **fields,
            )
        for group in entry.get("groups", []):
            self.add_group(
                tenant_id, group["displayName"], group.get("members", ()), group.get("id", "")
            )
        for admin in entry.get("globalAdmins", []):
            self.add_global_admin(tenant_id, admin)
        for number in entry.get("numbers", []):
            self.add_number(
                tenant_id,
                number["telephoneNumber"],
                number.get("numberType", "directRouting"),
                number.get("assignmentTargetId"),
                number.get("assignmentCategory", "primary"),
                number.get("locationId"),
            )

    def reset(self) -> None:
        """Forget every tenant, application and message."""
        with self.lock:
            self._tenants.clear()
            self._apps.clear()
            self._mails.clear()

"""Entra directory endpoints: users, licences, subscribed SKUs and directory roles."""

from __future__ import annotations

import math
import re
import uuid
from typing import Any

from sandbox.config import SandboxConfig
from sandbox.graph.routing import (
    GraphError,
    GraphRequest,
    GraphResponse,
    Router,
    bad_request,
    collection,
    matches,
    not_found,
    paginate,
    parse_filter,
    parse_select,
)
from sandbox.graph.shapes import (
    READ_ONLY_USER_PROPERTIES,
    USER_PROPERTIES,
    USER_TYPE,
    WRITABLE_USER_PROPERTIES,
    domain_json,
    role_assignment_json,
    sku_json,
    user_filter_view,
    user_json,
)
from sandbox.models import Tenant, User
from sandbox.state import SandboxState
from sandbox.telephony import release_user_numbers

REQUIRED_ON_CREATE = (
    "accountEnabled",
    "displayName",
    "mailNickname",
    "userPrincipalName",
    "passwordProfile",
)
FILTERABLE_USER_PROPERTIES = tuple(p for p in USER_PROPERTIES if p != "passwordProfile")
USERS_PAGE_DEFAULT = 100
USERS_PAGE_MAX = 999
_UPN = re.compile(r"^[A-Za-z0-9._%+'\-]+@(?P<domain>[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+)$")
_NICKNAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]{1,64}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
INVALID_USAGE_LOCATION = "License assignment cannot be done for user with invalid usage location."
DUPLICATE_UPN = "Another object with the same value for property userPrincipalName already exists."


def tenant_of(state: SandboxState, request: GraphRequest) -> Tenant:
    """The caller's tenant (from the token's `tid`); the caller must hold `state.lock`."""
    tenant = state.tenant(request.tenant_id)
    if tenant is None:
        raise GraphError(
            401, "InvalidAuthenticationToken", "Access token validation failure. Invalid tenant."
        )
    return tenant


def user_of(tenant: Tenant, key: str) -> User:
    """A user by id or user principal name, or Graph's 404."""
    user = tenant.find_user(key)
    if user is None:
        raise not_found(key)
    return user


def _invalid(name: str, resource: str = "User") -> GraphError:
    return bad_request(f"Invalid value specified for property '{name}' of resource '{resource}'.")


def _check_password(profile: Any) -> str:
    if not isinstance(profile, dict) or not isinstance(profile.get("password"), str):
        raise bad_request("A value is required for property 'password' of resource 'User'.")
    password: str = profile["password"]
    classes = sum(
        (
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        )
    )
    if not 8 <= len(password) <= 256 or classes < 3:
        raise bad_request(
            "The specified password does not comply with password complexity requirements. "
            "Please provide a different password."
        )
    return password


def _check_properties(tenant: Tenant, body: dict[str, Any], user_id: str | None) -> None:
    """Validate the writable properties present in a POST or PATCH body."""
    for name in body:
        if name.startswith("@odata."):
            continue
        if name in READ_ONLY_USER_PROPERTIES:
            raise bad_request(f"Property '{name}' is read-only and cannot be set.")
        if name not in WRITABLE_USER_PROPERTIES:
            raise GraphError(
                400,
                "BadRequest",
                f"Property '{name}' does not exist as a declared property or extension property.",
            )
    if "accountEnabled" in body and not isinstance(body["accountEnabled"], bool):
        raise _invalid("accountEnabled")
    for name in ("displayName", "mailNickname", "userPrincipalName"):
        if name in body and (not isinstance(body[name], str) or not body[name].strip()):
            raise _invalid(name)
    if "mailNickname" in body and not _NICKNAME.match(body["mailNickname"]):
        raise _invalid("mailNickname")
    location = body.get("usageLocation")
    if location is not None and (not isinstance(location, str) or not _COUNTRY.match(location)):
        raise _invalid("usageLocation")
    if "userPrincipalName" in body:
        upn = body["userPrincipalName"]
        match = _UPN.match(upn)
        if match is None:
            raise bad_request("Property userPrincipalName is invalid.")
        domains = [d.lower() for d in tenant.domains]
        if domains and match.group("domain").lower() not in domains:
            raise bad_request(
                "The domain portion of the userPrincipalName property is invalid. You must use "
                "one of the verified domain names in your organization."
            )
        if tenant.upn_taken(upn, by_other_than=user_id):
            raise GraphError(
                400,
                "Request_BadRequest",
                DUPLICATE_UPN,
                details=[
                    {
                        "code": "ObjectConflict",
                        "message": DUPLICATE_UPN,
                        "target": "userPrincipalName",
                    }
                ],
            )
    if "passwordProfile" in body:
        _check_password(body["passwordProfile"])


def _sku_id(entry: Any) -> str:
    sku_id = entry.get("skuId") if isinstance(entry, dict) else None
    return str(sku_id)


def _apply(user: User, body: dict[str, Any]) -> None:
    for name, value in body.items():
        if name.startswith("@odata."):
            continue
        if name == "passwordProfile":
            user.password = value["password"]
        else:
            user.props[name] = value


class DirectoryApi:
    """Handlers for `/users`, `/subscribedSkus` and `/roleManagement`."""

    def __init__(self, state: SandboxState, config: SandboxConfig | None = None) -> None:
        self._state = state
        self._config = config or SandboxConfig()

    def register(self, router: Router) -> None:
        """Add this API's routes."""
        router.add("GET", "/users", self.list_users)
        router.add("POST", "/users", self.create_user)
        router.add("GET", "/users/{user}", self.get_user)
        router.add("PATCH", "/users/{user}", self.update_user)
        router.add("DELETE", "/users/{user}", self.delete_user)
        router.add("POST", "/users/{user}/assignLicense", self.assign_license)
        router.add("POST", "/users/{user}/checkMemberGroups", self.check_member_groups)
        router.add("GET", "/subscribedSkus", self.subscribed_skus)
        router.add("GET", "/domains", self.domains)
        router.add("GET", "/roleManagement/directory/roleAssignments", self.role_assignments)

    def list_users(self, request: GraphRequest) -> GraphResponse:
        """GET /users with `$filter`, `$select`, `$top` and paging."""
        select = parse_select(request.query.get("$select"), USER_PROPERTIES, USER_TYPE)
        clauses = parse_filter(request.query.get("$filter"), FILTERABLE_USER_PROPERTIES)
        names = [name for name, _ in clauses]
        with self._state.lock:
            tenant = tenant_of(self._state, request)
            if len(clauses) == 1 and names[0] in ("id", "userPrincipalName"):
                found = tenant.find_user(str(clauses[0][1]))
                candidates = [found] if found is not None else []
            else:
                candidates = list(tenant.users.values())
            users = [u for u in candidates if matches(user_filter_view(u, names), clauses)]
            page, next_link = paginate(request, users, USERS_PAGE_DEFAULT, USERS_PAGE_MAX)
            values = [user_json(u, select) for u in page]
        return collection(request, "users", values, next_link)

    def create_user(self, request: GraphRequest) -> GraphResponse:
        """POST /users."""
        body = request.json_object()
        with self._state.lock:
            tenant = tenant_of(self._state, request)
            for name in REQUIRED_ON_CREATE:
                if body.get(name) in (None, ""):
                    raise bad_request(
                        f"A value is required for property '{name}' of resource 'User'."
                    )
            _check_properties(tenant, body, None)
            # Teams knows a new user only once a Teams licence has been assigned.
            user = User(id=str(uuid.uuid4()), props={}, teams_ready_at=math.inf)
            _apply(user, body)
            tenant.put_user(user)
            payload = {
                "@odata.context": f"{request.base_url}/$metadata#users/$entity",
                **user_json(user),
            }
        location = f"{request.base_url}/users/{user.id}"
        return GraphResponse(201, payload, {"Location": location})

    def get_user(self, request: GraphRequest) -> GraphResponse:
        """GET /users/{id | userPrincipalName}."""
        select = parse_select(request.query.get("$select"), USER_PROPERTIES, USER_TYPE)
        with self._state.lock:
            user = user_of(tenant_of(self._state, request), request.params["user"])
            payload = {
                "@odata.context": f"{request.base_url}/$metadata#users/$entity",
                **user_json(user, select),
            }
        return GraphResponse(200, payload)

    def update_user(self, request: GraphRequest) -> GraphResponse:
        """PATCH /users/{id | userPrincipalName}."""
        body = request.json_object()
        with self._state.lock:
            tenant = tenant_of(self._state, request)
            user = user_of(tenant, request.params["user"])
            _check_properties(tenant, body, user.id)
            previous_upn = user.upn
            _apply(user, body)
            tenant.put_user(user, previous_upn)
        return GraphResponse(204)

    def delete_user(self, request: GraphRequest) -> GraphResponse:
        """DELETE /users/{id | userPrincipalName}: frees its licences and numbers."""
        with self._state.lock:
            tenant = tenant_of(self._state, request)
            user = user_of(tenant, request.params["user"])
            for sku_id in user.licenses:
                if sku_id in tenant.skus:
                    tenant.skus[sku_id].consumed_units -= 1
            release_user_numbers(tenant, user.id)
            tenant.role_assignments = [
                r for r in tenant.role_assignments if r.principal_id != user.id
            ]
            tenant.remove_user(user)
        return GraphResponse(204)

    def assign_license(self, request: GraphRequest) -> GraphResponse:
        """POST /users/{id}/assignLicense: takes units from, and returns them to, the pool."""
        body = request.json_object()
        for name in body:
            if name not in ("addLicenses", "removeLicenses"):
                raise bad_request(
                    f"The parameter '{name}' in the request payload is not a valid parameter "
                    "for the operation 'assignLicense'."
                )
        for name in ("addLicenses", "removeLicenses"):
            if not isinstance(body.get(name), list):
                raise bad_request(
                    f"A value is required for property '{name}' of resource 'assignLicense'."
                )
        adds = [_sku_id(entry) for entry in body["addLicenses"]]
        removes = [str(sku_id) for sku_id in body["removeLicenses"]]
        with self._state.lock:
            tenant = tenant_of(self._state, request)
            user = user_of(tenant, request.params["user"])
            if adds and not user.props.get("usageLocation"):
                raise bad_request(INVALID_USAGE_LOCATION)
            for sku_id in adds:
                if sku_id not in tenant.skus:
                    raise bad_request(
                        f"License {sku_id} does not correspond to a valid company License."
                    )
            for sku_id in removes:
                if sku_id not in user.licenses:
                    raise bad_request("User does not have a corresponding license.")
            for sku_id in dict.fromkeys(adds):
                if sku_id in user.licenses and sku_id not in removes:
                    continue
                if tenant.skus[sku_id].free_units < 1:
                    raise bad_request(
                        f"Subscription with SKU {sku_id} does not have any available licenses."
                    )
            for sku_id in removes:
                user.licenses.remove(sku_id)
                tenant.skus[sku_id].consumed_units -= 1
            for sku_id in dict.fromkeys(adds):
                if sku_id not in user.licenses:
                    user.licenses.append(sku_id)
                    tenant.skus[sku_id].consumed_units += 1
                    if "Teams" in tenant.skus[sku_id].feature_types and user.teams_ready_at:
                        ready = self._state.clock() + self._config.teams_setup_delay_seconds
                        user.teams_ready_at = min(user.teams_ready_at, ready)
            payload = {
                "@odata.context": f"{request.base_url}/$metadata#users/$entity",
                **user_json(user),
            }
        return GraphResponse(200, payload)

    def subscribed_skus(self, request: GraphRequest) -> GraphResponse:
        """GET /subscribedSkus."""
        with self._state.lock:
            tenant = tenant_of(self._state, request)
            values = [sku_json(tenant, sku) for sku in tenant.skus.values()]
        return collection(request, "subscribedSkus", values, None)

    def domains(self, request: GraphRequest) -> GraphResponse:
        """GET /domains: the tenant's verified domains, the first one the default."""
        with self._state.lock:
            tenant = tenant_of(self._state, request)
            values = [domain_json(d, i == 0) for i, d in enumerate(tenant.domains)]
        return collection(request, "domains", values, None)

    def check_member_groups(self, request: GraphRequest) -> GraphResponse:
        """POST /users/{id}/checkMemberGroups: which of up to 20 groups hold the user, transitively."""
        body = request.json_object()
        for name in body:
            if name != "groupIds":
                raise bad_request(
                    f"The parameter '{name}' in the request payload is not a valid parameter "
                    "for the operation 'checkMemberGroups'."
                )
        group_ids = body.get("groupIds")
        if not isinstance(group_ids, list) or not all(isinstance(g, str) for g in group_ids):
            raise bad_request("The parameter 'groupIds' is required.")
        if len(group_ids) > 20:
            raise bad_request("At most 20 group ids can be checked at once.")
        with self._state.lock:
            tenant = tenant_of(self._state, request)
            user = user_of(tenant, request.params["user"])
            member_of = tenant.groups_of(user.id)
        return collection(
            request, "Collection(Edm.String)", [g for g in group_ids if g in member_of], None
        )

    def role_assignments(self, request: GraphRequest) -> GraphResponse:
        """GET /roleManagement/directory/roleAssignments with `$filter`."""
        clauses = parse_filter(
            request.query.get("$filter"),
            ("id", "principalId", "roleDefinitionId", "directoryScopeId"),
        )
        with self._state.lock:
            tenant = tenant_of(self._state, request)
            values = [
                role_assignment_json(r)
                for r in tenant.role_assignments
                if matches(role_assignment_json(r), clauses)
            ]
        page, next_link = paginate(request, values, 100, 999)
        return collection(request, "roleManagement/directory/roleAssignments", page, next_link)

"""Teams administration endpoints: telephone numbers, user configurations and policies.

Request bodies are checked against the action's parameters in the v1.0 metadata: an unknown
parameter or a missing required one is Graph's 400. Single entities (a user configuration, an
operation) are answered bare or wrapped in `{"value": {...}}` as the reference pages show,
as `SandboxConfig.wrap_entities` says.
"""

from __future__ import annotations

import math
import re
from typing import Any

from sandbox import telephony
from sandbox.config import SandboxConfig
from sandbox.graph.directory import tenant_of
from sandbox.graph.routing import (
    GraphError,
    GraphRequest,
    GraphResponse,
    Router,
    collection,
    matches,
    paginate,
    parse_filter,
)
from sandbox.graph.shapes import number_json, operation_json, user_configuration_json
from sandbox.models import PolicyAssignment, Tenant, User, utc_now
from sandbox.state import SandboxState

NUMBERS = "/admin/teams/telephoneNumberManagement/numberAssignments"
OPERATIONS = "/admin/teams/telephoneNumberManagement/operations"
POLICY_ROOT = "/admin/teams/policy"
NUMBERS_PAGE_DEFAULT = 500
NUMBERS_PAGE_MAX = 1000
NUMBER_FILTER_FIELDS = (
    "telephoneNumber",
    "assignmentTargetId",
    "numberType",
    "activationState",
    "assignmentCategory",
    "assignmentStatus",
    "locationId",
    "networkSiteId",
    "numberSource",
    "operatorId",
    "isoCountryCode",
    "civicAddressId",
    "portInStatus",
)


# Each action's parameters in the v1.0 metadata (microsoft.graph.teamsAdministration).
ACTION_PARAMETERS = {
    "assignNumber": (
        "telephoneNumber",
        "assignmentTargetId",
        "numberType",
        "assignmentCategory",
        "locationId",
    ),
    "unassignNumber": ("telephoneNumber", "numberType"),
    "updateNumber": (
        "telephoneNumber",
        "locationId",
        "networkSiteId",
        "reverseNumberLookupOptions",
    ),
    "assign": ("value",),
    "unassign": ("value",),
}
# teamsPolicyUserAssignment's properties (and the id it inherits from entity).
POLICY_ASSIGNMENT_PROPERTIES = ("id", "userId", "policyType", "policyId")
_FUNCTION_TEXT = re.compile(r"^'((?:[^']|'')*)'$")


def _bad(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


def _known_parameters(action: str, body: dict[str, Any]) -> None:
    """Graph's 400 for a parameter the action does not declare."""
    for name in body:
        if name.startswith("@odata.") or name in ACTION_PARAMETERS[action]:
            continue
        raise _bad(
            f"The parameter '{name}' in the request payload is not a valid parameter for the "
            f"operation '{action}'."
        )


def _function_text(raw: str, name: str) -> str:
    match = _FUNCTION_TEXT.match(raw.strip())
    if match is None:
        raise _bad(f"The parameter '{name}' must be a quoted string.")
    return match.group(1).replace("''", "'")


def _required_text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _bad(f"The parameter '{name}' is required.")
    return value.strip()


def _number(body: dict[str, Any]) -> str:
    number = telephony.normalize_number(_required_text(body, "telephoneNumber"))
    if number is None:
        raise _bad(f"The telephone number '{body['telephoneNumber']}' is not valid.")
    return number


def _number_type(body: dict[str, Any]) -> str:
    number_type = _required_text(body, "numberType")
    if number_type not in telephony.NUMBER_TYPES:
        raise _bad(f"The value '{number_type}' is not valid for parameter 'numberType'.")
    return number_type


def _teams_user(tenant: Tenant, user_id: str, now: float) -> User:
    user = tenant.users.get(user_id)
    if user is None or (user.teams_ready_at is not None and user.teams_ready_at > now):
        # Teams learns about a user some time after a Teams licence is assigned.
        raise GraphError(404, "NotFound", f"User '{user_id}' was not found.")
    return user


class TeamsApi:
    """Handlers under `/admin/teams`."""

    def __init__(self, state: SandboxState, config: SandboxConfig) -> None:
        self._state = state
        self._config = config

    def register(self, router: Router) -> None:
        """Add this API's routes."""
        router.add("GET", NUMBERS, self.list_numbers)
        router.add("POST", f"{NUMBERS}/assignNumber", self.assign_number)
        router.add("POST", f"{NUMBERS}/unassignNumber", self.unassign_number)
        router.add("POST", f"{NUMBERS}/updateNumber", self.update_number)
        router.add("GET", f"{NUMBERS}/{{number}}", self.get_number)
        router.add("GET", f"{OPERATIONS}/{{operation}}", self.get_operation)
        router.add(
            "GET",
            f"{OPERATIONS}('{{operation}}')",
            self.get_operation,
            name=f"{OPERATIONS}/{{operation}}",
        )
        router.add("GET", "/admin/teams/userConfigurations", self.list_user_configurations)
        router.add("GET", "/admin/teams/userConfigurations/{user}", self.get_user_configuration)
        router.add("POST", f"{POLICY_ROOT}/userAssignments/assign", self.assign_policies)
        router.add("POST", f"{POLICY_ROOT}/userAssignments/unassign", self.unassign_policies)
        router.add("GET", f"{POLICY_ROOT}/getPolicyId(type={{type}},name={{name}})", self.policy_id)

    def _entity(self, body: dict[str, Any]) -> dict[str, Any]:
        if not self._config.wrap_entities:
            return body
        context = body.pop("@odata.context", None)
        wrapped: dict[str, Any] = {"value": body}
        if context is not None:
            wrapped = {"@odata.context": context, **wrapped}
        return wrapped

    def list_numbers(self, request: GraphRequest) -> GraphResponse:
        """GET numberAssignments with `$filter`, `$top` (at most 1000), `$skip` and paging."""
        clauses = parse_filter(request.query.get("$filter"), NUMBER_FILTER_FIELDS)
        clauses = [
            (name, telephony.normalize_number(value) or value)
            if name == "telephoneNumber" and isinstance(value, str)
            else (name, value)
            for name, value in clauses
        ]
        with self._state.lock:
            tenant = tenant_of(self._state, request)
            records = [number_json(r) for r in tenant.numbers.values()]
        chosen = [r for r in records if matches(r, clauses)]
        page, next_link = paginate(request, chosen, NUMBERS_PAGE_DEFAULT, NUMBERS_PAGE_MAX)
        return collection(
            request, "admin/teams/telephoneNumberManagement/numberAssignments", page, next_link
        )

    def get_number(self, request: GraphRequest) -> GraphResponse:
        """GET one numberAssignment by id."""
        with self._state.lock:
            tenant = tenant_of(self._state, request)
            for record in tenant.numbers.values():
                if record.id == request.params["number"]:
                    return GraphResponse(200, number_json(record))
        raise GraphError(404, "NotFound", "The telephone number was not found.")

    def assign_number(self, request: GraphRequest) -> GraphResponse:
        """POST assignNumber: 202 and a Location to poll; the outcome comes later.

        A number another user holds is refused at once (400), before any order exists.
        """
        body = request.json_object()
        _known_parameters("assignNumber", body)
        number = _number(body)
        target = _required_text(body, "assignmentTargetId")
        number_type = _number_type(body)
        category = body.get("assignmentCategory") or "primary"
        if category not in telephony.ASSIGNMENT_CATEGORIES:
            raise _bad(f"The value '{category}' is not valid for parameter 'assignmentCategory'.")
        location_id = body.get("locationId")
        with self._state.lock:
            tenant = tenant_of(self._state, request)
            user = tenant.users.get(target)
            ready_at = user.teams_ready_at if user is not None else None
            if ready_at is not None and math.isfinite(ready_at) and ready_at > self._state.clock():
                # Licensed, but Teams has not set the user up yet.
                raise GraphError(404, "NotFound", f"User '{target}' was not found.")
            held = tenant.numbers.get(number)
            if held is not None and held.assignment_target_id not in (None, target):
                raise _bad(
                    f"The telephone number {number} is already assigned to another user or "
                    "resource account."
                )
            operation = telephony.schedule(
                tenant,
                kind="assign",
                telephone_number=number,
                number_type=number_type,
                now=self._state.clock(),
                delay=self._config.operation_delay_seconds,
                assignment_target_id=target,
                assignment_category=category,
                location_id=location_id if isinstance(location_id, str) else None,
            )
        return self._accepted(request, operation.id)

    def unassign_number(self, request: GraphRequest) -> GraphResponse:
        """POST unassignNumber: 202 and a Location to poll; 404 when nobody holds the number."""
        body = request.json_object()
        _known_parameters("unassignNumber", body)
        number = _number(body)
        number_type = _number_type(body)
        with self._state.lock:
            tenant = tenant_of(self._state, request)
            held = tenant.numbers.get(number)
            if held is None or held.assignment_target_id is None:
                raise GraphError(
                    404, "NotFound", f"The telephone number {number} is not assigned to anyone."
                )
            operation = telephony.schedule(
                tenant,
                kind="unassign",
                telephone_number=number,
                number_type=number_type,
                now=self._state.clock(),
                delay=self._config.operation_delay_seconds,
            )
        return self._accepted(request, operation.id)

    @staticmethod
    def _accepted(request: GraphRequest, operation_id: str) -> GraphResponse:
        location = f"{request.base_url}{OPERATIONS}/{operation_id}"
        return GraphResponse(202, None, {"Location": location})

    def update_number(self, request: GraphRequest) -> GraphResponse:
        """POST updateNumber: location, network site and reverse lookup options, at once."""
        body = request.json_object()
        _known_parameters("updateNumber", body)
        number = _number(body)
        with self._state.lock:
            tenant = tenant_of(self._state, request)
            record = tenant.numbers.get(number)
            if record is None:
                raise GraphError(404, "NotFound", f"The telephone number {number} was not found.")
            # An empty string clears a value; null or absence keeps it.
            if isinstance(body.get("locationId"), str):
                record.location_id = body["locationId"] or None
            if isinstance(body.get("networkSiteId"), str):
                record.network_site_id = body["networkSiteId"] or None
            if isinstance(body.get("reverseNumberLookupOptions"), list):
                record.reverse_number_lookup_options = [
                    str(option) for option in body["reverseNumberLookupOptions"]
                ]
        return GraphResponse(200)

    def get_operation(self, request: GraphRequest) -> GraphResponse:
        """GET operations/{id}: the order's status and its per-number detail."""
        with self._state.lock:
            tenant = tenant_of(self._state, request)
            operation = tenant.operations.get(request.params["operation"])
            if operation is None:
                raise GraphError(404, "NotFound", "The operation was not found.")
            body = operation_json(request.base_url, tenant, operation)
        return GraphResponse(200, self._entity(body))

    def list_user_configurations(self, request: GraphRequest) -> GraphResponse:
        """GET userConfigurations with paging."""
        with self._state.lock:
            tenant = tenant_of(self._state, request)
            now = self._state.clock()
            values = [
                user_configuration_json(tenant, u)
                for u in tenant.users.values()
                if u.teams_ready_at is None or u.teams_ready_at <= now
            ]
        page, next_link = paginate(request, values, 100, 999)
        return collection(request, "admin/teams/userConfigurations", page, next_link)

    def get_user_configuration(self, request: GraphRequest) -> GraphResponse:
        """GET userConfigurations/{userId}."""
        with self._state.lock:
            tenant = tenant_of(self._state, request)
            user = _teams_user(tenant, request.params["user"], self._state.clock())
            payload = {
                "@odata.context": (
                    f"{request.base_url}/$metadata#admin/teams/userConfigurations/$entity"
                ),
                **user_configuration_json(tenant, user),
            }
        return GraphResponse(200, self._entity(payload))

    def policy_id(self, request: GraphRequest) -> GraphResponse:
        """GET policy/getPolicyId(type='...',name='...'): the tenant's opaque id for a name.

        Shape from the reference page teamsadministration-teamspolicyassignment-getpolicyid.
        """
        policy_type = _function_text(request.params["type"], "type")
        name = _function_text(request.params["name"], "name")
        with self._state.lock:
            tenant = tenant_of(self._state, request)
            policy = tenant.teams_policies.get((policy_type.lower(), name.lower()))
        if policy is None:
            raise GraphError(
                404, "NotFound", f"No policy of type '{policy_type}' named '{name}' was found."
            )
        detail = {
            "@odata.type": "#microsoft.graph.teamsAdministration.policyIdentifierDetail",
            "name": f"Tag:{policy.name}",
            "policyId": policy.policy_id,
        }
        return collection(
            request,
            "Collection(microsoft.graph.teamsAdministration.policyIdentifierDetail)",
            [detail],
            None,
        )

    def _assignments(self, request: GraphRequest, need_policy_id: bool) -> list[dict[str, str]]:
        body = request.json_object()
        _known_parameters("assign" if need_policy_id else "unassign", body)
        entries = body.get("value")
        if not isinstance(entries, list) or not entries:
            raise _bad("The parameter 'value' is required.")
        parsed: list[dict[str, str]] = []
        for entry in entries:
            if not isinstance(entry, dict):
                raise _bad("Each entry of 'value' must be a teamsPolicyUserAssignment.")
            for name in entry:
                if not name.startswith("@odata.") and name not in POLICY_ASSIGNMENT_PROPERTIES:
                    raise _bad(
                        f"The property '{name}' does not exist on type "
                        "'microsoft.graph.teamsAdministration.teamsPolicyUserAssignment'. Make "
                        "sure to only use property names that are defined by the type."
                    )
            names = (
                ("userId", "policyType", "policyId") if need_policy_id else ("userId", "policyType")
            )
            parsed.append({name: _required_text(entry, name) for name in names})
        return parsed

    def assign_policies(self, request: GraphRequest) -> GraphResponse:
        """POST policy/userAssignments/assign: 204; shows in effectivePolicyAssignments.

        `policyId` is the tenant's opaque id (getPolicyId); an unknown one is refused.
        """
        entries = self._assignments(request, need_policy_id=True)
        with self._state.lock:
            tenant = tenant_of(self._state, request)
            now = self._state.clock()
            users = [_teams_user(tenant, entry["userId"], now) for entry in entries]
            policies = []
            for entry in entries:
                policy = tenant.policy_by_id(entry["policyType"], entry["policyId"])
                if policy is None:
                    raise GraphError(
                        404,
                        "NotFound",
                        f"Policy '{entry['policyId']}' of type '{entry['policyType']}' was not "
                        "found.",
                    )
                policies.append(policy)
            for user, policy in zip(users, policies, strict=True):
                user.policies[policy.policy_type.lower()] = PolicyAssignment(
                    policy_type=policy.policy_type,
                    policy_id=policy.policy_id,
                    display_name=policy.name,
                )
                user.teams_modified = utc_now()
        return GraphResponse(204)

    def unassign_policies(self, request: GraphRequest) -> GraphResponse:
        """POST policy/userAssignments/unassign: 204."""
        entries = self._assignments(request, need_policy_id=False)
        with self._state.lock:
            tenant = tenant_of(self._state, request)
            now = self._state.clock()
            users = [_teams_user(tenant, entry["userId"], now) for entry in entries]
            for user, entry in zip(users, entries, strict=True):
                user.policies.pop(entry["policyType"].lower(), None)
                user.teams_modified = utc_now()
        return GraphResponse(204)

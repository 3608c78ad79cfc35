"""The Graph operations the sync needs, in Graph's own terms, each a look or a change.

Looks come first so a change is only made when needed; a change Graph answers with "already
there" counts as done. Long-running number orders (202 + `Location`) are polled here until
they succeed, are skipped (already assigned to this user) or fail; an order Graph refuses at
once (4xx) ends as failed with Graph's reason, and a status the metadata does not name ends
the wait with a look at where the number really is.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from services.graph.client import TenantGraph, to_error
from services.graph.errors import GraphError, GraphUnavailableError
from services.graph.wire import unwrap_entity

GLOBAL_ADMIN_ROLE_TEMPLATE_ID = "62e90394-69f5-4237-9190-012177145e10"
VOICE_ROUTING_POLICY_TYPE = "OnlineVoiceRoutingPolicy"
NUMBERS = "/admin/teams/telephoneNumberManagement/numberAssignments"
USER_FIELDS = "id,userPrincipalName,displayName,usageLocation,assignedLicenses,mail"
POLICY_ROOT = "/admin/teams/policy"
_NICKNAME_CHARS = re.compile(r"[^A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]")
# longRunningOperationStatus in the v1.0 metadata: notStarted, running, succeeded, failed,
# unknownFutureValue. The reference page's prose also names `skipped` (already done).
_RUNNING_STATES = ("notStarted", "running")
_DONE_STATES = ("succeeded", "skipped", "failed")
# Synchronous refusals that are about the permission or the token, not about the number.
_NOT_A_NUMBER_REFUSAL = frozenset({401, 403})


@dataclass(frozen=True)
class EntraUser:
    """An Entra account as the sync needs it."""

    id: str
    user_principal_name: str
    display_name: str
    usage_location: str | None
    licences: frozenset[str]
    mail: str | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> EntraUser:
        """Read Graph's user JSON."""
        licences = frozenset(
            str(entry.get("skuId"))
            for entry in body.get("assignedLicenses") or []
            if isinstance(entry, dict) and entry.get("skuId")
        )
        return cls(
            id=str(body["id"]),
            user_principal_name=str(body.get("userPrincipalName") or ""),
            display_name=str(body.get("displayName") or ""),
            usage_location=body.get("usageLocation") or None,
            licences=licences,
            mail=body.get("mail") or None,
        )


@dataclass(frozen=True)
class TeamsUser:
    """A user's Teams configuration: voice, numbers, policies (type -> id and name)."""

    user_id: str
    enterprise_voice: bool
    numbers: dict[str, str] = field(default_factory=dict)
    policies: dict[str, str] = field(default_factory=dict)
    policy_names: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> TeamsUser:
        """Read Graph's teamsUserConfiguration JSON (bare, or wrapped in `value`)."""
        body = unwrap_entity(body)
        numbers = {
            str(entry.get("telephoneNumber")): str(entry.get("assignmentCategory") or "")
            for entry in body.get("telephoneNumbers") or []
            if isinstance(entry, dict) and entry.get("telephoneNumber")
        }
        policies: dict[str, str] = {}
        names: dict[str, str] = {}
        for entry in body.get("effectivePolicyAssignments") or []:
            if not isinstance(entry, dict):
                continue
            assignment = entry.get("policyAssignment") or {}
            policy_type = str(entry.get("policyType") or "").lower()
            if policy_type and isinstance(assignment, dict):
                policies[policy_type] = str(assignment.get("policyId") or "")
                names[policy_type] = str(assignment.get("displayName") or "")
        return cls(
            user_id=str(body.get("id") or ""),
            enterprise_voice=bool(body.get("isEnterpriseVoiceEnabled")),
            numbers=numbers,
            policies=policies,
            policy_names=names,
        )

    def has_primary(self, number: str) -> bool:
        """Whether `number` is this user's primary number."""
        return self.numbers.get(number) == "primary"

    def policy(self, policy_type: str) -> str | None:
        """The id of the policy of this type in effect, if any."""
        return self.policies.get(policy_type.lower())


@dataclass(frozen=True)
class NumberOrder:
    """How a number order ended: `succeeded`, `skipped` (nothing to do), `failed`, or
    `unknown` (Graph named a status the metadata does not); `refused` when Graph turned the
    order down at once (4xx) rather than through a failed operation."""

    status: str
    detail: str | None = None
    refused: bool = False

    @property
    def ok(self) -> bool:
        """Whether the number is now where it was asked to be."""
        return self.status in ("succeeded", "skipped")


def read_operation(body: Any) -> NumberOrder | None:
    """A telephoneNumberLongRunningOperation's outcome, or None while it is still running.

    The reference page shows the operation wrapped in `"value"`; the metadata describes the
    bare entity: both are read. A status outside the metadata's enum (`unknownFutureValue`, or
    anything newer) is an outcome too, `unknown`, so nobody polls it for minutes.
    """
    operation = unwrap_entity(body)
    if not isinstance(operation, dict):
        return NumberOrder("unknown", "Microsoft sent no status for the number order.")
    status = str(operation.get("status") or "")
    if status in _RUNNING_STATES:
        return None
    details = [d for d in operation.get("numbers") or [] if isinstance(d, dict)]
    detail = next((str(d["statusDetail"]) for d in details if d.get("statusDetail")), None)
    if status in _DONE_STATES:
        return NumberOrder(status, detail)
    reason = f"Microsoft reported the number order's status as '{status or 'nothing'}'"
    return NumberOrder("unknown", f"{reason}: {detail}" if detail else f"{reason}.")


def read_number_holder(record: dict[str, Any]) -> str | None:
    """The object id a numberAssignment is assigned to, if any."""
    holder = record.get("assignmentTargetId")
    return str(holder) if holder else None


def read_policy_id(detail: dict[str, Any]) -> str | None:
    """The policy id in a policyIdentifierDetail (what getPolicyId answers)."""
    policy_id = detail.get("policyId")
    return str(policy_id) if policy_id else None


@dataclass(frozen=True)
class SkuPool:
    """A subscribedSku's licences: how many the tenant holds and how many are in use."""

    sku_id: str
    part_number: str
    enabled: int
    consumed: int

    @property
    def free(self) -> int:
        """Licences left to assign."""
        return self.enabled - self.consumed


def read_sku(sku: dict[str, Any]) -> SkuPool:
    """A subscribedSku as a pool of licences."""
    units = sku.get("prepaidUnits")
    enabled = units.get("enabled") if isinstance(units, dict) else 0
    return SkuPool(
        sku_id=str(sku.get("skuId") or "").lower(),
        part_number=str(sku.get("skuPartNumber") or ""),
        enabled=int(enabled or 0),
        consumed=int(sku.get("consumedUnits") or 0),
    )


def read_verified_domain(domain: dict[str, Any]) -> str | None:
    """A domain's name when the tenant has verified it."""
    name = domain.get("id")
    return str(name) if name and domain.get("isVerified") is True else None


def read_role_holder(assignment: dict[str, Any]) -> str | None:
    """The principal a unifiedRoleAssignment gives its role to."""
    principal = assignment.get("principalId")
    return str(principal) if principal else None


# What the client reads of each Graph type, by the type's name in the v1.0 metadata: the
# contract tests run these on the sandbox's answers and check every field they touch.
READERS: dict[str, Callable[[dict[str, Any]], object]] = {
    "microsoft.graph.user": EntraUser.from_json,
    "microsoft.graph.teamsAdministration.teamsUserConfiguration": TeamsUser.from_json,
    "microsoft.graph.teamsAdministration.telephoneNumberLongRunningOperation": read_operation,
    "microsoft.graph.teamsAdministration.numberAssignment": read_number_holder,
    "microsoft.graph.teamsAdministration.policyIdentifierDetail": read_policy_id,
    "microsoft.graph.unifiedRoleAssignment": read_role_holder,
    "microsoft.graph.domain": read_verified_domain,
    "microsoft.graph.subscribedSku": read_sku,
}


def mail_nickname(address: str) -> str:
    """A mailNickname Graph accepts, from the local part of an address."""
    local = address.split("@", 1)[0]
    cleaned = _NICKNAME_CHARS.sub("", local).strip(".")[:64]
    return cleaned or "user"


def _user_path(key: str) -> str:
    return "/users/" + quote(key, safe="@")


def _query(**options: str) -> str:
    return "?" + urlencode(options, quote_via=quote, safe="$,")


def _odata_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class GraphOperations:
    """What the sync asks of Graph in one tenant."""

    def __init__(
        self,
        graph: TenantGraph,
        *,
        poll_seconds: float = 1.0,
        operation_timeout: float = 300.0,
    ) -> None:
        self.graph = graph
        self.poll_seconds = max(0.001, poll_seconds)
        self.operation_timeout = operation_timeout

    # --- Entra users ---------------------------------------------------------------------

    async def find_user(self, key: str) -> EntraUser | None:
        """The account with this object id or sign-in name, if it exists."""
        body = await self.graph.get(_user_path(key) + _query(**{"$select": USER_FIELDS}))
        return EntraUser.from_json(body) if body else None

    async def create_user(
        self,
        *,
        display_name: str,
        user_principal_name: str,
        usage_location: str,
        password: str,
    ) -> tuple[EntraUser, bool]:
        """Create the account; if it exists already, return that one. True when created."""
        answer = await self.graph.send(
            "POST",
            "/users",
            {
                "accountEnabled": True,
                "displayName": display_name,
                "mailNickname": mail_nickname(user_principal_name),
                "userPrincipalName": user_principal_name,
                "usageLocation": usage_location,
                "passwordProfile": {"forceChangePasswordNextSignIn": True, "password": password},
            },
        )
        if answer.status == 201 and isinstance(answer.body, dict):
            body = {**answer.body, "usageLocation": usage_location, "assignedLicenses": []}
            return EntraUser.from_json(body), True
        if answer.status == 400 and _is_conflict(answer.error_message, answer.error_details):
            # Created by an earlier attempt whose answer was lost, or by someone else.
            existing = await self.find_user(user_principal_name)
            if existing is not None:
                return existing, False
        raise to_error(answer)

    async def update_user(self, user_id: str, changes: dict[str, Any]) -> None:
        """Change some properties of an account."""
        await self.graph.call("PATCH", _user_path(user_id), changes)

    async def set_licences(self, user_id: str, add: list[str], remove: list[str]) -> None:
        """Add and remove licences (SKU ids) in one request; adding one held is a no-op."""
        await self.graph.call(
            "POST",
            _user_path(user_id) + "/assignLicense",
            {
                "addLicenses": [{"skuId": sku, "disabledPlans": []} for sku in add],
                "removeLicenses": remove,
            },
        )

    # --- Teams ---------------------------------------------------------------------------

    async def teams_user(self, user_id: str) -> TeamsUser | None:
        """The user's Teams configuration, or None while Teams does not know the user yet."""
        body = await self.graph.get("/admin/teams/userConfigurations/" + quote(user_id))
        return TeamsUser.from_json(body) if body else None

    async def number_holder(self, number: str) -> str | None:
        """The object id of the user a number is assigned to, if any."""
        path = NUMBERS + _query(**{"$filter": f"telephoneNumber eq {_odata_text(number)}"})
        async for record in self.graph.items(path):
            return read_number_holder(record)
        return None

    async def assign_number(self, number: str, user_id: str) -> NumberOrder:
        """Make `number` the user's primary Direct Routing number; waits for the order."""
        order = await self._order(
            "assignNumber",
            {
                "telephoneNumber": number,
                "assignmentTargetId": user_id,
                "numberType": "directRouting",
                "assignmentCategory": "primary",
            },
        )
        if order.status != "unknown":
            return order
        # Graph named a status we cannot read: where the number is now is the answer.
        if await self.number_holder(number) == user_id:
            return NumberOrder("succeeded", order.detail)
        return NumberOrder("failed", f"{order.detail} The number is not on the user.")

    async def unassign_number(self, number: str) -> NumberOrder:
        """Take a Direct Routing number away from whoever holds it; waits for the order.

        Releasing a number nobody holds counts as done, however Graph words its refusal.
        """
        order = await self._order(
            "unassignNumber", {"telephoneNumber": number, "numberType": "directRouting"}
        )
        if order.ok:
            return order
        if await self.number_holder(number) is None:
            return NumberOrder("succeeded", order.detail)
        return order

    async def _order(self, action: str, body: dict[str, Any]) -> NumberOrder:
        answer = await self.graph.send("POST", f"{NUMBERS}/{action}", body)
        if answer.status >= 400:
            if answer.status in _NOT_A_NUMBER_REFUSAL:
                raise to_error(answer)
            # Refused at once (e.g. the number is another user's): Graph's reason is the detail.
            return NumberOrder(
                "failed",
                answer.error_message or f"Microsoft refused the order ({answer.status}).",
                refused=True,
            )
        location = answer.headers.get("location", "")
        if answer.status != 202 or not location:
            return NumberOrder("succeeded")
        return await self._wait_for(self.graph.relative(location))

    async def _wait_for(self, path: str) -> NumberOrder:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.operation_timeout
        interval = self.poll_seconds
        while True:
            await asyncio.sleep(interval)
            body = await self.graph.get(path)
            if body is None:
                raise GraphError("Microsoft lost track of the number order.", status=404)
            outcome = read_operation(body)
            if outcome is not None:
                return outcome
            if loop.time() > deadline:
                raise GraphUnavailableError(
                    "Microsoft is still working on the number order; the sync will check again.",
                    status=504,
                )
            interval = min(interval * 1.5, self.poll_seconds * 8)

    async def policy_id(self, policy_type: str, name: str, *, refresh: bool = False) -> str | None:
        """The tenant's opaque id of the policy of this type and name (getPolicyId), cached.

        `refresh` asks Graph again (the cached id was refused); None when no such policy.
        """
        key = (policy_type.lower(), name.lower())
        cache = self.graph.policy_ids
        if not refresh and key in cache:
            return cache[key]
        path = (
            f"{POLICY_ROOT}/getPolicyId(type={quote(_odata_text(policy_type), safe='')},"
            f"name={quote(_odata_text(name), safe='')})"
        )
        answer = await self.graph.send("GET", path)
        if answer.status == 404:
            cache.pop(key, None)
            return None
        if answer.status >= 400:
            raise to_error(answer)
        found = None
        values = answer.body.get("value") if isinstance(answer.body, dict) else None
        for detail in values if isinstance(values, list) else []:
            if isinstance(detail, dict) and (found := read_policy_id(detail)):
                break
        if found is None:
            cache.pop(key, None)
        else:
            cache[key] = found
        return found

    async def assign_policy(self, user_id: str, policy_type: str, policy_id: str) -> None:
        """Give the user a Teams policy (e.g. the voice routing policy) directly."""
        await self.graph.call(
            "POST",
            "/admin/teams/policy/userAssignments/assign",
            {
                "value": [
                    {
                        "@odata.type": (
                            "#microsoft.graph.teamsAdministration.teamsPolicyUserAssignment"
                        ),
                        "userId": user_id,
                        "policyType": policy_type,
                        "policyId": policy_id,
                    }
                ]
            },
        )

    # --- mail and roles ------------------------------------------------------------------

    async def send_mail(self, sender: str, to: str, subject: str, html: str) -> None:
        """Send an HTML e-mail from the sender's mailbox (not kept in Sent Items)."""
        await self.graph.call(
            "POST",
            _user_path(sender) + "/sendMail",
            {
                "message": {
                    "subject": subject,
                    "body": {"contentType": "html", "content": html},
                    "toRecipients": [{"emailAddress": {"address": to}}],
                },
                "saveToSentItems": False,
            },
        )

    async def is_global_admin(self, principal_id: str) -> bool:
        """Whether the person holds the Global Administrator role in this tenant, directly or
        through a role-assignable group they belong to (transitively)."""
        role = f"roleDefinitionId eq {_odata_text(GLOBAL_ADMIN_ROLE_TEMPLATE_ID)}"
        assignments = "/roleManagement/directory/roleAssignments"
        direct = assignments + _query(
            **{"$filter": f"principalId eq {_odata_text(principal_id)} and {role}"}
        )
        async for _ in self.graph.items(direct):
            return True
        holders: list[str] = []
        async for assignment in self.graph.items(assignments + _query(**{"$filter": role})):
            holder = read_role_holder(assignment)
            if holder and holder != principal_id and holder not in holders:
                holders.append(holder)
        # checkMemberGroups is transitive and takes at most 20 ids; ids that are not groups
        # (users, service principals) simply never match.
        for start in range(0, len(holders), 20):
            answer = await self.graph.send(
                "POST",
                _user_path(principal_id) + "/checkMemberGroups",
                {"groupIds": holders[start : start + 20]},
            )
            if answer.status == 404:
                return False  # no such user in this tenant: a member of nothing here
            if answer.status >= 400:
                raise to_error(answer)
            values = answer.body.get("value") if isinstance(answer.body, dict) else None
            if isinstance(values, list) and values:
                return True
        return False


def _is_conflict(message: str, details: list[dict[str, Any]]) -> bool:
    if any(str(d.get("code", "")).lower() == "objectconflict" for d in details):
        return True
    return "already exists" in message.lower()

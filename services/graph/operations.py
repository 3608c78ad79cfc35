"""The Graph operations the sync needs, in Graph's own terms, each a look or a change.

Looks come first so a change is only made when needed; a change Graph answers with "already
there" counts as done. Long-running number orders (202 + `Location`) are polled here until
they succeed, are skipped (already assigned to this user) or fail.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from services.graph.client import TenantGraph, to_error
from services.graph.errors import GraphError, GraphUnavailableError

GLOBAL_ADMIN_ROLE_TEMPLATE_ID = "62e90394-69f5-4237-9190-012177145e10"
VOICE_ROUTING_POLICY_TYPE = "OnlineVoiceRoutingPolicy"
NUMBERS = "/admin/teams/telephoneNumberManagement/numberAssignments"
USER_FIELDS = "id,userPrincipalName,displayName,usageLocation,assignedLicenses,mail"
_NICKNAME_CHARS = re.compile(r"[^A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]")
_DONE_STATES = ("succeeded", "skipped", "failed")


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
    """A user's Teams configuration: voice, numbers, policies."""

    user_id: str
    enterprise_voice: bool
    numbers: dict[str, str] = field(default_factory=dict)
    policies: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> TeamsUser:
        """Read Graph's teamsUserConfiguration JSON."""
        numbers = {
            str(entry.get("telephoneNumber")): str(entry.get("assignmentCategory") or "")
            for entry in body.get("telephoneNumbers") or []
            if isinstance(entry, dict) and entry.get("telephoneNumber")
        }
        policies: dict[str, str] = {}
        for entry in body.get("effectivePolicyAssignments") or []:
            if not isinstance(entry, dict):
                continue
            assignment = entry.get("policyAssignment") or {}
            policy_type = str(entry.get("policyType") or "")
            if policy_type and isinstance(assignment, dict):
                policies[policy_type.lower()] = str(
                    assignment.get("policyId") or assignment.get("displayName") or ""
                )
        return cls(
            user_id=str(body.get("id") or ""),
            enterprise_voice=bool(body.get("isEnterpriseVoiceEnabled")),
            numbers=numbers,
            policies=policies,
        )

    def has_primary(self, number: str) -> bool:
        """Whether `number` is this user's primary number."""
        return self.numbers.get(number) == "primary"

    def policy(self, policy_type: str) -> str | None:
        """The id of the policy of this type in effect, if any."""
        return self.policies.get(policy_type.lower())


@dataclass(frozen=True)
class NumberOrder:
    """How a number order ended: `succeeded`, `skipped` (nothing to do) or `failed`."""

    status: str
    detail: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the number is now where it was asked to be."""
        return self.status in ("succeeded", "skipped")


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
            holder = record.get("assignmentTargetId")
            return str(holder) if holder else None
        return None

    async def assign_number(self, number: str, user_id: str) -> NumberOrder:
        """Make `number` the user's primary Direct Routing number; waits for the order."""
        return await self._order(
            "assignNumber",
            {
                "telephoneNumber": number,
                "assignmentTargetId": user_id,
                "numberType": "directRouting",
                "assignmentCategory": "primary",
            },
        )

    async def unassign_number(self, number: str) -> NumberOrder:
        """Take a Direct Routing number away from whoever holds it; waits for the order."""
        return await self._order(
            "unassignNumber", {"telephoneNumber": number, "numberType": "directRouting"}
        )

    async def _order(self, action: str, body: dict[str, Any]) -> NumberOrder:
        answer = await self.graph.call("POST", f"{NUMBERS}/{action}", body)
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
            # Microsoft's published example wraps the operation in "value"; the API may not.
            operation = body.get("value", body)
            if not isinstance(operation, dict):
                operation = body
            status = str(operation.get("status") or "")
            if status in _DONE_STATES:
                details = [d for d in operation.get("numbers") or [] if isinstance(d, dict)]
                detail = next(
                    (str(d["statusDetail"]) for d in details if d.get("statusDetail")), None
                )
                return NumberOrder(status, detail)
            if loop.time() > deadline:
                raise GraphUnavailableError(
                    "Microsoft is still working on the number order; the sync will check again.",
                    status=504,
                )
            interval = min(interval * 1.5, self.poll_seconds * 8)

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
                    "body": {"contentType": "HTML", "content": html},
                    "toRecipients": [{"emailAddress": {"address": to}}],
                },
                "saveToSentItems": False,
            },
        )

    async def is_global_admin(self, principal_id: str) -> bool:
        """Whether the person holds the Global Administrator role in this tenant."""
        path = "/roleManagement/directory/roleAssignments" + _query(
            **{
                "$filter": f"principalId eq {_odata_text(principal_id)} and "
                f"roleDefinitionId eq {_odata_text(GLOBAL_ADMIN_ROLE_TEMPLATE_ID)}"
            }
        )
        async for _ in self.graph.items(path):
            return True
        return False


def _is_conflict(message: str, details: list[dict[str, Any]]) -> bool:
    if any(str(d.get("code", "")).lower() == "objectconflict" for d in details):
        return True
    return "already exists" in message.lower()

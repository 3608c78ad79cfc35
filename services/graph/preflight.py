"""`switchboard graph check`: before the first sync, is a tenant ready for Switchboard?

It signs in to the tenant, reads the application permissions the token carries, and checks
each thing the sync needs: the permissions (the least privileged one each call's reference
page names, or one it accepts instead), the verified domains, the Teams Phone licences with
free units, the voice routing policy by name, and the telephone number API. Each check is one
line: what was found, and the fix when something is missing.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from services.config import GraphSettings
from services.errors import DomainError
from services.graph.client import GraphService, TenantGraph
from services.graph.errors import GraphError
from services.graph.operations import (
    NUMBERS,
    VOICE_ROUTING_POLICY_TYPE,
    GraphOperations,
    read_sku,
    read_verified_domain,
)


@dataclass(frozen=True)
class Need:
    """An application permission the sync needs, what for, and the ones accepted instead."""

    permission: str
    purpose: str
    also_accepted: tuple[str, ...] = ()

    def met_by(self, roles: frozenset[str]) -> bool:
        """Whether the granted roles include this permission or one accepted instead."""
        return self.permission in roles or any(role in roles for role in self.also_accepted)


# The least privileged permission of each call (docs/TEAMS_SETUP.md lists the pages).
NEEDS = (
    Need(
        "User.ReadWrite.All",
        "create users, set their usage location and display name, assign licences",
        ("Directory.ReadWrite.All",),
    ),
    Need(
        "Domain.Read.All",
        "check e-mail addresses against the verified domains",
        ("Domain.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"),
    ),
    Need(
        "RoleManagement.Read.Directory",
        "confirm that whoever starts a sync is a Global Administrator",
        ("RoleManagement.Read.All", "RoleManagement.ReadWrite.Directory", "Directory.Read.All"),
    ),
    Need(
        "GroupMember.Read.All",
        "find Global Administrators who hold the role through a group",
        ("Group.Read.All", "Directory.Read.All"),
    ),
    Need(
        "TeamsTelephoneNumber.ReadWrite.All",
        "assign and release direct numbers, and follow the number orders",
    ),
    Need(
        "TeamsUserConfiguration.Read.All",
        "read each user's Teams configuration to confirm the sync",
    ),
    Need(
        "TeamsPolicyUserAssign.ReadWrite.All",
        "find the voice routing policy by name and assign it",
    ),
    Need(
        "Organization.Read.All",
        "read the Teams Phone licence pools (this check only)",
        ("Organization.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"),
    ),
)
MAIL_NEED = Need("Mail.Send", "send the confirmation and password e-mails from the sender")


class PreflightFailed(DomainError):
    """Some checks failed; the report says which and how to fix them."""


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        """`ok    name: detail`, or `FAIL  name: detail. Fix: ...`."""
        text = f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"
        return text if self.ok or not self.fix else f"{text} Fix: {self.fix}"


def token_roles(token: str) -> frozenset[str]:
    """The `roles` claim of an access token Switchboard was just given (read, not verified)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return frozenset()
    roles = claims.get("roles") if isinstance(claims, dict) else None
    return frozenset(str(r) for r in roles) if isinstance(roles, list) else frozenset()


def _grant(permission: str) -> str:
    return (
        f"add the Microsoft Graph application permission {permission} to Switchboard's app "
        "registration, then have an administrator of this tenant grant admin consent again."
    )


async def _read(graph: TenantGraph, path: str) -> tuple[Any, str]:
    """The answer's body, or an empty body and what went wrong."""
    try:
        answer = await graph.send("GET", path)
    except GraphError as error:
        return None, error.message
    if answer.status >= 400:
        reason = answer.error_message or f"Microsoft Graph answered {answer.status}"
        if answer.status == 403:
            reason = f"Microsoft Graph refused it (403, a permission is missing): {reason}"
        return None, reason
    return answer.body, ""


async def preflight(graph: GraphService, settings: GraphSettings, tenant_id: str) -> list[Check]:
    """Every check for one tenant, in order; later checks are skipped if sign-in fails."""
    tenant = tenant_id.lower()
    try:
        token = await graph.tokens.token(tenant)
    except GraphError as error:
        return [
            Check(
                "sign-in",
                False,
                error.message,
                "an administrator of this tenant grants Switchboard admin consent at "
                f"https://login.microsoftonline.com/{tenant}/adminconsent?client_id="
                f"{(settings.credential_for(tenant) or ('<app id>', ''))[0]}",
            )
        ]
    checks = [Check("sign-in", True, "Switchboard got a token for this tenant.")]
    roles = token_roles(token)
    needs = list(NEEDS)
    mail_here = bool(settings.mail_sender) and settings.mail_tenant_id in ("", tenant)
    if mail_here:
        needs.append(MAIL_NEED)
    for need in needs:
        held = need.met_by(roles)
        checks.append(
            Check(
                f"permission {need.permission}",
                held,
                f"granted, to {need.purpose}."
                if held
                else f"not granted; needed to {need.purpose}.",
                _grant(need.permission),
            )
        )
    if not mail_here and "Mail.Send" in roles:
        where = (
            f"mail goes from the provider's own tenant ({settings.mail_tenant_id})"
            if settings.mail_sender
            else "no sender mailbox is configured (MAIL_SENDER), so Switchboard sends no mail"
        )
        checks.append(
            Check(
                "permission Mail.Send",
                False,
                f"granted here, but {where}; it lets Switchboard send as anyone in this tenant.",
                "remove Mail.Send from the permissions this tenant consented to.",
            )
        )
    ops = GraphOperations(graph.tenant(tenant))
    checks.append(await _domains(ops.graph))
    checks.extend(await _licences(ops.graph, settings))
    checks.append(await _policy(ops, settings))
    checks.append(await _numbers(ops.graph))
    return checks


async def _domains(graph: TenantGraph) -> Check:
    body, problem = await _read(graph, "/domains")
    if problem:
        return Check("verified domains", False, problem, _grant("Domain.Read.All"))
    values = body.get("value") if isinstance(body, dict) else None
    names = (
        sorted(n for d in values if isinstance(d, dict) and (n := read_verified_domain(d)))
        if isinstance(values, list)
        else []
    )
    if not names:
        return Check(
            "verified domains",
            False,
            "the tenant has no verified domain, so no user can be created.",
            "verify the company's domain in the Microsoft 365 admin center (Settings > Domains).",
        )
    return Check("verified domains", True, ", ".join(names))


async def _licences(graph: TenantGraph, settings: GraphSettings) -> list[Check]:
    body, problem = await _read(graph, "/subscribedSkus")
    if problem:
        return [Check("Teams Phone licences", False, problem, _grant("Organization.Read.All"))]
    values = body.get("value") if isinstance(body, dict) else None
    pools = [read_sku(s) for s in values if isinstance(s, dict)] if isinstance(values, list) else []
    by_id = {pool.sku_id: pool for pool in pools}
    checks = []
    for label, sku_id in (("Essentials", settings.essentials_sku), ("Basic", settings.basic_sku)):
        if label == "Basic" and sku_id == settings.essentials_sku:
            continue
        pool = by_id.get(sku_id.lower())
        if pool is None:
            held = ", ".join(sorted(p.part_number for p in pools)) or "none"
            checks.append(
                Check(
                    f"{label} licence {sku_id}",
                    False,
                    f"the tenant has no such subscription (it has: {held}).",
                    "buy the Teams Phone licences, or set LICENCE_SKU_ESSENTIALS / "
                    "LICENCE_SKU_BASIC to the SKU id the tenant holds.",
                )
            )
            continue
        checks.append(
            Check(
                f"{label} licence {pool.part_number or sku_id}",
                pool.free > 0,
                f"{pool.free} of {pool.enabled} free.",
                "buy more licences in the Microsoft 365 admin center (Billing > Licenses).",
            )
        )
    return checks


async def _policy(ops: GraphOperations, settings: GraphSettings) -> Check:
    name = settings.voice_routing_policy
    if not name:
        return Check(
            "voice routing policy",
            True,
            "none configured (VOICE_ROUTING_POLICY): users keep the tenant's global policy.",
        )
    try:
        policy_id = await ops.policy_id(VOICE_ROUTING_POLICY_TYPE, name, refresh=True)
    except GraphError as error:
        return Check(
            f"voice routing policy “{name}”",
            False,
            error.message,
            _grant("TeamsPolicyUserAssign.ReadWrite.All"),
        )
    if policy_id is None:
        return Check(
            f"voice routing policy “{name}”",
            False,
            "Teams has no voice routing policy of that name in this tenant.",
            "create it in the Teams admin center (Voice > Voice routing policies), or correct "
            "VOICE_ROUTING_POLICY.",
        )
    return Check(f"voice routing policy “{name}”", True, "found.")


async def _numbers(graph: TenantGraph) -> Check:
    _, problem = await _read(graph, NUMBERS + "?$top=1")
    if problem:
        return Check(
            "telephone number API", False, problem, _grant("TeamsTelephoneNumber.ReadWrite.All")
        )
    return Check("telephone number API", True, "answers.")

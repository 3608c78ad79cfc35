"""The application permissions each Graph endpoint of the sandbox requires.

Taken from the Permissions table of each API's v1.0 reference page (learn.microsoft.com/graph/
api/<page>): any one of the listed sets will do; a set holds permissions needed together. A
caller whose token lacks all of them is refused with Graph's 403.
"""

from __future__ import annotations

from collections.abc import Iterable

Requirement = tuple[frozenset[str], ...]


def _any(*permissions: str) -> Requirement:
    return tuple(frozenset({p}) for p in permissions)


def _all(*permissions: str) -> frozenset[str]:
    return frozenset(permissions)


_USER_READ = _any(
    "User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"
)
_NUMBERS_READ = _any("TeamsTelephoneNumber.Read.All", "TeamsTelephoneNumber.ReadWrite.All")
_NUMBERS_WRITE = _any("TeamsTelephoneNumber.ReadWrite.All")
_TEAMS_POLICY = _any("TeamsPolicyUserAssign.ReadWrite.All")

NUMBERS = "/admin/teams/telephoneNumberManagement/numberAssignments"
OPERATIONS = "/admin/teams/telephoneNumberManagement/operations"

# "METHOD route template" -> what the reference page accepts.
REQUIRED: dict[str, Requirement] = {
    # user-list, user-get
    "GET /users": _USER_READ,
    "GET /users/{user}": _USER_READ,
    # user-post-users (least privileged: User.ReadWrite.All)
    "POST /users": _any("User.ReadWrite.All", "Directory.ReadWrite.All"),
    # user-update
    "PATCH /users/{user}": _any("User.ReadWrite.All", "Directory.ReadWrite.All"),
    # user-delete
    "DELETE /users/{user}": _any("User.ReadWrite.All"),
    # user-assignlicense (least privileged: LicenseAssignment.ReadWrite.All)
    "POST /users/{user}/assignLicense": _any(
        "LicenseAssignment.ReadWrite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"
    ),
    # directoryobject-checkmembergroups, "Group memberships for a user"
    "POST /users/{user}/checkMemberGroups": (
        _all("User.Read.All", "GroupMember.Read.All"),
        _all("User.ReadWrite.All", "GroupMember.Read.All"),
        _all("User.Read.All", "Group.Read.All"),
        _all("User.ReadWrite.All", "Group.Read.All"),
        _all("Directory.Read.All"),
    ),
    # user-sendmail
    "POST /users/{user}/sendMail": _any("Mail.Send"),
    # subscribedsku-list (least privileged: Organization.Read.All)
    "GET /subscribedSkus": _any(
        "Organization.Read.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "Organization.ReadWrite.All",
    ),
    # domain-list (least privileged: Domain.Read.All)
    "GET /domains": _any("Domain.Read.All", "Domain.ReadWrite.All", "Directory.Read.All"),
    # rbacapplication-list-roleassignments (least privileged: RoleManagement.Read.Directory)
    "GET /roleManagement/directory/roleAssignments": _any(
        "RoleManagement.Read.Directory",
        "RoleManagement.Read.All",
        "RoleManagement.ReadWrite.Directory",
        "Directory.Read.All",
    ),
    # teamsadministration-telephonenumbermanagementroot-list-numberassignments, -get
    f"GET {NUMBERS}": _NUMBERS_READ,
    f"GET {NUMBERS}/{{number}}": _NUMBERS_READ,
    # teamsadministration-numberassignment-assignnumber, -unassignnumber, -updatenumber
    f"POST {NUMBERS}/assignNumber": _NUMBERS_WRITE,
    f"POST {NUMBERS}/unassignNumber": _NUMBERS_WRITE,
    f"POST {NUMBERS}/updateNumber": _NUMBERS_WRITE,
    # teamsadministration-telephonenumberlongrunningoperation-get
    f"GET {OPERATIONS}/{{operation}}": _NUMBERS_READ,
    # teamsadministration-teamsadminroot-list-userconfigurations, -teamsuserconfiguration-get
    "GET /admin/teams/userConfigurations": _any("TeamsUserConfiguration.Read.All"),
    "GET /admin/teams/userConfigurations/{user}": _any("TeamsUserConfiguration.Read.All"),
    # teamsadministration-teamspolicyuserassignment-assign, -unassign; -getpolicyid
    "POST /admin/teams/policy/userAssignments/assign": _TEAMS_POLICY,
    "POST /admin/teams/policy/userAssignments/unassign": _TEAMS_POLICY,
    "GET /admin/teams/policy/getPolicyId(type={type},name={name})": _TEAMS_POLICY,
}


def allowed(method: str, template: str, roles: Iterable[str]) -> bool:
    """Whether a token with these roles may call the route; unknown routes are refused."""
    requirement = REQUIRED.get(f"{method.upper()} {template}")
    if requirement is None:
        return False
    held = frozenset(roles)
    return any(needed <= held for needed in requirement)

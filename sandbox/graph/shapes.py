"""Graph's JSON shapes for the sandbox's records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sandbox.models import (
    NumberAssignment,
    NumberOperation,
    RoleAssignment,
    Sku,
    Tenant,
    User,
    graph_time,
    opaque_id,
)

USER_TYPE = "microsoft.graph.user"
# longRunningOperationStatus in the v1.0 metadata. A state outside it (the sandbox's
# `skipped`, "already assigned to this user") goes out as the sentinel, as Graph sends it.
LONG_RUNNING_STATUSES = ("notStarted", "running", "succeeded", "failed", "unknownFutureValue")
DEFAULT_USER_PROPERTIES = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)
# Properties a client may set with POST or PATCH /users.
WRITABLE_USER_PROPERTIES = (
    "accountEnabled",
    "businessPhones",
    "city",
    "companyName",
    "country",
    "department",
    "displayName",
    "employeeId",
    "givenName",
    "jobTitle",
    "mail",
    "mailNickname",
    "mobilePhone",
    "officeLocation",
    "otherMails",
    "passwordPolicies",
    "passwordProfile",
    "postalCode",
    "preferredLanguage",
    "state",
    "streetAddress",
    "surname",
    "usageLocation",
    "userPrincipalName",
)
READ_ONLY_USER_PROPERTIES = ("id", "createdDateTime", "assignedLicenses", "userType")
USER_PROPERTIES = tuple(
    sorted(set(DEFAULT_USER_PROPERTIES + WRITABLE_USER_PROPERTIES + READ_ONLY_USER_PROPERTIES))
)
_LIST_PROPERTIES = ("businessPhones", "otherMails")


def user_json(user: User, select: Sequence[str] | None = None) -> dict[str, Any]:
    """A user with the default property set, or exactly the `$select`ed properties."""
    full: dict[str, Any] = {}
    for name in select or DEFAULT_USER_PROPERTIES:
        if name == "id":
            full[name] = user.id
        elif name == "createdDateTime":
            full[name] = graph_time(user.created)
        elif name == "assignedLicenses":
            full[name] = [{"disabledPlans": [], "skuId": sku_id} for sku_id in user.licenses]
        elif name == "userType":
            full[name] = "Member"
        elif name == "passwordProfile":
            full[name] = None
        elif name in _LIST_PROPERTIES:
            full[name] = list(user.props.get(name) or [])
        else:
            full[name] = user.props.get(name)
    return full


def user_filter_view(user: User, names: Sequence[str]) -> dict[str, Any]:
    """The named properties of a user, for `$filter` matching."""
    return user_json(user, names)


def sku_json(tenant: Tenant, sku: Sku) -> dict[str, Any]:
    """A subscribedSku."""
    return {
        "accountId": tenant.id,
        "appliesTo": "User",
        "capabilityStatus": "Enabled",
        "consumedUnits": sku.consumed_units,
        "id": f"{tenant.id}_{sku.sku_id}",
        "prepaidUnits": {
            "enabled": sku.enabled_units,
            "suspended": 0,
            "warning": 0,
            "lockedOut": 0,
        },
        "servicePlans": [],
        "skuId": sku.sku_id,
        "skuPartNumber": sku.sku_part_number,
    }


def role_assignment_json(assignment: RoleAssignment) -> dict[str, Any]:
    """A unifiedRoleAssignment."""
    return {
        "id": assignment.id,
        "principalId": assignment.principal_id,
        "roleDefinitionId": assignment.role_definition_id,
        "directoryScopeId": assignment.directory_scope_id,
    }


def number_json(record: NumberAssignment) -> dict[str, Any]:
    """A teamsAdministration numberAssignment."""
    return {
        "@odata.type": "#microsoft.graph.teamsAdministration.numberAssignment",
        "id": record.id,
        "telephoneNumber": record.telephone_number,
        # Not nullable in the metadata; Direct Routing numbers have no operator.
        "operatorId": "",
        "numberType": record.number_type,
        "activationState": record.activation_state,
        "capabilities": ["userAssignment"],
        "locationId": record.location_id,
        "civicAddressId": None,
        "networkSiteId": record.network_site_id,
        "assignmentTargetId": record.assignment_target_id,
        "assignmentCategory": record.assignment_category,
        "portInStatus": None,
        "assignmentStatus": record.assignment_status,
        "isoCountryCode": None,
        "city": None,
        "numberSource": "online",
        "supportedCustomerActions": ["locationUpdate"],
        "reverseNumberLookupOptions": list(record.reverse_number_lookup_options),
    }


def operation_json(base_url: str, tenant: Tenant, operation: NumberOperation) -> dict[str, Any]:
    """A telephoneNumberLongRunningOperation with its per-number details."""
    record_id = opaque_id(f"{tenant.id}|{operation.telephone_number}")
    detail: dict[str, Any] = {
        "resourceLocation": (
            f"{base_url}/admin/teams/telephoneNumberManagement/numberAssignments/{record_id}"
        ),
        "status": _long_running_status(operation.number_status),
        "statusDetail": operation.status_detail,
    }
    return {
        "@odata.context": (
            f"{base_url}/$metadata#admin/teams/telephoneNumberManagement/operations/$entity"
        ),
        "@odata.type": "#microsoft.graph.teamsAdministration.telephoneNumberLongRunningOperation",
        "id": operation.id,
        "createdDateTime": graph_time(operation.created),
        "status": _long_running_status(operation.status),
        "numbers": [detail],
    }


def _long_running_status(status: str) -> str:
    return status if status in LONG_RUNNING_STATUSES else "unknownFutureValue"


def domain_json(name: str, is_default: bool) -> dict[str, Any]:
    """A verified domain of the tenant."""
    return {
        "id": name,
        "authenticationType": "Managed",
        "availabilityStatus": None,
        "isAdminManaged": True,
        "isDefault": is_default,
        "isInitial": is_default,
        "isRoot": True,
        "isVerified": True,
        "supportedServices": ["Email", "OfficeCommunicationsOnline"],
        "passwordNotificationWindowInDays": 14,
        "passwordValidityPeriodInDays": 2147483647,
        "state": None,
    }


def user_configuration_json(tenant: Tenant, user: User) -> dict[str, Any]:
    """A teamsUserConfiguration: voice flag, numbers and effective policies."""
    features: list[str] = []
    for sku_id in user.licenses:
        sku = tenant.skus.get(sku_id)
        for feature in sku.feature_types if sku else ():
            if feature not in features:
                features.append(feature)
    return {
        "id": user.id,
        "userPrincipalName": user.upn,
        "tenantId": tenant.id,
        "isEnterpriseVoiceEnabled": user.enterprise_voice_enabled,
        "telephoneNumbers": [
            {"telephoneNumber": n.telephone_number, "assignmentCategory": n.assignment_category}
            for n in tenant.numbers_of(user.id)
        ],
        "effectivePolicyAssignments": [
            {
                "policyType": p.policy_type,
                "policyAssignment": {
                    "displayName": p.display_name,
                    "assignmentType": "direct",
                    "policyId": p.policy_id,
                    "groupId": None,
                },
            }
            for p in user.policies.values()
        ],
        "featureTypes": features,
        "accountType": "user",
        "createdDateTime": graph_time(user.created),
        "modifiedDateTime": graph_time(user.teams_modified),
    }

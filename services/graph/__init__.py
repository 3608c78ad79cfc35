"""Microsoft Graph: tokens, paced and batched requests, and the operations the sync needs."""

from services.graph.client import GraphService, TenantGraph
from services.graph.domains import VerifiedDomains
from services.graph.errors import (
    GraphAuthenticationError,
    GraphError,
    GraphNotConfiguredError,
    GraphNotFoundError,
    GraphUnavailableError,
)
from services.graph.operations import (
    GLOBAL_ADMIN_ROLE_TEMPLATE_ID,
    VOICE_ROUTING_POLICY_TYPE,
    EntraUser,
    GraphOperations,
    NumberOrder,
    TeamsUser,
)
from services.graph.roles import GlobalAdminCheck

__all__ = [
    "GLOBAL_ADMIN_ROLE_TEMPLATE_ID",
    "VOICE_ROUTING_POLICY_TYPE",
    "EntraUser",
    "GlobalAdminCheck",
    "GraphAuthenticationError",
    "GraphError",
    "GraphNotConfiguredError",
    "GraphNotFoundError",
    "GraphOperations",
    "GraphService",
    "GraphUnavailableError",
    "NumberOrder",
    "TeamsUser",
    "TenantGraph",
    "VerifiedDomains",
]

"""Asking Microsoft whether an admin really is the tenant's Global Administrator."""

from __future__ import annotations

import logging

from services.graph.client import GraphService
from services.graph.errors import GraphError
from services.graph.operations import GraphOperations

logger = logging.getLogger(__name__)


class GlobalAdminCheck:
    """Graph's answer to "is this person a Global Administrator of this tenant?"."""

    def __init__(self, graph: GraphService) -> None:
        self.graph = graph

    async def __call__(self, tenant_id: str, aad_object_id: str) -> bool:
        """True when the person holds the Global Administrator role, directly or through a
        group they belong to (transitively).

        Raises GraphError when Graph cannot be asked; callers refuse in that case too.
        """
        operations = GraphOperations(self.graph.tenant(tenant_id))
        try:
            return await operations.is_global_admin(aad_object_id)
        except GraphError:
            logger.warning("Could not check the Global Administrator role in tenant %s", tenant_id)
            raise

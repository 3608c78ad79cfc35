"""The e-mail domains a tenant accepts: its verified domains in Microsoft 365 (GET /domains).

An address outside them would be refused by Graph only at sync time, after the form had used
up a licence, a number and an extension; asking when the admin submits the form says so at
once. The list is kept per tenant for an hour and read again when an address misses it (a
domain verified minutes ago is found).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from services.errors import ValidationError
from services.graph.client import GraphService
from services.graph.errors import GraphError
from services.graph.operations import read_verified_domain

logger = logging.getLogger(__name__)

DOMAINS_MAX_AGE_SECONDS = 3600.0


class VerifiedDomains:
    """Each tenant's verified domains, cached; `check` refuses an address outside them."""

    def __init__(
        self,
        graph: GraphService,
        *,
        max_age_seconds: float = DOMAINS_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.graph = graph
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._cache: dict[str, tuple[frozenset[str], float]] = {}

    async def domains(self, tenant_id: str, *, refresh: bool = False) -> frozenset[str]:
        """The tenant's verified domains, lower-cased (from the cache unless stale or asked)."""
        key = tenant_id.lower()
        cached = self._cache.get(key)
        if cached is not None and not refresh and self._clock() - cached[1] < self.max_age_seconds:
            return cached[0]
        found: set[str] = set()
        async for domain in self.graph.tenant(key).items("/domains"):
            name = read_verified_domain(domain)
            if name:
                found.add(name.lower())
        domains = frozenset(found)
        self._cache[key] = (domains, self._clock())
        return domains

    async def __call__(self, tenant_id: str, email: str) -> None:
        """Refuse an address whose domain the tenant has not verified; the form field is e-mail.

        When Graph cannot be asked, the address is let through: the sync reports it later.
        """
        domain = email.rsplit("@", 1)[-1].lower()
        try:
            domains = await self.domains(tenant_id)
            if domain not in domains:
                domains = await self.domains(tenant_id, refresh=True)
        except GraphError as error:
            logger.warning(
                "Could not read the verified domains of tenant %s (%s); the address is not checked",
                tenant_id,
                error.status,
            )
            return
        if not domains or domain in domains:
            return
        accepted = ", ".join(sorted(domains))
        raise ValidationError(
            f"{domain} is not a domain of this organisation's Microsoft 365, so Microsoft would "
            f"refuse the account. Use an address at {accepted}.",
            field="email",
        )

"""Counters of what reached the sandbox, per tenant, for tests and benchmarks to read."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

NO_TENANT = "-"


@dataclass
class TenantStats:
    """What one tenant's callers sent and what they got back."""

    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    writes_accepted: int = 0
    throttled: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    tokens_issued: int = 0
    tokens_refused: int = 0

    def copy(self) -> TenantStats:
        """An independent copy, safe to read while the servers run."""
        return TenantStats(
            requests=Counter(self.requests),
            statuses=Counter(self.statuses),
            writes_accepted=self.writes_accepted,
            throttled=self.throttled,
            faults=Counter(self.faults),
            batches=self.batches,
            tokens_issued=self.tokens_issued,
            tokens_refused=self.tokens_refused,
        )

    def count(self, method: str, route: str) -> int:
        """How many `method route` requests arrived, e.g. `count("POST", "/users")`."""
        return self.requests[f"{method.upper()} {route}"]

    def to_json(self) -> dict[str, Any]:
        """The counters as the admin API shows them."""
        return {
            "requests": dict(sorted(self.requests.items())),
            "statuses": {str(code): n for code, n in sorted(self.statuses.items())},
            "writesAccepted": self.writes_accepted,
            "throttled": self.throttled,
            "faults": dict(sorted(self.faults.items())),
            "batches": self.batches,
            "tokensIssued": self.tokens_issued,
            "tokensRefused": self.tokens_refused,
        }


class Stats:
    """Thread-safe counters keyed by tenant id (`-` when no tenant could be told)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tenants: dict[str, TenantStats] = {}

    def _of(self, tenant_id: str | None) -> TenantStats:
        key = tenant_id or NO_TENANT
        stats = self._tenants.get(key)
        if stats is None:
            stats = self._tenants[key] = TenantStats()
        return stats

    def request(self, tenant_id: str | None, method: str, route: str) -> None:
        """Count a request by method and route template."""
        with self._lock:
            self._of(tenant_id).requests[f"{method.upper()} {route}"] += 1

    def status(self, tenant_id: str | None, status: int) -> None:
        """Count a response status."""
        with self._lock:
            self._of(tenant_id).statuses[status] += 1

    def write_accepted(self, tenant_id: str) -> None:
        """Count a write that passed the throttle."""
        with self._lock:
            self._of(tenant_id).writes_accepted += 1

    def throttled(self, tenant_id: str) -> None:
        """Count a 429 sent."""
        with self._lock:
            self._of(tenant_id).throttled += 1

    def fault(self, tenant_id: str | None, kind: str) -> None:
        """Count an injected fault (`unavailable`, `slow` or `dropped`)."""
        with self._lock:
            self._of(tenant_id).faults[kind] += 1

    def batch(self, tenant_id: str) -> None:
        """Count a JSON batch envelope."""
        with self._lock:
            self._of(tenant_id).batches += 1

    def token(self, tenant_id: str, issued: bool) -> None:
        """Count a token request, issued or refused."""
        with self._lock:
            stats = self._of(tenant_id)
            if issued:
                stats.tokens_issued += 1
            else:
                stats.tokens_refused += 1

    def tenant(self, tenant_id: str) -> TenantStats:
        """A copy of one tenant's counters (all zero if nothing arrived)."""
        with self._lock:
            stats = self._tenants.get(tenant_id)
            return stats.copy() if stats else TenantStats()

    def to_json(self, tenant_id: str | None = None) -> dict[str, Any]:
        """All tenants' counters, or one tenant's, as the admin API shows them."""
        with self._lock:
            if tenant_id is not None:
                stats = self._tenants.get(tenant_id)
                return (stats or TenantStats()).to_json()
            return {key: stats.to_json() for key, stats in sorted(self._tenants.items())}

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            self._tenants.clear()

"""Sliding-window write limits per (tenant, app) and per tenant, as Graph applies them."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from sandbox.config import ThrottleLimits


class SlidingWindow:
    """At most `limit` events in any `window` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._events: deque[float] = deque()

    def wait_needed(self, now: float) -> float:
        """Seconds until one more event fits (0 when it fits now)."""
        horizon = now - self.window
        while self._events and self._events[0] <= horizon:
            self._events.popleft()
        if len(self._events) < self.limit:
            return 0.0
        return self._events[len(self._events) - self.limit] + self.window - now

    def add(self, now: float) -> None:
        """Record an event at `now`."""
        self._events.append(now)

    def __len__(self) -> int:
        return len(self._events)


class Throttle:
    """Admits or refuses writes; refused writes do not use up the quota."""

    def __init__(
        self, limits: ThrottleLimits | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._limits = limits or ThrottleLimits()
        self._per_app: dict[tuple[str, str], SlidingWindow] = {}
        self._per_tenant: dict[str, SlidingWindow] = {}

    @property
    def limits(self) -> ThrottleLimits:
        """The limits in force."""
        return self._limits

    def configure(self, limits: ThrottleLimits) -> None:
        """Apply new limits and start every window afresh."""
        with self._lock:
            self._limits = limits
            self._per_app.clear()
            self._per_tenant.clear()

    def reset(self) -> None:
        """Start every window afresh."""
        self.configure(self._limits)

    def admit_write(self, tenant_id: str, app_id: str) -> int | None:
        """Record a write and return None, or return the whole seconds to wait (at least 1)."""
        with self._lock:
            now = self._clock()
            limits = self._limits
            app_window = self._per_app.get((tenant_id, app_id))
            if app_window is None:
                app_window = SlidingWindow(limits.app_write_limit, limits.app_write_window)
                self._per_app[(tenant_id, app_id)] = app_window
            tenant_window = self._per_tenant.get(tenant_id)
            if tenant_window is None:
                tenant_window = SlidingWindow(limits.tenant_write_limit, limits.tenant_write_window)
                self._per_tenant[tenant_id] = tenant_window
            wait = max(app_window.wait_needed(now), tenant_window.wait_needed(now))
            if wait > 0:
                return max(1, math.ceil(wait))
            app_window.add(now)
            tenant_window.add(now)
            return None

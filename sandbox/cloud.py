"""The sandbox's parts in one place: state, signing key, throttle, faults and counters."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from sandbox.config import FaultConfig, SandboxConfig, ThrottleLimits
from sandbox.faults import FaultInjector
from sandbox.state import SandboxState
from sandbox.stats import Stats
from sandbox.throttle import Throttle
from sandbox.tokens import TokenIssuer


class Sandbox:
    """One simulated Microsoft cloud, shared by the Graph and Entra servers."""

    def __init__(
        self, config: SandboxConfig | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config or SandboxConfig()
        self.state = SandboxState(clock)
        self.issuer = TokenIssuer()
        self.stats = Stats()
        self.throttle = Throttle(self.config.throttle, clock)
        self.faults = FaultInjector(self.config.faults)

    def set_faults(self, config: FaultConfig | None = None, **changes: Any) -> FaultConfig:
        """Replace the fault settings, or change some fields (e.g. `unavailable_rate=0.2`)."""
        chosen = dataclasses.replace(config or self.faults.config, **changes)
        self.config.faults = chosen
        self.faults.configure(chosen)
        return chosen

    def set_throttle(self, limits: ThrottleLimits | None = None, **changes: Any) -> ThrottleLimits:
        """Replace the throttle limits, or change some fields (e.g. `app_write_limit=5`)."""
        chosen = dataclasses.replace(limits or self.throttle.limits, **changes)
        self.config.throttle = chosen
        self.throttle.configure(chosen)
        return chosen

    def reset(self) -> None:
        """Forget all state and counters, and start the throttle windows afresh."""
        self.state.reset()
        self.stats.reset()
        self.throttle.reset()

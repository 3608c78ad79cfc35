"""Injected failures: 503s, slow answers and dropped connections, drawn from a seeded random."""

from __future__ import annotations

import enum
import random
import threading

from sandbox.config import FaultConfig


class Fault(enum.Enum):
    """What happens to one request."""

    NONE = "none"
    UNAVAILABLE = "unavailable"
    SLOW = "slow"
    DROPPED = "dropped"


class FaultInjector:
    """Draws a fault per request; the same seed and request order give the same faults."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self._config = config or FaultConfig()
        self._random = random.Random(self._config.seed)

    @property
    def config(self) -> FaultConfig:
        """The settings in force."""
        return self._config

    def configure(self, config: FaultConfig) -> None:
        """Apply new settings and restart the random sequence from their seed."""
        with self._lock:
            self._config = config
            self._random = random.Random(config.seed)

    def draw(self) -> Fault:
        """Decide the fate of the next request."""
        with self._lock:
            config = self._config
            if not (config.drop_rate or config.unavailable_rate or config.slow_rate):
                return Fault.NONE
            roll = self._random.random()
        if roll < config.drop_rate:
            return Fault.DROPPED
        roll -= config.drop_rate
        if roll < config.unavailable_rate:
            return Fault.UNAVAILABLE
        roll -= config.unavailable_rate
        if roll < config.slow_rate:
            return Fault.SLOW
        return Fault.NONE

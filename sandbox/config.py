"""Settings of the sandbox: token lifetime, long-running operation delay, throttle and faults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Published Microsoft Graph limits for identity writes.
APP_WRITES_PER_WINDOW = 3000
APP_WRITE_WINDOW_SECONDS = 150.0
TENANT_WRITES_PER_WINDOW = 18000
TENANT_WRITE_WINDOW_SECONDS = 300.0


@dataclass
class ThrottleLimits:
    """Sliding-window limits on writes (POST, PATCH, PUT, DELETE) reaching Graph."""

    app_write_limit: int = APP_WRITES_PER_WINDOW
    app_write_window: float = APP_WRITE_WINDOW_SECONDS
    tenant_write_limit: int = TENANT_WRITES_PER_WINDOW
    tenant_write_window: float = TENANT_WRITE_WINDOW_SECONDS

    def __post_init__(self) -> None:
        for name in ("app_write_limit", "tenant_write_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("app_write_window", "tenant_write_window"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    def to_json(self) -> dict[str, Any]:
        """Return the limits as the admin API shows them."""
        return {
            "appWriteLimit": self.app_write_limit,
            "appWriteWindowSeconds": self.app_write_window,
            "tenantWriteLimit": self.tenant_write_limit,
            "tenantWriteWindowSeconds": self.tenant_write_window,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], base: ThrottleLimits | None = None) -> ThrottleLimits:
        """Build limits from the admin API's JSON, keeping `base` values for absent keys."""
        base = base or cls()
        return cls(
            app_write_limit=int(data.get("appWriteLimit", base.app_write_limit)),
            app_write_window=float(data.get("appWriteWindowSeconds", base.app_write_window)),
            tenant_write_limit=int(data.get("tenantWriteLimit", base.tenant_write_limit)),
            tenant_write_window=float(
                data.get("tenantWriteWindowSeconds", base.tenant_write_window)
            ),
        )


@dataclass
class FaultConfig:
    """Shares of Graph requests that fail on purpose; a seeded draw keeps runs repeatable."""

    unavailable_rate: float = 0.0
    slow_rate: float = 0.0
    drop_rate: float = 0.0
    slow_seconds: float = 2.0
    retry_after_seconds: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        rates = (self.unavailable_rate, self.slow_rate, self.drop_rate)
        if any(rate < 0 or rate > 1 for rate in rates):
            raise ValueError("fault rates must lie between 0 and 1")
        if sum(rates) > 1:
            raise ValueError("fault rates must add up to at most 1")
        if self.slow_seconds < 0:
            raise ValueError("slow_seconds must not be negative")
        if self.retry_after_seconds < 1:
            raise ValueError("retry_after_seconds must be at least 1")

    def to_json(self) -> dict[str, Any]:
        """Return the fault settings as the admin API shows them."""
        return {
            "unavailableRate": self.unavailable_rate,
            "slowRate": self.slow_rate,
            "dropRate": self.drop_rate,
            "slowSeconds": self.slow_seconds,
            "retryAfterSeconds": self.retry_after_seconds,
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], base: FaultConfig | None = None) -> FaultConfig:
        """Build fault settings from the admin API's JSON, keeping `base` values for absent keys."""
        base = base or cls()
        return cls(
            unavailable_rate=float(data.get("unavailableRate", base.unavailable_rate)),
            slow_rate=float(data.get("slowRate", base.slow_rate)),
            drop_rate=float(data.get("dropRate", base.drop_rate)),
            slow_seconds=float(data.get("slowSeconds", base.slow_seconds)),
            retry_after_seconds=int(data.get("retryAfterSeconds", base.retry_after_seconds)),
            seed=int(data.get("seed", base.seed)),
        )


@dataclass
class SandboxConfig:
    """Everything that shapes how the sandbox answers."""

    token_lifetime_seconds: int = 3600
    operation_delay_seconds: float = 1.0
    # The reference pages show userConfigurations/{id} and operations/{id} wrapped in
    # `{"value": {...}}`; the metadata describes the bare entity. Tests run both forms.
    wrap_entities: bool = False
    # How long after a Teams licence is assigned the user's Teams configuration appears.
    teams_setup_delay_seconds: float = 0.0
    # Answer a batch holding a throttled request with a 424 envelope (the throttled request
    # 429, the ones after it not run, 424), as Graph does, rather than a 200 envelope.
    batch_failed_dependency: bool = False
    throttle: ThrottleLimits = field(default_factory=ThrottleLimits)
    faults: FaultConfig = field(default_factory=FaultConfig)

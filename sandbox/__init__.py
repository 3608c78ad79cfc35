"""Local stand-ins of Microsoft Graph and the Entra token endpoint, for the demo and tests."""

from sandbox.config import FaultConfig, SandboxConfig, ThrottleLimits
from sandbox.models import GLOBAL_ADMIN_ROLE_ID
from sandbox.server import SandboxServer

__all__ = [
    "GLOBAL_ADMIN_ROLE_ID",
    "FaultConfig",
    "SandboxConfig",
    "SandboxServer",
    "ThrottleLimits",
]

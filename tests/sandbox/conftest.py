"""One sandbox per test module, reset and reseeded for every test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from sandbox import FaultConfig, SandboxConfig, SandboxServer, ThrottleLimits
from tests.sandbox.helpers import GraphClient, base_seed, fetch_token

OPERATION_DELAY = 0.05


@pytest.fixture(scope="module")
def sandbox_server() -> Iterator[SandboxServer]:
    """A running sandbox; it serves from its own thread, so any event loop may call it."""
    with SandboxServer(SandboxConfig(operation_delay_seconds=OPERATION_DELAY)) as server:
        yield server


@pytest.fixture
def server(sandbox_server: SandboxServer) -> SandboxServer:
    """The module's sandbox with fresh state, default limits, no faults and the base seed."""
    sandbox_server.reset()
    sandbox_server.set_faults(FaultConfig())
    sandbox_server.set_throttle(ThrottleLimits())
    sandbox_server.config.operation_delay_seconds = OPERATION_DELAY
    sandbox_server.config.token_lifetime_seconds = 3600
    sandbox_server.config.wrap_entities = False
    sandbox_server.config.teams_setup_delay_seconds = 0.0
    sandbox_server.config.batch_failed_dependency = False
    sandbox_server.seed(base_seed())
    return sandbox_server


@pytest.fixture
async def graph(server: SandboxServer) -> AsyncIterator[GraphClient]:
    """A Graph client holding a token for the base tenant's app."""
    token = await fetch_token(server)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        yield GraphClient(session, server.graph_url)

"""Outages of the two outside worlds a turn may need are told as outages too.

Microsoft Graph (asked whether an e-mail's domain is the tenant's, or whether whoever starts a
sync is its Global Administrator) unreachable or answering 5xx: the admin gets one card saying
Microsoft cannot be reached and nothing was changed, never the apology for a bug.

The Bot Connector unreachable (or failing) when the reply is sent: one WARNING line, and an
HTTP answer Teams may retry (503 with Retry-After), never a 500 with a traceback.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import replace
from typing import Any

import pytest

from bot.app import build_app
from cards.actions import Verb
from sandbox import FaultConfig, SandboxServer
from tests.botkit import BotHarness, card_text, global_admin
from tests.provisioning_kit import (
    CLIENT_ID,
    cloud_fixture,  # noqa: F401
    composed,
    graph_service,
    graph_settings,
    sandbox_server_fixture,  # noqa: F401
)
from tests.support.activities import DEFAULT_TENANT_ID

ON_SQLITE = pytest.mark.parametrize("database", ["sqlite"], indirect=True)
MICROSOFT_OUTAGE = "can't reach Microsoft right now"
NOTHING_CHANGED = "nothing was changed"
APOLOGY = "Sorry"

FORM = {
    "display_name": "Ada Lovelace",
    "email": "ada@contoso.com",
    "licence": "essentials",
    "number_mode": "auto",
    "extension_mode": "auto",
}


@pytest.fixture
def graph(cloud: SandboxServer) -> SandboxServer:
    """The Graph sandbox, holding the harness enterprise's tenant."""
    cloud.state.add_tenant(DEFAULT_TENANT_ID, "Contoso", ["contoso.com"])
    cloud.state.consent_app(DEFAULT_TENANT_ID, CLIENT_ID)
    return cloud


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def _closed_port() -> int:
    """A loopback port nothing listens on: connections to it are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _graph_checks(
    harness: BotHarness, server: SandboxServer, outage: str, serve_bot: Any, bot_settings: Any
) -> BotHarness:
    """The e-mail domain check and the Global Admin check ask `server`, which is out of reach
    (nothing listens where Graph and its token endpoint should be) or answers 503 to all: the
    harness's bot again, over services the composition root built with that Graph."""
    changes: dict[str, object] = {
        "max_attempts": 2,
        "max_retry_seconds": 1.0,
        "backoff_max_seconds": 0.05,
    }
    if outage == "unreachable":
        nowhere = f"https://127.0.0.1:{_closed_port()}"
        changes.update(base_url=f"{nowhere}/v1.0", authority_host=nowhere)
    else:
        server.set_faults(FaultConfig(unavailable_rate=1.0))
    service = graph_service(graph_settings(server, **changes))
    services = composed(harness.services, harness.services.settings, graph=service)
    client = await serve_bot(build_app(services, bot_settings))
    return replace(harness, client=client, services=services)


@ON_SQLITE
@pytest.mark.parametrize("outage", ["unreachable", "5xx"])
async def test_graph_out_of_reach_is_told_as_an_outage(
    outage: str,
    harness: BotHarness,
    graph: SandboxServer,
    caplog: pytest.LogCaptureFixture,
    serve_bot: Any,
    bot_settings: Any,
) -> None:
    harness = await _graph_checks(harness, graph, outage, serve_bot, bot_settings)
    caplog.set_level(logging.WARNING)
    as_global = await global_admin(harness)

    # Starting a sync needs Microsoft's word that the admin is the Global Administrator.
    card = card_text(await harness.act(Verb.SYNC_START, {}, teams=as_global))
    assert MICROSOFT_OUTAGE in card and NOTHING_CHANGED in card, card
    assert APOLOGY not in card
    overview = await harness.services.syncs.overview(harness.ent)
    assert overview.open_run is None and overview.last_run is None

    # The e-mail domain check lets the address through when Microsoft cannot be asked (the
    # sync reports a wrong domain later): the user is created, nothing is apologised for.
    created = card_text(await harness.act(Verb.USER_CREATE_SUBMIT, FORM))
    assert "Ada Lovelace was created" in created, created

    assert not _errors(caplog), _errors(caplog)


@ON_SQLITE
@pytest.mark.parametrize("outage", ["unreachable", "5xx"])
async def test_a_reply_the_bot_connector_cannot_take_is_one_warning_and_a_retryable_answer(
    outage: str, harness: BotHarness, caplog: pytest.LogCaptureFixture
) -> None:
    if outage == "unreachable":
        await harness.connector.close()
    else:
        harness.connector.throttle(100, status=503, retry_after=0)
    caplog.set_level(logging.INFO)

    for activity in (harness.teams.message("help"), harness.teams.members_added()):
        caplog.clear()
        response = await harness.client.post(activity)
        # Teams may deliver the activity again: the reply could then reach the admin.
        assert response.status == 503, response.text
        assert response.headers.get("Retry-After")
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len([w for w in warnings if "Bot Connector" in w]) == 1, warnings
        assert not _errors(caplog), _errors(caplog)

    # A card action's answer travels in the HTTP response itself: the connector is not needed.
    card = card_text(await harness.act(Verb.DIRECTORY_OPEN))
    assert "Directory" in card

"""The Entra stand-in serves real msal over https, and Graph accepts only its tokens."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import jwt
import msal
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox import SandboxServer
from tests.sandbox.helpers import (
    CLIENT_ID,
    GRAPH_SCOPE,
    OTHER_TENANT,
    SECRET,
    TENANT,
    GraphClient,
    fetch_token,
)


@pytest.fixture
def trust_sandbox_ca(server: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """msal uses requests, which prefers REQUESTS_CA_BUNDLE over any verify= setting."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_path))


def msal_app(
    server: SandboxServer, tenant_id: str = TENANT, secret: str = SECRET
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        CLIENT_ID,
        client_credential=secret,
        authority=server.authority_for(tenant_id),
        instance_discovery=False,
    )


@pytest.mark.usefixtures("trust_sandbox_ca")
async def test_msal_acquires_a_graph_token_over_https(server: SandboxServer) -> None:
    app = await asyncio.to_thread(msal_app, server)
    result = await asyncio.to_thread(app.acquire_token_for_client, scopes=[GRAPH_SCOPE])

    assert result.get("token_type") == "Bearer", result
    assert result["expires_in"] == 3600
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["tid"] == TENANT
    assert claims["appid"] == CLIENT_ID
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["exp"] - claims["iat"] == 3600
    assert server.tenant_stats(TENANT).tokens_issued == 1

    headers = {"Authorization": f"Bearer {result['access_token']}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(server.graph_url + "/users") as response,
    ):
        assert response.status == 200


@pytest.mark.usefixtures("trust_sandbox_ca")
async def test_blocking_msal_on_the_test_loop_does_not_stall_the_token_server(
    server: SandboxServer,
) -> None:
    # Called without a worker thread on purpose: the sandbox serves from its own loop.
    result = msal_app(server).acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert "access_token" in result, result


@pytest.mark.usefixtures("trust_sandbox_ca")
async def test_token_expiry_is_configurable(server: SandboxServer) -> None:
    server.config.token_lifetime_seconds = 120
    result = await asyncio.to_thread(
        msal_app(server).acquire_token_for_client, scopes=[GRAPH_SCOPE]
    )
    assert result["expires_in"] == 120
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 120


@pytest.mark.usefixtures("trust_sandbox_ca")
async def test_wrong_secret_is_refused_with_an_oauth_error(server: SandboxServer) -> None:
    app = msal_app(server, secret="not-the-secret")
    result = await asyncio.to_thread(app.acquire_token_for_client, scopes=[GRAPH_SCOPE])

    assert "access_token" not in result
    assert result["error"] == "invalid_client"
    assert 7000215 in result["error_codes"]
    assert "not-the-secret" not in result["error_description"]
    stats = server.tenant_stats(TENANT)
    assert (stats.tokens_issued, stats.tokens_refused) == (0, 1)


@pytest.mark.usefixtures("trust_sandbox_ca")
async def test_unknown_tenant_fails_authority_discovery(server: SandboxServer) -> None:
    with pytest.raises(ValueError, match="tenant"):
        await asyncio.to_thread(msal_app, server, "00000000-dead-4bee-8000-000000000000")


async def test_multi_tenant_app_needs_consent_in_the_other_tenant(server: SandboxServer) -> None:
    server.state.add_tenant(OTHER_TENANT, "Fabrikam")
    connector = aiohttp.TCPConnector(ssl=server.client_ssl_context())
    form = {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "scope": GRAPH_SCOPE,
    }
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(server.token_endpoint_for(OTHER_TENANT), data=form) as response,
    ):
        assert response.status == 400
        assert (await response.json())["error_codes"] == [7000229]

    server.state.consent_app(OTHER_TENANT, CLIENT_ID)
    token = await fetch_token(server, OTHER_TENANT)
    assert jwt.decode(token, options={"verify_signature": False})["tid"] == OTHER_TENANT


async def test_unregistered_app_and_bad_scope_are_refused(server: SandboxServer) -> None:
    connector = aiohttp.TCPConnector(ssl=server.client_ssl_context())
    url = server.token_endpoint_for(TENANT)
    async with aiohttp.ClientSession(connector=connector) as session:
        unknown = {"grant_type": "client_credentials", "client_id": "nope", "client_secret": "x"}
        async with session.post(url, data={**unknown, "scope": GRAPH_SCOPE}) as response:
            assert response.status == 400
            assert (await response.json())["error"] == "unauthorized_client"
        bad_scope = {
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "scope": "User.Read",
        }
        async with session.post(url, data=bad_scope) as response:
            assert response.status == 400
            assert (await response.json())["error"] == "invalid_scope"


async def test_graph_requires_a_valid_bearer_token(
    server: SandboxServer, graph: GraphClient
) -> None:
    async with aiohttp.ClientSession() as session:
        anonymous = GraphClient(session, server.graph_url)
        reply = await anonymous.get("/users")
        assert reply.status == 401
        assert reply.error_code == "InvalidAuthenticationToken"
        assert reply.error_message == "Access token is empty."

        forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = int(time.time())
        forged = jwt.encode(
            {
                "aud": "https://graph.microsoft.com",
                "tid": TENANT,
                "appid": CLIENT_ID,
                "exp": now + 60,
            },
            forger,
            algorithm="RS256",
        )
        reply = await anonymous.get("/users", headers={"Authorization": f"Bearer {forged}"})
        assert reply.status == 401

        app = server.state.app(CLIENT_ID)
        assert app is not None
        expired = server.sandbox.issuer.issue(TENANT, app, "https://graph.microsoft.com", -5)
        reply = await anonymous.get("/users", headers={"Authorization": f"Bearer {expired}"})
        assert reply.status == 401
        assert "expired" in reply.error_message

        other_audience = server.sandbox.issuer.issue(
            TENANT, app, "https://api.botframework.com", 60
        )
        reply = await anonymous.get("/users", headers={"Authorization": f"Bearer {other_audience}"})
        assert reply.status == 401
        assert "audience" in reply.error_message

    assert (await graph.get("/users")).status == 200

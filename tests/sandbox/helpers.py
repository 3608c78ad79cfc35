"""A thin Graph client for the sandbox tests, and the tenant they seed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp

from sandbox import SandboxServer

TENANT = "11111111-2222-4333-8444-555555555555"
OTHER_TENANT = "99999999-8888-4777-8666-555555555555"
CLIENT_ID = "c1c1c1c1-0000-4000-8000-000000000001"
SECRET = "correct-horse-battery-staple"
PHONE_SKU = "e43b5b99-8dfb-405f-9987-dc307f34bcbd"
ADMIN_ID = "a0000000-0000-4000-8000-000000000001"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def base_seed(phone_units: int = 5) -> dict[str, Any]:
    """One tenant with the app, a Teams Phone SKU and a Global Administrator."""
    return {
        "tenants": [
            {
                "id": TENANT,
                "displayName": "Contoso",
                "domains": ["contoso.example"],
                "apps": [{"clientId": CLIENT_ID, "secret": SECRET, "multiTenant": True}],
                "skus": [{"skuId": PHONE_SKU, "skuPartNumber": "MCOEV", "enabled": phone_units}],
                "users": [
                    {
                        "id": ADMIN_ID,
                        "userPrincipalName": "admin@contoso.example",
                        "displayName": "Ada Admin",
                        "mail": "admin@contoso.example",
                        "usageLocation": "GB",
                    }
                ],
                "globalAdmins": [ADMIN_ID],
            }
        ]
    }


def new_user_body(nickname: str, **extra: Any) -> dict[str, Any]:
    """A valid POST /users body."""
    return {
        "accountEnabled": True,
        "displayName": nickname.title(),
        "mailNickname": nickname,
        "userPrincipalName": f"{nickname}@contoso.example",
        "passwordProfile": {"forceChangePasswordNextSignIn": True, "password": "Xy7!pass-word"},
        **extra,
    }


@dataclass
class Reply:
    """Status, headers and JSON body (or None) of one Graph answer."""

    status: int
    headers: dict[str, str]
    body: Any

    @property
    def error_code(self) -> str:
        """The OData error code."""
        return str(self.body["error"]["code"])

    @property
    def error_message(self) -> str:
        """The OData error message."""
        return str(self.body["error"]["message"])


async def fetch_token(
    server: SandboxServer,
    tenant_id: str = TENANT,
    client_id: str = CLIENT_ID,
    secret: str = SECRET,
) -> str:
    """An access token from the sandbox's https token endpoint (client credentials)."""
    form = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": secret,
        "scope": GRAPH_SCOPE,
    }
    connector = aiohttp.TCPConnector(ssl=server.client_ssl_context())
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(server.token_endpoint_for(tenant_id), data=form) as response,
    ):
        body = await response.json()
        assert response.status == 200, body
        return str(body["access_token"])


class GraphClient:
    """Calls the sandbox's Graph with a bearer token and returns `Reply` objects."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    def url(self, path: str) -> str:
        """An absolute URL for a path relative to `/v1.0`."""
        return path if path.startswith("http") else self.base_url + path

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Send one request."""
        async with self.session.request(
            method, self.url(path), json=json, params=params, headers=headers
        ) as response:
            body = await response.json() if response.content_length else None
            return Reply(response.status, dict(response.headers), body)

    async def get(self, path: str, **kwargs: Any) -> Reply:
        """GET a path."""
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, json: Any = None, **kwargs: Any) -> Reply:
        """POST JSON to a path."""
        return await self.call("POST", path, json=json, **kwargs)

    async def patch(self, path: str, json: Any, **kwargs: Any) -> Reply:
        """PATCH JSON to a path."""
        return await self.call("PATCH", path, json=json, **kwargs)

    async def create_user(self, nickname: str, **extra: Any) -> str:
        """Create a user and return its id."""
        reply = await self.post("/users", new_user_body(nickname, **extra))
        assert reply.status == 201, reply.body
        return str(reply.body["id"])

    async def wait_for_operation(self, location: str, timeout: float = 5.0) -> dict[str, Any]:
        """Poll a number operation until it leaves notStarted/running."""
        seen: list[str] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            reply = await self.get(location)
            assert reply.status == 200, reply.body
            seen.append(reply.body["status"])
            if reply.body["status"] not in ("notStarted", "running"):
                reply.body["_seen"] = seen
                return dict(reply.body)
            assert asyncio.get_running_loop().time() < deadline, seen
            await asyncio.sleep(0.01)

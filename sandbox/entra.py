"""The Entra ID stand-in: OpenID metadata, signing keys and the client-credentials token endpoint.

Paths follow login.microsoftonline.com, so msal finds everything from the authority
`https://host:port/<tenant-id>` with `instance_discovery=False`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web

from sandbox.config import SandboxConfig
from sandbox.models import RegisteredApp
from sandbox.state import SandboxState
from sandbox.stats import Stats
from sandbox.tokens import TokenIssuer

log = logging.getLogger(__name__)

TOKEN_ROUTE = "/{tenant}/oauth2/v2.0/token"


def build_entra_app(
    state: SandboxState, issuer: TokenIssuer, config: SandboxConfig, stats: Stats
) -> web.Application:
    """Create the aiohttp application that answers like the Entra token service."""
    endpoint = _EntraEndpoint(state, issuer, config, stats)
    app = web.Application()
    app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", endpoint.openid_config)
    app.router.add_get("/{tenant}/.well-known/openid-configuration", endpoint.openid_config)
    app.router.add_get("/{tenant}/discovery/v2.0/keys", endpoint.keys)
    app.router.add_get("/{tenant}/discovery/keys", endpoint.keys)
    app.router.add_post(TOKEN_ROUTE, endpoint.token)
    return app


def oauth_error(
    status: int, error: str, code: int, description: str, correlation_id: str | None = None
) -> web.Response:
    """An OAuth 2.0 error in the shape Entra sends."""
    trace_id = str(uuid.uuid4())
    correlation_id = correlation_id or str(uuid.uuid4())
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    body = {
        "error": error,
        "error_description": (
            f"AADSTS{code}: {description} Trace ID: {trace_id} "
            f"Correlation ID: {correlation_id} Timestamp: {stamp}"
        ),
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    return web.json_response(body, status=status)


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, _, secret = decoded.partition(":")
    return unquote_plus(client_id), unquote_plus(secret)


class _EntraEndpoint:
    def __init__(
        self, state: SandboxState, issuer: TokenIssuer, config: SandboxConfig, stats: Stats
    ) -> None:
        self._state = state
        self._issuer = issuer
        self._config = config
        self._stats = stats

    async def openid_config(self, request: web.Request) -> web.Response:
        tenant_id = request.match_info["tenant"]
        if self._state.tenant(tenant_id) is None:
            return _unknown_tenant(tenant_id)
        base = f"https://{request.host}/{tenant_id}"
        document: dict[str, Any] = {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"https://{request.host}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "ver"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        }
        return web.json_response(document)

    async def keys(self, request: web.Request) -> web.Response:
        return web.json_response(self._issuer.jwks())

    async def token(self, request: web.Request) -> web.Response:
        tenant_id = request.match_info["tenant"]
        form = await request.post()
        refusal = self._refusal(request, tenant_id, {k: str(v) for k, v in form.items()})
        if isinstance(refusal, web.Response):
            self._stats.token(tenant_id, issued=False)
            log.info("token refused: tenant=%s status=%s", tenant_id, refusal.status)
            return refusal
        app, audience = refusal
        lifetime = self._config.token_lifetime_seconds
        roles = self._state.roles_for(tenant_id, app.client_id)
        token = self._issuer.issue(tenant_id, app, audience, lifetime, roles)
        self._stats.token(tenant_id, issued=True)
        log.info("token issued: tenant=%s app=%s audience=%s", tenant_id, app.client_id, audience)
        body = {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }
        return web.json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _refusal(
        self, request: web.Request, tenant_id: str, form: dict[str, str]
    ) -> web.Response | tuple[RegisteredApp, str]:
        """Return an OAuth error response, or the app and audience to issue a token for."""
        correlation_id = request.headers.get("client-request-id")
        if self._state.tenant(tenant_id) is None:
            return _unknown_tenant(tenant_id, correlation_id)
        grant_type = form.get("grant_type", "")
        if grant_type != "client_credentials":
            return oauth_error(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type}'.",
                correlation_id,
            )
        basic = _basic_credentials(request.headers.get("Authorization"))
        client_id = form.get("client_id") or (basic[0] if basic else "")
        secret = form.get("client_secret") or (basic[1] if basic else "")
        if not client_id:
            return oauth_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
                correlation_id,
            )
        app = self._state.app(client_id)
        if app is None or (not app.multi_tenant and app.home_tenant_id != tenant_id):
            return oauth_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant_id}'.",
                correlation_id,
            )
        if not secret:
            return oauth_error(
                401,
                "invalid_client",
                7000216,
                "'client_assertion', 'client_secret' or 'request' is required for the "
                "'client_credentials' grant type.",
                correlation_id,
            )
        if secret != app.secret:
            return oauth_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                f"the client secret value, not the client secret ID, for a secret added to app "
                f"'{client_id}'.",
                correlation_id,
            )
        if not self._state.app_usable_in(app, tenant_id):
            return oauth_error(
                400,
                "invalid_client",
                7000229,
                f"The client application {client_id} is missing service principal in the "
                f"tenant {tenant_id}.",
                correlation_id,
            )
        scope = form.get("scope", "").strip()
        if len(scope.split()) != 1 or not scope.endswith("/.default"):
            return oauth_error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
                correlation_id,
            )
        return app, scope.removesuffix("/.default")


def _unknown_tenant(tenant_id: str, correlation_id: str | None = None) -> web.Response:
    return oauth_error(
        400,
        "invalid_tenant",
        90002,
        f"Tenant '{tenant_id}' not found. Check to make sure you have the correct tenant ID "
        "and are signing into the correct cloud.",
        correlation_id,
    )

"""Bot Framework authentication: settings, inbound token checks, outbound credentials.

Inbound, botbuilder validates the channel's JWT against the keys published at an
OpenID metadata document (configurable, so tests and sovereign clouds can use another
one). Outbound, the bot gets its own client-credentials token from Entra through msal;
the authority is configurable too, so tests can run a local https authority.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import SimpleNamespace
from typing import Any

import msal
import requests
from botbuilder.integration.aiohttp import ConfigurationBotFrameworkAuthentication
from botbuilder.schema import Activity, CallerIdConstants
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import (
    AuthenticateRequestResult,
    AuthenticationConstants,
    BotFrameworkAuthentication,
    ClaimsIdentity,
    ConnectorFactory,
    JwtTokenExtractor,
    ManagedIdentityServiceClientCredentialsFactory,
    MicrosoftAppCredentials,
    ServiceClientCredentialsFactory,
)
from botframework.connector.auth._built_in_bot_framework_authentication import (
    _BuiltinBotFrameworkAuthentication,
)
from botframework.connector.auth.jwt_token_extractor import _OpenIdConfig, _OpenIdMetadata
from botframework.connector.auth.user_token_client import UserTokenClient
from msrest.authentication import Authentication

logger = logging.getLogger(__name__)

PUBLIC_OPENID_METADATA_URL = AuthenticationConstants.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL
EMULATOR_OPENID_METADATA_URL = AuthenticationConstants.TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL
CHANNEL_TOKEN_ISSUER = AuthenticationConstants.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER
BOT_CONNECTOR_SCOPE = AuthenticationConstants.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE
PUBLIC_LOGIN_URL_PREFIX = AuthenticationConstants.TO_CHANNEL_FROM_BOT_LOGIN_URL_PREFIX
DEFAULT_CHANNEL_AUTH_TENANT = AuthenticationConstants.DEFAULT_CHANNEL_AUTH_TENANT

# Renew the outbound token this long before it expires.
_TOKEN_RENEWAL_MARGIN_SECONDS = 300.0
_HTTP_TIMEOUT_SECONDS = 10.0


class AppType(StrEnum):
    """How the bot's Entra app registration authenticates (``MicrosoftAppType``)."""

    MULTI_TENANT = "MultiTenant"
    SINGLE_TENANT = "SingleTenant"
    USER_ASSIGNED_MSI = "UserAssignedMSI"

    @classmethod
    def parse(cls, value: str) -> AppType:
        """Parse a ``MicrosoftAppType`` value, ignoring case; empty means MultiTenant."""
        if not value.strip():
            return cls.MULTI_TENANT
        for member in cls:
            if member.value.lower() == value.strip().lower():
                return member
        choices = ", ".join(member.value for member in cls)
        raise ValueError(f"MicrosoftAppType must be one of {choices}, not {value!r}")


@dataclass(frozen=True)
class BotSettings:
    """The bot's identity and the Bot Framework endpoints it trusts and uses.

    An empty ``app_id`` turns authentication off (local demo with the Agents
    Playground only). ``token_authority`` is the full msal authority URL, tenant
    included (for example ``https://127.0.0.1:8443/botframework.com``); by default
    the public Entra authority for ``app_tenant_id`` (or ``botframework.com``).
    ``token_authority_ca_bundle`` is a CA file trusted for that authority only.
    """

    app_id: str = ""
    app_password: str = field(default="", repr=False)
    app_type: AppType = AppType.MULTI_TENANT
    app_tenant_id: str = ""
    openid_metadata_url: str = PUBLIC_OPENID_METADATA_URL
    token_authority: str | None = None
    token_authority_ca_bundle: str | None = None

    def __post_init__(self) -> None:
        if not self.app_id:
            return
        needs_tenant = self.app_type in (AppType.SINGLE_TENANT, AppType.USER_ASSIGNED_MSI)
        if needs_tenant and not self.app_tenant_id:
            raise ValueError(
                f"MicrosoftAppTenantId is required when MicrosoftAppType is {self.app_type.value}"
            )
        if self.app_type is not AppType.USER_ASSIGNED_MSI and not self.app_password:
            raise ValueError("MicrosoftAppPassword is required when MicrosoftAppId is set")
        if self.token_authority and not self.token_authority.startswith("https://"):
            raise ValueError("The token authority must be an https URL (msal requires it)")

    @property
    def auth_enabled(self) -> bool:
        """True when inbound requests must carry a valid Bot Framework token."""
        return bool(self.app_id)

    def outbound_authority(self) -> str:
        """Return the msal authority the bot gets its own tokens from."""
        if self.token_authority:
            return self.token_authority.rstrip("/")
        tenant = (
            self.app_tenant_id
            if self.app_type is AppType.SINGLE_TENANT
            else DEFAULT_CHANNEL_AUTH_TENANT
        )
        return f"{PUBLIC_LOGIN_URL_PREFIX}{tenant}"


class AuthenticationFailed(Exception):
    """The request's token is missing or invalid; answer 401."""


class AuthenticationUnavailable(Exception):
    """The signing keys could not be fetched, so no token can be checked; answer 503."""


async def check_token(authentication: BotFrameworkAuthentication, auth_header: str) -> None:
    """Check the token's signature, issuer, audience and lifetime before anything of the
    request's body is read; raise AuthenticationFailed if it is bad.

    The claims that name the activity (its service URL, its channel) can only be matched once
    the body is parsed: ``authenticate_activity`` does that, with the whole check again.
    """
    inner = getattr(authentication, "_inner", None)
    validate = getattr(inner, "_jwt_token_validation_validate_auth_header", None)
    if validate is None:
        return  # not botbuilder's configured authentication: the whole check after parsing
    with _token_failures():
        await validate(auth_header, "", None)


async def authenticate_activity(
    authentication: BotFrameworkAuthentication, activity: Activity, auth_header: str | None
) -> AuthenticateRequestResult:
    """Check the request's token for ``activity``; raise AuthenticationFailed if it is bad."""
    with _token_failures():
        result: AuthenticateRequestResult = await authentication.authenticate_request(
            activity, auth_header or None
        )
        return result


@contextmanager
def _token_failures() -> Iterator[None]:
    """botbuilder signals bad tokens with many exception types (PermissionError, PyJWT
    errors, IndexError for an unknown key id, bare Exception for a disallowed
    algorithm...), so every one of them counts as a failed authentication."""
    try:
        yield
    except requests.RequestException as error:
        raise AuthenticationUnavailable(f"cannot fetch signing keys: {error}") from error
    except IndexError as error:
        # botbuilder's key lookup indexes an empty list when the key id is unknown.
        raise AuthenticationFailed("token signed with an unknown key id") from error
    except Exception as error:
        reason = str(error) or type(error).__name__
        raise AuthenticationFailed(reason) from error


class _BearerTokenCredentials(MicrosoftAppCredentials):  # type: ignore[misc]
    """Credentials carrying a token fetched beforehand, so signing a request never blocks."""

    def __init__(self, app_id: str, access_token: str, oauth_scope: str) -> None:
        super().__init__(app_id, "", None, oauth_scope)
        self._access_token = access_token

    def get_access_token(self, force_refresh: bool = False) -> str:
        """Return the token fetched when these credentials were made."""
        return self._access_token


class _PinnedCaSession(requests.Session):
    """A requests session that trusts one CA file, whatever REQUESTS_CA_BUNDLE says."""

    def __init__(self, ca_bundle: str) -> None:
        super().__init__()
        self._ca_bundle = ca_bundle

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        # A per-request verify wins over the environment; a session-level one does not.
        kwargs.setdefault("verify", self._ca_bundle)
        kwargs.setdefault("timeout", _HTTP_TIMEOUT_SECONDS)
        return super().request(method, url, *args, **kwargs)


class MsalCredentialsFactory(ServiceClientCredentialsFactory):  # type: ignore[misc]
    """Outbound credentials from one shared msal app, with tokens cached until near expiry.

    botbuilder's own factory builds a new msal app (and so fetches a new token, with a
    blocking HTTP call on the event loop) for every turn. Here the token is fetched in a
    worker thread only when the cached one is about to expire.
    """

    def __init__(
        self,
        app_id: str,
        app_password: str,
        authority: str,
        *,
        ca_bundle: str | None = None,
        instance_discovery: bool = True,
    ) -> None:
        self._app_id = app_id
        self._app_password = app_password
        self._authority = authority
        self._ca_bundle = ca_bundle
        self._instance_discovery = instance_discovery
        self._msal_app: msal.ConfidentialClientApplication | None = None
        self._msal_lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._refreshing = asyncio.Lock()

    async def is_valid_app_id(self, app_id: str) -> bool:
        """Return True if ``app_id`` is this bot's app id."""
        return app_id == self._app_id

    async def is_authentication_disabled(self) -> bool:
        """Return True when no app id is configured (unauthenticated demo mode)."""
        return not self._app_id

    async def create_credentials(
        self, app_id: str, oauth_scope: str, login_endpoint: str, validate_authority: bool
    ) -> Authentication:
        """Return credentials with a valid token for ``oauth_scope``."""
        if not self._app_id:
            empty: Authentication = MicrosoftAppCredentials.empty()
            return empty
        if app_id != self._app_id:
            raise PermissionError(f"No credentials for app id {app_id!r}")
        scope = oauth_scope or BOT_CONNECTOR_SCOPE
        return _BearerTokenCredentials(app_id, await self.access_token(scope), scope)

    async def access_token(self, oauth_scope: str) -> str:
        """Return a token for ``oauth_scope``, fetching one in a thread if needed."""
        cached = self._fresh_token(oauth_scope)
        if cached is not None:
            return cached
        async with self._refreshing:  # concurrent first turns share one token request
            cached = self._fresh_token(oauth_scope)
            if cached is not None:
                return cached
            token, expires_at = await asyncio.to_thread(self._acquire_token, oauth_scope)
            self._tokens[oauth_scope] = (token, expires_at)
            return token

    def _fresh_token(self, oauth_scope: str) -> str | None:
        cached = self._tokens.get(oauth_scope)
        if cached and cached[1] - _TOKEN_RENEWAL_MARGIN_SECONDS > time.monotonic():
            return cached[0]
        return None

    def _acquire_token(self, oauth_scope: str) -> tuple[str, float]:
        scope = oauth_scope if oauth_scope.endswith("/.default") else f"{oauth_scope}/.default"
        result = self._app().acquire_token_for_client(scopes=[scope])
        if "access_token" not in result:
            error = result.get("error", "unknown_error")
            description = result.get("error_description", "")
            raise PermissionError(f"Could not get a Bot Framework token: {error} {description}")
        expires_in = float(result.get("expires_in", 3600))
        return str(result["access_token"]), time.monotonic() + expires_in

    def _app(self) -> msal.ConfidentialClientApplication:
        # Built lazily, in a worker thread: the constructor fetches the authority's metadata.
        with self._msal_lock:
            if self._msal_app is None:
                self._msal_app = msal.ConfidentialClientApplication(
                    client_id=self._app_id,
                    client_credential=self._app_password,
                    authority=self._authority,
                    instance_discovery=self._instance_discovery,
                    http_client=_PinnedCaSession(self._ca_bundle) if self._ca_bundle else None,
                    timeout=_HTTP_TIMEOUT_SECONDS,
                )
            return self._msal_app


def create_credentials_factory(settings: BotSettings) -> ServiceClientCredentialsFactory:
    """Return the outbound credentials factory for ``settings``."""
    if settings.app_type is AppType.USER_ASSIGNED_MSI:
        return ManagedIdentityServiceClientCredentialsFactory(settings.app_id)
    return MsalCredentialsFactory(
        settings.app_id,
        settings.app_password,
        settings.outbound_authority(),
        ca_bundle=settings.token_authority_ca_bundle,
        # Instance discovery asks login.microsoftonline.com about the host: only for Entra.
        instance_discovery=settings.token_authority is None,
    )


def create_bot_framework_authentication(settings: BotSettings) -> BotFrameworkAuthentication:
    """Return botbuilder's authentication for ``settings``, reusing its clients across turns."""
    return _Authentication(
        bot_framework_configuration(settings),
        credentials_factory=create_credentials_factory(settings),
    )


def bot_framework_configuration(settings: BotSettings) -> SimpleNamespace:
    """botbuilder's configuration for ``settings`` (public cloud, overridable keys).

    Every public-cloud value is spelled out, which puts botbuilder on its
    "parameterized" path: the only way to choose the OpenID metadata document per
    adapter instead of through a process-wide class attribute.
    """
    return SimpleNamespace(
        APP_ID=settings.app_id,
        APP_PASSWORD=settings.app_password,
        APP_TYPE=settings.app_type.value,
        APP_TENANTID=settings.app_tenant_id,
        VALIDATE_AUTHORITY=True,
        TO_CHANNEL_FROM_BOT_LOGIN_URL=settings.outbound_authority(),
        TO_CHANNEL_FROM_BOT_OAUTH_SCOPE=BOT_CONNECTOR_SCOPE,
        TO_BOT_FROM_CHANNEL_TOKEN_ISSUER=CHANNEL_TOKEN_ISSUER,
        OAUTH_URL=AuthenticationConstants.OAUTH_URL,
        TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL=settings.openid_metadata_url,
        TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL=EMULATOR_OPENID_METADATA_URL,
        CALLER_ID=CallerIdConstants.public_azure_channel,
    )


class _Authentication(ConfigurationBotFrameworkAuthentication):  # type: ignore[misc]
    """botbuilder's authentication, with one user-token client per app id and one connector
    client per service URL instead of one of each per turn: botbuilder builds both for every
    activity (a requests session and msrest pipelines, the costliest part of its turn setup),
    and neither holds anything specific to a turn."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._user_token_clients: dict[str, UserTokenClient] = {}
        self._connector_clients: dict[tuple[str, str, str | None], ConnectorClient] = {}

    async def authenticate_request(
        self, activity: Activity, auth_header: str
    ) -> AuthenticateRequestResult:
        """botbuilder's check, answering with a connector factory that reuses its clients."""
        result: AuthenticateRequestResult = await super().authenticate_request(
            activity, auth_header
        )
        if result.connector_factory is not None:
            app_id = _BuiltinBotFrameworkAuthentication.get_app_id(result.claims_identity) or ""
            result.connector_factory = _ReusingConnectorFactory(
                result.connector_factory, app_id, self._connector_clients
            )
        return result

    async def create_user_token_client(self, claims_identity: ClaimsIdentity) -> UserTokenClient:
        """The app's user-token client, built on first use."""
        app_id = _BuiltinBotFrameworkAuthentication.get_app_id(claims_identity) or ""
        client = self._user_token_clients.get(app_id)
        if client is None:
            client = await super().create_user_token_client(claims_identity)
            self._user_token_clients[app_id] = client
        return client


# Service URLs are a handful per cloud region; this only bounds a misbehaving channel.
_MAX_CONNECTOR_CLIENTS = 64


class _ReusingConnectorFactory(ConnectorFactory):  # type: ignore[misc]
    """Hands out the connector client already built for an app id, service URL and audience."""

    def __init__(
        self,
        builder: ConnectorFactory,
        app_id: str,
        clients: dict[tuple[str, str, str | None], ConnectorClient],
    ) -> None:
        self._builder = builder
        self._app_id = app_id
        self._clients = clients

    async def create(self, service_url: str, audience: str | None = None) -> ConnectorClient:
        """The client for `service_url`, built on first use."""
        key = (self._app_id, service_url, audience)
        client = self._clients.get(key)
        if client is None:
            client = await self._builder.create(service_url, audience)
            if len(self._clients) >= _MAX_CONNECTOR_CLIENTS:
                self._clients.pop(next(iter(self._clients)))
            self._clients[key] = client
        return client


class _ThreadedOpenIdMetadata(_OpenIdMetadata):  # type: ignore[misc]
    """botbuilder's signing-key cache, with the fetch moved off the event loop.

    Turns that find the cache stale together wait for one fetch instead of each making its
    own (a bot starting under load would otherwise fetch once per waiting turn), and each
    key is parsed once per fetch rather than once per turn.
    """

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._refreshing = asyncio.Lock()
        self._parsed: dict[str, _OpenIdConfig] = {}

    async def _refresh(self) -> None:
        seen = self.last_updated
        async with self._refreshing:
            if self.last_updated != seen:
                return  # fetched by another turn while this one waited
            keys = await asyncio.to_thread(_fetch_signing_keys, self.url)
            self.keys, self._parsed = keys, {}
            self.last_updated = datetime.now()

    def _find(self, key_id: str) -> _OpenIdConfig | None:
        parsed = self._parsed.get(key_id)
        if parsed is None:
            try:
                parsed = super()._find(key_id)
            except IndexError:
                # Unknown: botbuilder then fetches again (at most hourly) and, still
                # unknown, refuses the token.
                return None
            if parsed is not None:
                self._parsed[key_id] = parsed
        return parsed


def _fetch_signing_keys(metadata_url: str) -> list[dict[str, Any]]:
    metadata = requests.get(metadata_url, timeout=_HTTP_TIMEOUT_SECONDS)
    metadata.raise_for_status()
    keys = requests.get(metadata.json()["jwks_uri"], timeout=_HTTP_TIMEOUT_SECONDS)
    keys.raise_for_status()
    return list(keys.json()["keys"])


def use_nonblocking_signing_keys(settings: BotSettings) -> None:
    """Make botbuilder fetch the signing keys for ``settings`` in a worker thread.

    botbuilder fetches them with blocking ``requests`` calls inside the event loop,
    once a day and whenever an unknown key id shows up (at most hourly). Its cache
    is a class attribute keyed by URL; this puts a non-blocking entry there.
    """
    cache: dict[str, Any] = JwtTokenExtractor.metadataCache
    for url in (settings.openid_metadata_url, EMULATOR_OPENID_METADATA_URL):
        if not isinstance(cache.get(url), _ThreadedOpenIdMetadata):
            cache[url] = _ThreadedOpenIdMetadata(url)

"""App-only tokens for Graph: msal client credentials, one confidential client per tenant.

msal is blocking (it uses `requests`), so every call to it runs in a worker thread; tokens are
kept until shortly before they expire, so the event loop rarely waits for one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import msal
import requests

from services.config import PUBLIC_AUTHORITY_HOST, GraphSettings
from services.graph.errors import GraphAuthenticationError, GraphNotConfiguredError

logger = logging.getLogger(__name__)

# Renew this long before expiry, or after this share of the lifetime when tokens are short.
_RENEWAL_MARGIN_SECONDS = 300.0
_RENEWAL_SHARE = 0.5
_HTTP_TIMEOUT_SECONDS = 10.0


class _PinnedCaSession(requests.Session):
    """A requests session that trusts one CA file, whatever REQUESTS_CA_BUNDLE says."""

    def __init__(self, ca_bundle: str) -> None:
        super().__init__()
        self._ca_bundle = ca_bundle

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        """Send with the pinned CA and a timeout unless the caller chose others."""
        # A per-request verify wins over the environment; a session-level one does not.
        kwargs.setdefault("verify", self._ca_bundle)
        kwargs.setdefault("timeout", _HTTP_TIMEOUT_SECONDS)
        return super().request(str(method), str(url), *args, **kwargs)


def _first_sentence(description: str) -> str:
    """Entra's error description up to its trace ids, which mean nothing to an admin."""
    text = description.split(" Trace ID:", 1)[0].strip()
    return text or "Entra refused the sign-in."


class TokenProvider:
    """Graph tokens per tenant, cached until near expiry; concurrent callers share one fetch."""

    def __init__(self, settings: GraphSettings) -> None:
        self._settings = settings
        self._apps: dict[str, msal.ConfidentialClientApplication] = {}
        self._apps_lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._fetching: dict[str, asyncio.Lock] = {}

    async def token(self, tenant_id: str) -> str:
        """A valid access token for Graph in `tenant_id`."""
        cached = self._fresh(tenant_id)
        if cached is not None:
            return cached
        lock = self._fetching.setdefault(tenant_id, asyncio.Lock())
        async with lock:
            cached = self._fresh(tenant_id)
            if cached is not None:
                return cached
            token, expires_at = await asyncio.to_thread(self._acquire, tenant_id)
            self._tokens[tenant_id] = (token, expires_at)
            return token

    def invalidate(self, tenant_id: str) -> None:
        """Forget the tenant's token (Graph refused it): the next call fetches a new one."""
        self._tokens.pop(tenant_id, None)
        with self._apps_lock:
            # msal would hand back its own cached copy of the refused token.
            self._apps.pop(tenant_id, None)

    def _fresh(self, tenant_id: str) -> str | None:
        cached = self._tokens.get(tenant_id)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        return None

    def _acquire(self, tenant_id: str) -> tuple[str, float]:
        try:
            result = self._app(tenant_id).acquire_token_for_client(scopes=[self._settings.scope])
        except requests.RequestException as error:
            logger.warning("Entra unreachable for tenant %s: %s", tenant_id, type(error).__name__)
            raise GraphAuthenticationError(
                "Switchboard could not reach Microsoft Entra to sign in; it will try again.",
                status=0,
                code="network",
            ) from error
        except ValueError as error:
            # msal's way of saying the authority (the tenant) does not exist.
            logger.warning("Entra has no authority for tenant %s", tenant_id)
            raise GraphAuthenticationError(
                "Microsoft Entra does not know this enterprise's tenant id; check it.",
                status=400,
                code="invalid_tenant",
            ) from error
        if "access_token" not in result:
            error_code = str(result.get("error", "unknown_error"))
            description = _first_sentence(str(result.get("error_description", "")))
            logger.warning("Entra refused a token for tenant %s: %s", tenant_id, error_code)
            raise GraphAuthenticationError(
                f"Microsoft Entra refused Switchboard's sign-in to this tenant: {description}",
                status=401,
                code=error_code,
                client_request_id=str(result.get("correlation_id", "")),
            )
        lifetime = float(result.get("expires_in", 3600))
        margin = min(_RENEWAL_MARGIN_SECONDS, lifetime * _RENEWAL_SHARE)
        return str(result["access_token"]), time.monotonic() + lifetime - margin

    def _app(self, tenant_id: str) -> msal.ConfidentialClientApplication:
        # Built lazily in a worker thread: the constructor fetches the authority's metadata.
        with self._apps_lock:
            app = self._apps.get(tenant_id)
            if app is not None:
                return app
            credential = self._settings.credential_for(tenant_id)
            if credential is None:
                raise GraphNotConfiguredError(
                    "No Microsoft Graph credentials are configured for this tenant.",
                    status=401,
                    code="not_configured",
                )
            client_id, secret = credential
            host = self._settings.authority_host.rstrip("/")
            ca_bundle = self._settings.ca_bundle
            app = msal.ConfidentialClientApplication(
                client_id=client_id,
                client_credential=secret,
                authority=f"{host}/{tenant_id}",
                # Instance discovery asks login.microsoftonline.com about the host: Entra only.
                instance_discovery=host == PUBLIC_AUTHORITY_HOST,
                http_client=_PinnedCaSession(ca_bundle) if ca_bundle else None,
                timeout=_HTTP_TIMEOUT_SECONDS,
            )
            self._apps[tenant_id] = app
            return app

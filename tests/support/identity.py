"""Local stand-ins for Microsoft's identity endpoints, and Bot Framework token minting.

- ``OpenIdMetadataServer``: the Bot Framework OpenID metadata document and its JWKS,
  on loopback http, in its own thread (botbuilder fetches it with blocking requests).
- ``ChannelTokenMinter``: signs channel-to-bot tokens like the Bot Connector does, and
  every kind of bad token a forger might try.
- ``LocalTokenAuthority``: an https Entra look-alike (trustme CA) that gives the bot
  its own client-credentials token for replies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
TEAMS_CHANNEL_ID = "msteams"
OPENID_METADATA_PATH = "/v1/.well-known/openidconfiguration"
JWKS_PATH = "/v1/.well-known/keys"

# The names of ChannelTokenMinter.bad_authorization_headers(), for parametrizing tests.
BAD_AUTHORIZATION_KINDS = (
    "missing header",
    "empty header",
    "garbage token",
    "wrong scheme",
    "forged signature",
    "expired",
    "wrong audience",
    "wrong issuer",
    "unknown kid",
    "wrong endorsement",
    "HS256",
    "alg none",
    "serviceurl mismatch",
)

TEST_APP_ID = "5b1e4c7a-0d3f-4f1e-9c2a-b07b07b07b07"
TEST_APP_PASSWORD = "local-test-secret"


def _new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(frozen=True)
class SigningKey:
    """An RSA key published (or not) in the JWKS, with its key id and endorsements."""

    kid: str
    private_key: rsa.RSAPrivateKey
    endorsements: tuple[str, ...] = (TEAMS_CHANNEL_ID,)

    def jwk(self) -> dict[str, Any]:
        """Return the public JWK as the Bot Framework publishes it."""
        public = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {
            **public,
            "kid": self.kid,
            "use": "sig",
            "endorsements": list(self.endorsements),
        }

    def public_pem(self) -> bytes:
        """Return the public key in PEM form (what an HS256 forger would use as secret)."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@dataclass(frozen=True)
class ChannelKeys:
    """The keys of one test session.

    ``trusted`` is published with the ``msteams`` endorsement; ``webchat_only`` is
    published but endorsed for another channel; ``forger`` is never published.
    """

    trusted: SigningKey
    webchat_only: SigningKey
    forger: SigningKey

    @classmethod
    def generate(cls) -> ChannelKeys:
        """Generate a fresh set of keys."""
        return cls(
            trusted=SigningKey(f"trusted-{uuid.uuid4().hex[:8]}", _new_rsa_key()),
            webchat_only=SigningKey(
                f"webchat-{uuid.uuid4().hex[:8]}", _new_rsa_key(), ("webchat",)
            ),
            forger=SigningKey(f"forger-{uuid.uuid4().hex[:8]}", _new_rsa_key()),
        )

    def jwks(self) -> dict[str, Any]:
        """Return the published key set."""
        return {"keys": [self.trusted.jwk(), self.webchat_only.jwk()]}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_json(value: Mapping[str, Any]) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


@dataclass
class ChannelTokenMinter:
    """Signs Bot Framework channel tokens for ``app_id``, good and bad.

    ``service_url`` is the default ``serviceurl`` claim: it must equal the
    activity's ``serviceUrl`` for the token to be accepted.
    """

    keys: ChannelKeys
    app_id: str
    service_url: str

    def claims(
        self,
        *,
        service_url: str | None = None,
        audience: str | None = None,
        issuer: str = BOT_FRAMEWORK_ISSUER,
        lifetime: float = 3600.0,
        issued_at: float | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Return the claims of a channel token (overridable one by one)."""
        now = time.time() if issued_at is None else issued_at
        return {
            "serviceurl": self.service_url if service_url is None else service_url,
            "nbf": int(now - 60),
            "iat": int(now - 60),
            "exp": int(now + lifetime),
            "iss": issuer,
            "aud": self.app_id if audience is None else audience,
            **(extra or {}),
        }

    def token(
        self,
        *,
        key: SigningKey | None = None,
        kid: str | None = None,
        algorithm: str = "RS256",
        **claim_overrides: Any,
    ) -> str:
        """Return a signed token; by default a valid one."""
        signing_key = key or self.keys.trusted
        return jwt.encode(
            self.claims(**claim_overrides),
            signing_key.private_key,
            algorithm=algorithm,
            headers={"kid": kid or signing_key.kid},
        )

    def authorization(self, **token_options: Any) -> str:
        """Return an ``Authorization`` header value carrying a valid (or tweaked) token."""
        return f"Bearer {self.token(**token_options)}"

    # Bad tokens ------------------------------------------------------------------

    def forged_signature(self) -> str:
        """A token claiming the trusted key id but signed with an unpublished key."""
        return self.token(key=self.keys.forger, kid=self.keys.trusted.kid)

    def expired(self) -> str:
        """A token that expired an hour ago (well past the 5-minute clock tolerance)."""
        return self.token(issued_at=time.time() - 7200, lifetime=3600)

    def wrong_audience(self) -> str:
        """A token issued for another bot."""
        return self.token(audience="00000000-0000-0000-0000-0000000000aa")

    def wrong_issuer(self) -> str:
        """A token from an issuer other than the Bot Framework."""
        return self.token(issuer="https://issuer.invalid.example")

    def unknown_kid(self) -> str:
        """A token signed with the trusted key but naming a key id nobody published."""
        return self.token(kid="no-such-key")

    def wrong_endorsement(self) -> str:
        """A token signed with a published key that is not endorsed for Teams."""
        return self.token(key=self.keys.webchat_only)

    def serviceurl_mismatch(self) -> str:
        """A token whose ``serviceurl`` claim is not the activity's service URL."""
        return self.token(service_url="https://smba.attacker.example/")

    def hs256(self) -> str:
        """An HS256 token keyed with the trusted public key (algorithm confusion)."""
        header = {"alg": "HS256", "typ": "JWT", "kid": self.keys.trusted.kid}
        signing_input = f"{_b64url_json(header)}.{_b64url_json(self.claims())}"
        mac = hmac.new(self.keys.trusted.public_pem(), signing_input.encode(), hashlib.sha256)
        return f"{signing_input}.{_b64url(mac.digest())}"

    def unsigned(self) -> str:
        """An ``alg: none`` token."""
        header = {"alg": "none", "typ": "JWT", "kid": self.keys.trusted.kid}
        return f"{_b64url_json(header)}.{_b64url_json(self.claims())}."

    def bad_authorization_headers(self) -> dict[str, str | None]:
        """Return every kind of bad ``Authorization`` header by name (None: no header)."""
        return {
            "missing header": None,
            "empty header": "",
            "garbage token": "Bearer not-a-jwt",
            "wrong scheme": f"Basic {self.token()}",
            "forged signature": f"Bearer {self.forged_signature()}",
            "expired": f"Bearer {self.expired()}",
            "wrong audience": f"Bearer {self.wrong_audience()}",
            "wrong issuer": f"Bearer {self.wrong_issuer()}",
            "unknown kid": f"Bearer {self.unknown_kid()}",
            "wrong endorsement": f"Bearer {self.wrong_endorsement()}",
            "HS256": f"Bearer {self.hs256()}",
            "alg none": f"Bearer {self.unsigned()}",
            "serviceurl mismatch": f"Bearer {self.serviceurl_mismatch()}",
        }


class _ThreadedServer:
    """A stdlib HTTP(S) server on a loopback port, serving from its own threads."""

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
        self._server.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=type(self).__name__, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        """The loopback port the server listens on."""
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _JsonHandler(BaseHTTPRequestHandler):
    """Request handler answering JSON; quiet unless something goes wrong."""

    def log_message(self, format: str, *args: Any) -> None:
        return

    def send_json(self, status: int, body: Mapping[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _OpenIdHandler(_JsonHandler):
    def do_GET(self) -> None:
        server: OpenIdMetadataServer = self.server.owner  # type: ignore[attr-defined]
        if self.path == OPENID_METADATA_PATH:
            server.metadata_fetches += 1
            self.send_json(200, server.metadata())
        elif self.path == JWKS_PATH:
            server.key_fetches += 1
            self.send_json(200, server.keys.jwks())
        else:
            self.send_json(404, {"error": "not found"})


class OpenIdMetadataServer(_ThreadedServer):
    """Serves the Bot Framework OpenID metadata document and JWKS for ``keys``."""

    def __init__(self, keys: ChannelKeys) -> None:
        self.keys = keys
        self.metadata_fetches = 0
        self.key_fetches = 0
        super().__init__(_OpenIdHandler)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def metadata_url(self) -> str:
        """The URL to give the bot as its OpenID metadata document."""
        return f"{self.base_url}{OPENID_METADATA_PATH}"

    def metadata(self) -> dict[str, Any]:
        """Return the metadata document (shaped like login.botframework.com's)."""
        return {
            "issuer": BOT_FRAMEWORK_ISSUER,
            "authorization_endpoint": "https://invalid.botframework.com",
            "jwks_uri": f"{self.base_url}{JWKS_PATH}",
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        }


@dataclass
class IssuedToken:
    """One access token the local authority handed out."""

    client_id: str
    scope: str


class _AuthorityHandler(_JsonHandler):
    def do_GET(self) -> None:
        authority: LocalTokenAuthority = self.server.owner  # type: ignore[attr-defined]
        parts = self.path.strip("/").split("/")
        if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            self.send_json(200, authority.openid_configuration(parts[0]))
        else:
            self.send_json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        authority: LocalTokenAuthority = self.server.owner  # type: ignore[attr-defined]
        parts = self.path.strip("/").split("/")
        if len(parts) != 4 or parts[1:] != ["oauth2", "v2.0", "token"]:
            self.send_json(404, {"error": "not_found"})
            return
        length = int(self.headers.get("Content-Length", "0"))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        status, body = authority.grant(form)
        self.send_json(status, body)


class LocalTokenAuthority(_ThreadedServer):
    """An https Entra look-alike issuing client-credentials tokens to known clients.

    msal only talks https; the certificate comes from a trustme CA written to
    ``ca_bundle_path``. Issued tokens are opaque and recorded in ``issued``.
    """

    def __init__(self, workdir: Path, clients: Mapping[str, str] | None = None) -> None:
        self.ca = trustme.CA()
        self.ca_bundle_path = workdir / "local-authority-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_bundle_path))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self.clients: dict[str, str] = dict(clients or {TEST_APP_ID: TEST_APP_PASSWORD})
        self.issued: dict[str, IssuedToken] = {}
        self.token_requests = 0
        self.lifetime_seconds = 3599
        self._lock = threading.Lock()
        super().__init__(_AuthorityHandler, context)

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:<port>``."""
        return f"https://127.0.0.1:{self.port}"

    def authority_url(self, tenant: str = "botframework.com") -> str:
        """The msal authority URL for ``tenant``."""
        return f"{self.base_url}/{tenant}"

    def openid_configuration(self, tenant: str) -> dict[str, Any]:
        """Return the tenant's OpenID configuration, as msal expects it."""
        base = self.authority_url(tenant)
        return {
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
        }

    def grant(self, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """Answer a token request: a token for a known client, or an Entra-style error."""
        with self._lock:
            self.token_requests += 1
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        client_id = form.get("client_id", "")
        expected = self.clients.get(client_id)
        if expected is None or not hmac.compare_digest(expected, form.get("client_secret", "")):
            return 401, {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.",
            }
        token = secrets.token_urlsafe(32)
        with self._lock:
            self.issued[token] = IssuedToken(client_id, form.get("scope", ""))
        return 200, {
            "token_type": "Bearer",
            "expires_in": self.lifetime_seconds,
            "ext_expires_in": self.lifetime_seconds,
            "access_token": token,
        }

    def accepts(self, authorization: str | None) -> bool:
        """Return True if ``authorization`` is ``Bearer <a token this authority issued>``."""
        if not authorization or not authorization.startswith("Bearer "):
            return False
        return authorization.removeprefix("Bearer ") in self.issued

    def validator(self) -> Callable[[str | None], bool]:
        """Return ``accepts``, for a fake connector that checks the bot's tokens."""
        return self.accepts


@dataclass
class IdentityStandIns:
    """The identity services of one test session, started together."""

    keys: ChannelKeys
    openid: OpenIdMetadataServer
    authority: LocalTokenAuthority
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def start(cls, workdir: Path) -> IdentityStandIns:
        """Generate keys and start the OpenID server and the token authority."""
        keys = ChannelKeys.generate()
        return cls(keys, OpenIdMetadataServer(keys), LocalTokenAuthority(workdir))

    def close(self) -> None:
        """Stop both servers."""
        if not self._closed:
            self.openid.close()
            self.authority.close()
            self._closed = True

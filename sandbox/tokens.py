"""Access tokens: RS256 JWTs signed by a key that lives as long as the sandbox."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from sandbox.models import RegisteredApp

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
# What an app is granted in a tenant unless a test or seed says otherwise: the least
# privileged set Switchboard needs (docs/TEAMS_SETUP.md), and Mail.Send for the mailbox.
DEFAULT_APP_ROLES = (
    "User.ReadWrite.All",
    "Domain.Read.All",
    "Organization.Read.All",
    "RoleManagement.Read.Directory",
    "GroupMember.Read.All",
    "Mail.Send",
    "TeamsTelephoneNumber.ReadWrite.All",
    "TeamsUserConfiguration.Read.All",
    "TeamsPolicyUserAssign.ReadWrite.All",
)


class TokenRejected(Exception):
    """The bearer token is missing, malformed, forged, expired or meant for someone else."""


@dataclass(frozen=True)
class TokenClaims:
    """The parts of a verified access token that the Graph stand-in uses."""

    tenant_id: str
    app_id: str
    audience: str
    expires_at: int
    roles: frozenset[str] = frozenset()


class TokenIssuer:
    """Signs access tokens for registered apps and verifies them for the Graph stand-in."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_id = uuid.uuid4().hex

    def issue(
        self,
        tenant_id: str,
        app: RegisteredApp,
        audience: str,
        lifetime_seconds: int,
        roles: tuple[str, ...] = DEFAULT_APP_ROLES,
    ) -> str:
        """Return a signed app-only access token for `audience`."""
        now = int(time.time())
        principal = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant_id}/{app.client_id}"))
        claims = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_seconds,
            "appid": app.client_id,
            "app_displayname": app.display_name,
            "appidacr": "1",
            "idp": f"https://sts.windows.net/{tenant_id}/",
            "idtyp": "app",
            "oid": principal,
            "sub": principal,
            "roles": list(roles),
            "tid": tenant_id,
            "uti": uuid.uuid4().hex,
            "ver": "1.0",
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.key_id})

    def verify(self, token: str, audience: str = GRAPH_RESOURCE) -> TokenClaims:
        """Check signature, lifetime and audience; raise TokenRejected with Graph's wording."""
        try:
            claims = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                audience=[audience, GRAPH_APP_ID] if audience == GRAPH_RESOURCE else audience,
                options={"require": ["exp", "tid", "appid", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenRejected("Lifetime validation failed, the token is expired.") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenRejected("Access token validation failure. Invalid audience.") from exc
        except jwt.PyJWTError as exc:
            raise TokenRejected("Access token validation failure.") from exc
        return TokenClaims(
            tenant_id=str(claims["tid"]),
            app_id=str(claims["appid"]),
            audience=str(claims["aud"]),
            expires_at=int(claims["exp"]),
            roles=frozenset(str(role) for role in claims.get("roles") or []),
        )

    def jwks(self) -> dict[str, Any]:
        """The public signing key as a JSON Web Key Set."""
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        jwk.update({"kid": self.key_id, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

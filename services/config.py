"""Settings read from the environment once, at the composition root."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from services.dburl import async_database_url
from services.errors import ValidationError

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/switchboard.db"
PUBLIC_GRAPH_URL = "https://graph.microsoft.com/v1.0"
PUBLIC_AUTHORITY_HOST = "https://login.microsoftonline.com"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
# Teams Phone Standard (MCOEV): the calling licence Direct Routing users need.
TEAMS_PHONE_STANDARD_SKU = "e43b5b99-8dfb-405f-9987-dc307f34bcbd"
DEFAULT_TEAMS_SERVICE_URL = "https://smba.trafficmanager.net/teams/"


class SettingsError(ValidationError):
    """An environment variable holds a value Switchboard cannot use; the message names it."""


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise SettingsError(f"{name} must be a finite number, not {raw!r}")
    return value


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    return raw in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class TenantCredential:
    """An app registration that signs in to one enterprise's tenant (single-tenant apps)."""

    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)


def _tenant_credentials(raw: str) -> tuple[TenantCredential, ...]:
    """`{"<tenant id>": {"clientId": "...", "clientSecret": "..."}}` as credentials."""
    if not raw.strip():
        return ()
    document = json.loads(raw)
    if not isinstance(document, dict):
        raise ValueError("GRAPH_TENANT_CREDENTIALS must be a JSON object keyed by tenant id")
    return tuple(
        TenantCredential(str(tenant).lower(), str(entry["clientId"]), str(entry["clientSecret"]))
        for tenant, entry in document.items()
    )


@dataclass(frozen=True)
class GraphSettings:
    """How Switchboard reaches Microsoft Graph and Entra, and what it asks of them.

    `client_id`/`client_secret` are a multi-tenant app consented in every enterprise;
    `tenant_credentials` override them per tenant. Without either, nothing talks to Graph.
    """

    base_url: str = PUBLIC_GRAPH_URL
    authority_host: str = PUBLIC_AUTHORITY_HOST
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    tenant_credentials: tuple[TenantCredential, ...] = ()
    # A CA file trusted for the authority only (a local Entra stand-in); None trusts the system.
    ca_bundle: str | None = None
    scope: str = GRAPH_SCOPE
    essentials_sku: str = TEAMS_PHONE_STANDARD_SKU
    basic_sku: str = TEAMS_PHONE_STANDARD_SKU
    # The Direct Routing voice routing policy every calling user gets; empty skips the step.
    voice_routing_policy: str = ""
    usage_location: str = "GB"
    # The mailbox confirmation and password e-mails are sent from; empty sends none.
    mail_sender: str = ""
    # The tenant that mailbox lives in (the provider's own); empty: the enterprise's tenant.
    mail_tenant_id: str = ""
    # The write budget per tenant, as Graph throttles identity writes (3,000 per 150 s).
    write_limit: int = 3000
    write_window_seconds: float = 150.0
    # Spare seconds per window when workers share the budget through PostgreSQL.
    write_guard_seconds: float = 1.0
    request_timeout_seconds: float = 30.0
    max_attempts: int = 6
    max_retry_seconds: float = 120.0
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    batch_size: int = 20
    batch_linger_seconds: float = 0.005
    operation_poll_seconds: float = 1.0
    operation_timeout_seconds: float = 300.0
    # Ask Graph whether whoever starts a manual sync really is a Global Administrator.
    check_global_admin: bool = True

    @property
    def enabled(self) -> bool:
        """Whether any credentials are configured, so the sync can reach Microsoft."""
        return bool(self.client_id and self.client_secret) or bool(self.tenant_credentials)

    def credential_for(self, tenant_id: str) -> tuple[str, str] | None:
        """The client id and secret that sign in to `tenant_id`, if any."""
        tenant = tenant_id.lower()
        for credential in self.tenant_credentials:
            if credential.tenant_id == tenant:
                return credential.client_id, credential.client_secret
        if self.client_id and self.client_secret:
            return self.client_id, self.client_secret
        return None

    @classmethod
    def from_env(cls) -> GraphSettings:
        """Read the Graph settings from GRAPH_* and related environment variables."""
        return cls(
            base_url=os.environ.get("GRAPH_BASE_URL") or PUBLIC_GRAPH_URL,
            authority_host=os.environ.get("GRAPH_AUTHORITY_HOST") or PUBLIC_AUTHORITY_HOST,
            client_id=os.environ.get("GRAPH_CLIENT_ID", "").strip(),
            client_secret=os.environ.get("GRAPH_CLIENT_SECRET", ""),
            tenant_credentials=_tenant_credentials(os.environ.get("GRAPH_TENANT_CREDENTIALS", "")),
            ca_bundle=os.environ.get("GRAPH_AUTHORITY_CA_BUNDLE") or None,
            essentials_sku=os.environ.get("LICENCE_SKU_ESSENTIALS") or TEAMS_PHONE_STANDARD_SKU,
            basic_sku=os.environ.get("LICENCE_SKU_BASIC") or TEAMS_PHONE_STANDARD_SKU,
            voice_routing_policy=os.environ.get("VOICE_ROUTING_POLICY", "").strip(),
            usage_location=(os.environ.get("DEFAULT_USAGE_LOCATION") or "GB").upper(),
            mail_sender=os.environ.get("MAIL_SENDER", "").strip(),
            mail_tenant_id=os.environ.get("MAIL_SENDER_TENANT_ID", "").strip().lower(),
            write_limit=_env_int("GRAPH_WRITE_LIMIT", 3000),
            write_window_seconds=_env_float("GRAPH_WRITE_WINDOW_SECONDS", 150.0),
            write_guard_seconds=_env_float("GRAPH_WRITE_GUARD_SECONDS", 1.0),
            request_timeout_seconds=_env_float("GRAPH_TIMEOUT_SECONDS", 30.0),
            max_attempts=_env_int("GRAPH_MAX_ATTEMPTS", 6),
            max_retry_seconds=_env_float("GRAPH_MAX_RETRY_SECONDS", 120.0),
            backoff_base_seconds=_env_float("GRAPH_BACKOFF_BASE_SECONDS", 0.5),
            backoff_max_seconds=_env_float("GRAPH_BACKOFF_MAX_SECONDS", 30.0),
            batch_size=_env_int("GRAPH_BATCH_SIZE", 20),
            batch_linger_seconds=_env_float("GRAPH_BATCH_LINGER_SECONDS", 0.005),
            operation_poll_seconds=_env_float("GRAPH_OPERATION_POLL_SECONDS", 1.0),
            operation_timeout_seconds=_env_float("GRAPH_OPERATION_TIMEOUT_SECONDS", 300.0),
            check_global_admin=_env_bool("GRAPH_CHECK_GLOBAL_ADMIN", True),
        )


@dataclass(frozen=True)
class SyncSettings:
    """How the sync engine paces itself, retries, and whom it tells."""

    # Workers per process; SQLite always runs one.
    workers: int = 1
    poll_seconds: float = 1.0
    lease_seconds: float = 60.0
    tenant_concurrency: int = 50
    max_attempts: int = 8
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 300.0
    verify_attempts: int = 5
    verify_delay_seconds: float = 2.0
    overdue_check_seconds: float = 60.0
    # Where "sync finished" cards also go: a Teams channel's conversation id, if any.
    notification_channel_id: str = ""
    notification_service_url: str = DEFAULT_TEAMS_SERVICE_URL
    notifier_poll_seconds: float = 2.0
    notifier_max_attempts: int = 8
    notifier_backoff_seconds: float = 1.0

    @classmethod
    def from_env(cls) -> SyncSettings:
        """Read the sync settings from SYNC_* environment variables."""
        return cls(
            workers=max(1, _env_int("SYNC_WORKERS", 1)),
            poll_seconds=_env_float("SYNC_POLL_SECONDS", 1.0),
            lease_seconds=_env_float("SYNC_LEASE_SECONDS", 60.0),
            tenant_concurrency=max(1, _env_int("SYNC_TENANT_CONCURRENCY", 50)),
            max_attempts=max(1, _env_int("SYNC_MAX_ATTEMPTS", 8)),
            retry_base_seconds=_env_float("SYNC_RETRY_BASE_SECONDS", 5.0),
            retry_max_seconds=_env_float("SYNC_RETRY_MAX_SECONDS", 300.0),
            verify_attempts=max(1, _env_int("SYNC_VERIFY_ATTEMPTS", 5)),
            verify_delay_seconds=_env_float("SYNC_VERIFY_DELAY_SECONDS", 2.0),
            overdue_check_seconds=_env_float("SYNC_OVERDUE_CHECK_SECONDS", 60.0),
            notification_channel_id=os.environ.get("SYNC_NOTIFICATION_CHANNEL_ID", "").strip(),
            notification_service_url=os.environ.get("SYNC_NOTIFICATION_SERVICE_URL")
            or DEFAULT_TEAMS_SERVICE_URL,
            notifier_poll_seconds=_env_float("SYNC_NOTIFIER_POLL_SECONDS", 2.0),
            notifier_max_attempts=max(1, _env_int("SYNC_NOTIFIER_MAX_ATTEMPTS", 8)),
            notifier_backoff_seconds=_env_float("SYNC_NOTIFIER_BACKOFF_SECONDS", 1.0),
        )


# Microsoft's Direct Routing SIP proxies and the subnets their signalling comes from
# (learn.microsoft.com, "Plan Direct Routing": SIP signaling FQDNs and IP ranges).
TEAMS_SIP_PROXIES = (
    "sip.pstnhub.microsoft.com:5061",
    "sip2.pstnhub.microsoft.com:5061",
    "sip3.pstnhub.microsoft.com:5061",
)
TEAMS_SIGNALLING_SUBNETS = ("52.112.0.0/14", "52.122.0.0/15")


def _env_list(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = os.environ.get(name, "")
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    return items or default


@dataclass(frozen=True)
class PbxTrunkSettings:
    """The provider's two SIP trunks and the static Asterisk configuration around them, as
    `switchboard pbx config` writes it (docs/PBX_SETUP.md)."""

    # Where Asterisk listens for desk phones and trunks (UDP and TCP), and for TLS.
    sip_bind: str = "0.0.0.0:5060"
    tls_bind: str = "0.0.0.0:5061"
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # The SBC's own FQDN, as registered in Teams (New-CsOnlinePSTNGateway -Fqdn).
    sbc_fqdn: str = ""
    # Teams Direct Routing: Microsoft's SIP proxies (host:port) and the transport to them.
    teams_hosts: tuple[str, ...] = TEAMS_SIP_PROXIES
    teams_transport: str = "tls"
    teams_match: tuple[str, ...] = TEAMS_SIGNALLING_SUBNETS
    # Media to Microsoft is SRTP (SDES keys over TLS); Asterisk needs res_srtp for it.
    teams_media_encryption: str = "sdes"
    # The carrier's trunk: where calls to the PSTN go and where calls from it come from.
    pstn_hosts: tuple[str, ...] = ()
    pstn_transport: str = "udp"
    pstn_match: tuple[str, ...] = ()
    # How the carrier wants a called number: "e164" (+442079460000) or "e164-no-plus".
    pstn_dial_format: str = "e164"
    # The country of national numbers the carrier delivers (0 20 7946 0000 for GB).
    pstn_country: str = "GB"
    # Numbers that always go straight to the carrier, whatever the extensions are.
    emergency_numbers: tuple[str, ...] = ("112", "999", "911")

    @classmethod
    def from_env(cls) -> PbxTrunkSettings:
        """Read the trunk settings from PBX_* environment variables."""
        return cls(
            sip_bind=os.environ.get("PBX_SIP_BIND", "").strip() or "0.0.0.0:5060",
            tls_bind=os.environ.get("PBX_TLS_BIND", "").strip() or "0.0.0.0:5061",
            tls_cert_file=os.environ.get("PBX_TLS_CERT_FILE", "").strip(),
            tls_key_file=os.environ.get("PBX_TLS_KEY_FILE", "").strip(),
            sbc_fqdn=os.environ.get("PBX_SBC_FQDN", "").strip(),
            teams_hosts=_env_list("PBX_TEAMS_HOSTS", TEAMS_SIP_PROXIES),
            teams_transport=(os.environ.get("PBX_TEAMS_TRANSPORT") or "tls").strip().lower(),
            teams_match=_env_list("PBX_TEAMS_MATCH", TEAMS_SIGNALLING_SUBNETS),
            teams_media_encryption=(os.environ.get("PBX_TEAMS_MEDIA_ENCRYPTION") or "sdes")
            .strip()
            .lower(),
            pstn_hosts=_env_list("PBX_PSTN_HOSTS", ()),
            pstn_transport=(os.environ.get("PBX_PSTN_TRANSPORT") or "udp").strip().lower(),
            pstn_match=_env_list("PBX_PSTN_MATCH", ()),
            pstn_dial_format=(os.environ.get("PBX_PSTN_DIAL_FORMAT") or "e164").strip().lower(),
            pstn_country=(os.environ.get("PBX_PSTN_COUNTRY") or "GB").strip().upper(),
            emergency_numbers=_env_list("PBX_EMERGENCY_NUMBERS", ("112", "999", "911")),
        )


@dataclass(frozen=True)
class Settings:
    """Everything the services need to know about their surroundings."""

    database_url: str = DEFAULT_DATABASE_URL
    secret_key_file: Path = Path("var/secret.key")
    secret_key: str = ""
    quarantine_days: int = 90
    first_sync_hours: int = 24
    later_sync_hours: int = 4
    graph: GraphSettings = field(default_factory=GraphSettings)
    sync: SyncSettings = field(default_factory=SyncSettings)
    # "builtin": the directory's own tables are the PBX configuration; "asterisk": PJSIP
    # Realtime tables in Asterisk's PostgreSQL database at pbx_database_url.
    pbx_backend: str = "builtin"
    pbx_database_url: str = ""
    # The digest realm desk phones authenticate in (Asterisk's default realm is "asterisk").
    pbx_sip_realm: str = "asterisk"
    # The SIP server address shown to the admin with a new desk phone login.
    pbx_sip_registrar: str = ""
    pbx_trunks: PbxTrunkSettings = field(default_factory=PbxTrunkSettings)

    @classmethod
    def from_env(cls) -> Settings:
        """Read the settings from environment variables (see .env.example)."""
        return cls(
            database_url=async_database_url(
                os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
                setting="DATABASE_URL",
                kinds=("postgresql", "sqlite"),
            ),
            secret_key_file=Path(os.environ.get("SWITCHBOARD_SECRET_KEY_FILE", "var/secret.key")),
            secret_key=os.environ.get("SWITCHBOARD_SECRET_KEY", ""),
            quarantine_days=_env_int("NUMBER_QUARANTINE_DAYS", 90),
            first_sync_hours=_env_int("FIRST_SYNC_HOURS", 24),
            later_sync_hours=_env_int("LATER_SYNC_HOURS", 4),
            graph=GraphSettings.from_env(),
            sync=SyncSettings.from_env(),
            pbx_backend=(os.environ.get("PBX_BACKEND") or "builtin").strip().lower(),
            pbx_database_url=os.environ.get("PBX_DATABASE_URL", "").strip(),
            pbx_sip_realm=os.environ.get("PBX_SIP_REALM", "").strip() or "asterisk",
            pbx_sip_registrar=os.environ.get("PBX_SIP_REGISTRAR", "").strip(),
            pbx_trunks=PbxTrunkSettings.from_env(),
        )

"""Settings: every environment variable Switchboard reads, with its default, listed once.

Each setting is a field of a frozen dataclass, declared with `env("NAME", default)`; there is
one class per concern: `Settings` itself (the database, the key, the directory's rules, the
PBX backend) and its sections `BotEndpointSettings`, `GraphSettings`, `SyncSettings` and
`PbxTrunkSettings`. Code and tests build these classes directly and get exactly what they pass
plus the defaults; only `Settings.from_env()` reads the environment, through pydantic-settings,
and it checks every variable before anything starts: all the bad values are reported together,
one line each (`SettingsError.problems`), a secret's value never among them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

import phonenumbers
from pydantic import BeforeValidator, Field, create_model
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.dburl import async_database_url
from services.errors import ValidationError

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/switchboard.db"
DEFAULT_SECRET_KEY_FILE = Path("var/secret.key")
PUBLIC_GRAPH_URL = "https://graph.microsoft.com/v1.0"
PUBLIC_AUTHORITY_HOST = "https://login.microsoftonline.com"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
# Teams Phone Standard (MCOEV): the calling licence Direct Routing users need.
TEAMS_PHONE_STANDARD_SKU = "e43b5b99-8dfb-405f-9987-dc307f34bcbd"
DEFAULT_TEAMS_SERVICE_URL = "https://smba.trafficmanager.net/teams/"
# Microsoft's Direct Routing SIP proxies and the subnets their signalling comes from
# (learn.microsoft.com, "Plan Direct Routing": SIP signaling FQDNs and IP ranges).
TEAMS_SIP_PROXIES = (
    "sip.pstnhub.microsoft.com:5061",
    "sip2.pstnhub.microsoft.com:5061",
    "sip3.pstnhub.microsoft.com:5061",
)
TEAMS_SIGNALLING_SUBNETS = ("52.112.0.0/14", "52.122.0.0/15")
BOT_APP_TYPES = ("MultiTenant", "SingleTenant", "UserAssignedMSI")
PBX_BACKENDS = ("builtin", "asterisk")


class SettingsError(ValidationError):
    """Environment variables hold values Switchboard cannot use; `problems` has one line per
    bad value, each naming its variable and what to write instead."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems), field=None)
        self.problems = problems


# --- how a setting is declared -------------------------------------------------------------

_ENV = "switchboard.env"
_PARSE = "switchboard.parse"
_CONSTRAINTS = "switchboard.constraints"
_HIDDEN = "switchboard.hidden"


def env(
    name: str,
    default: Any,
    *,
    parse: Callable[[Any], Any] | None = None,
    secret: bool = False,
    **constraints: Any,
) -> Any:
    """A dataclass field read from the environment variable `name`, `default` when it is unset
    or empty. `parse` turns the raw text into the field's value first (and raises ValueError
    with the fix); `constraints` are pydantic's (`ge=1`, `gt=0`); a `secret` is kept out of
    the class's repr and out of the error that refuses it."""
    return field(
        default=default,
        repr=not secret,
        metadata={_ENV: name, _PARSE: parse, _CONSTRAINTS: constraints, _HIDDEN: secret},
    )


def _text(raw: Any) -> Any:
    return raw.strip() if isinstance(raw, str) else raw


def _lower(raw: Any) -> Any:
    return raw.strip().lower() if isinstance(raw, str) else raw


def _upper(raw: Any) -> Any:
    return raw.strip().upper() if isinstance(raw, str) else raw


def _csv(raw: Any) -> Any:
    """`a, b,c` as ("a", "b", "c")."""
    if isinstance(raw, str):
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    return raw


def _one_of(*choices: str, lower: bool = True) -> Callable[[Any], Any]:
    def parse(raw: Any) -> Any:
        if not isinstance(raw, str):
            return raw
        value = raw.strip()
        for choice in choices:
            if value.lower() == choice.lower():
                return choice
        raise ValueError(f"must be one of {', '.join(choices)}")

    return parse


def _pbx_backend(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    if raw.strip().lower() not in PBX_BACKENDS:
        raise ValueError(f"PBX_BACKEND is “{raw}”; use builtin or asterisk.")
    return raw.strip().lower()


def _finite(raw: Any) -> Any:
    if isinstance(raw, str) and raw.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
        raise ValueError("must be a finite number")
    return raw


def _region(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    region = raw.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError("must be a two-letter country code such as GB, US or DE")
    return region


def _log_level(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    level = raw.strip().upper()
    if level not in logging.getLevelNamesMapping():
        raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def _port(raw: Any) -> Any:
    if isinstance(raw, str) and not raw.strip().isdigit():
        raise ValueError("must be a port number (1-65535)")
    return raw


def _database_url(setting: str, kinds: tuple[str, ...]) -> Callable[[Any], Any]:
    def parse(raw: Any) -> Any:
        if not isinstance(raw, str):
            return raw
        try:
            return async_database_url(raw.strip(), setting=setting, kinds=kinds)
        except ValidationError as error:
            raise ValueError(error.message) from None

    return parse


def _checked_database_url(setting: str) -> Callable[[Any], Any]:
    """Checked as a PostgreSQL URL, kept as written (the backend picks its own driver)."""
    check = _database_url(setting, ("postgresql",))

    def parse(raw: Any) -> Any:
        if isinstance(raw, str) and raw.strip():
            check(raw)
            return raw.strip()
        return raw

    return parse


@dataclass(frozen=True)
class TenantCredential:
    """An app registration that signs in to one enterprise's tenant (single-tenant apps)."""

    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)


def _tenant_credentials(raw: Any) -> Any:
    """`{"<tenant id>": {"clientId": "...", "clientSecret": "..."}}` as credentials."""
    if not isinstance(raw, str):
        return raw
    if not raw.strip():
        return ()
    shape = 'a JSON object such as {"<tenant id>": {"clientId": "...", "clientSecret": "..."}}'
    try:
        document = json.loads(raw)
    except ValueError:
        raise ValueError(f"must be {shape}") from None
    if not isinstance(document, dict) or not all(
        isinstance(entry, dict)
        and isinstance(entry.get("clientId"), str)
        and isinstance(entry.get("clientSecret"), str)
        for entry in document.values()
    ):
        raise ValueError(f"must be {shape}")
    return tuple(
        TenantCredential(str(tenant).strip().lower(), entry["clientId"], entry["clientSecret"])
        for tenant, entry in document.items()
    )


# --- the settings, one class per concern ---------------------------------------------------


@dataclass(frozen=True)
class BotEndpointSettings:
    """Where `python -m bot` listens and who it is to the Bot Framework (its usual names).

    An empty `app_id` turns inbound authentication off: the local demo with the Agents
    Playground only. Empty `openid_metadata_url`/`token_authority`: Microsoft's public ones.
    """

    host: str = env("BOT_HOST", "127.0.0.1", parse=_text)
    port: int = env("BOT_PORT", 3978, parse=_port, ge=1, le=65535)
    app_id: str = env("MicrosoftAppId", "", parse=_text)
    app_password: str = env("MicrosoftAppPassword", "", secret=True)
    app_type: str = env("MicrosoftAppType", "MultiTenant", parse=_one_of(*BOT_APP_TYPES))
    app_tenant_id: str = env("MicrosoftAppTenantId", "", parse=_text)
    openid_metadata_url: str = env("BOT_OPENID_METADATA_URL", "", parse=_text)
    token_authority: str = env("BOT_TOKEN_AUTHORITY", "", parse=_text)
    token_authority_ca_bundle: str = env("BOT_TOKEN_AUTHORITY_CA_BUNDLE", "", parse=_text)


@dataclass(frozen=True)
class GraphSettings:
    """How Switchboard reaches Microsoft Graph and Entra, and what it asks of them.

    `client_id`/`client_secret` are a multi-tenant app consented in every enterprise;
    `tenant_credentials` override them per tenant. Without either, nothing talks to Graph.
    """

    base_url: str = env("GRAPH_BASE_URL", PUBLIC_GRAPH_URL, parse=_text)
    authority_host: str = env("GRAPH_AUTHORITY_HOST", PUBLIC_AUTHORITY_HOST, parse=_text)
    client_id: str = env("GRAPH_CLIENT_ID", "", parse=_text)
    client_secret: str = env("GRAPH_CLIENT_SECRET", "", secret=True)
    tenant_credentials: tuple[TenantCredential, ...] = env(
        "GRAPH_TENANT_CREDENTIALS", (), parse=_tenant_credentials, secret=True
    )
    # A CA file trusted for the authority only (a local Entra stand-in); None trusts the system.
    ca_bundle: str | None = env("GRAPH_AUTHORITY_CA_BUNDLE", None, parse=_text)
    scope: str = GRAPH_SCOPE
    essentials_sku: str = env("LICENCE_SKU_ESSENTIALS", TEAMS_PHONE_STANDARD_SKU, parse=_text)
    basic_sku: str = env("LICENCE_SKU_BASIC", TEAMS_PHONE_STANDARD_SKU, parse=_text)
    # The Direct Routing voice routing policy every calling user gets; empty skips the step.
    voice_routing_policy: str = env("VOICE_ROUTING_POLICY", "", parse=_text)
    usage_location: str = env("DEFAULT_USAGE_LOCATION", "GB", parse=_region)
    # The mailbox confirmation and password e-mails are sent from; empty sends none.
    mail_sender: str = env("MAIL_SENDER", "", parse=_text)
    # The tenant that mailbox lives in (the provider's own); empty: the enterprise's tenant.
    mail_tenant_id: str = env("MAIL_SENDER_TENANT_ID", "", parse=_lower)
    # The write budget per tenant, as Graph throttles identity writes (3,000 per 150 s).
    write_limit: int = env("GRAPH_WRITE_LIMIT", 3000, ge=1)
    write_window_seconds: float = env("GRAPH_WRITE_WINDOW_SECONDS", 150.0, parse=_finite, gt=0)
    # Spare seconds per window when workers share the budget through PostgreSQL.
    write_guard_seconds: float = env("GRAPH_WRITE_GUARD_SECONDS", 1.0, parse=_finite, ge=0)
    request_timeout_seconds: float = env("GRAPH_TIMEOUT_SECONDS", 30.0, parse=_finite, gt=0)
    max_attempts: int = env("GRAPH_MAX_ATTEMPTS", 6, ge=1)
    max_retry_seconds: float = env("GRAPH_MAX_RETRY_SECONDS", 120.0, parse=_finite, ge=0)
    backoff_base_seconds: float = env("GRAPH_BACKOFF_BASE_SECONDS", 0.5, parse=_finite, ge=0)
    backoff_max_seconds: float = env("GRAPH_BACKOFF_MAX_SECONDS", 30.0, parse=_finite, ge=0)
    batch_size: int = env("GRAPH_BATCH_SIZE", 20, ge=1, le=20)
    batch_linger_seconds: float = env("GRAPH_BATCH_LINGER_SECONDS", 0.005, parse=_finite, ge=0)
    operation_poll_seconds: float = env("GRAPH_OPERATION_POLL_SECONDS", 1.0, parse=_finite, gt=0)
    operation_timeout_seconds: float = env(
        "GRAPH_OPERATION_TIMEOUT_SECONDS", 300.0, parse=_finite, gt=0
    )
    # Ask Graph whether whoever starts a manual sync really is a Global Administrator.
    check_global_admin: bool = env("GRAPH_CHECK_GLOBAL_ADMIN", True)

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

    def problems(self) -> Iterator[str]:
        """Values that are fine alone but not together."""
        if bool(self.client_id) != bool(self.client_secret):
            yield "GRAPH_CLIENT_ID and GRAPH_CLIENT_SECRET must be set together (or neither)"


@dataclass(frozen=True)
class SyncSettings:
    """How the sync engine paces itself, retries, and whom it tells."""

    # Workers per process; SQLite always runs one.
    workers: int = env("SYNC_WORKERS", 1, ge=1)
    poll_seconds: float = env("SYNC_POLL_SECONDS", 1.0, parse=_finite, gt=0)
    lease_seconds: float = env("SYNC_LEASE_SECONDS", 60.0, parse=_finite, gt=0)
    tenant_concurrency: int = env("SYNC_TENANT_CONCURRENCY", 50, ge=1)
    max_attempts: int = env("SYNC_MAX_ATTEMPTS", 8, ge=1)
    retry_base_seconds: float = env("SYNC_RETRY_BASE_SECONDS", 5.0, parse=_finite, ge=0)
    retry_max_seconds: float = env("SYNC_RETRY_MAX_SECONDS", 300.0, parse=_finite, ge=0)
    verify_attempts: int = env("SYNC_VERIFY_ATTEMPTS", 5, ge=1)
    verify_delay_seconds: float = env("SYNC_VERIFY_DELAY_SECONDS", 2.0, parse=_finite, ge=0)
    overdue_check_seconds: float = env("SYNC_OVERDUE_CHECK_SECONDS", 60.0, parse=_finite, gt=0)
    # Where "sync finished" cards also go: a Teams channel's conversation id, if any.
    notification_channel_id: str = env("SYNC_NOTIFICATION_CHANNEL_ID", "", parse=_text)
    notification_service_url: str = env(
        "SYNC_NOTIFICATION_SERVICE_URL", DEFAULT_TEAMS_SERVICE_URL, parse=_text
    )
    notifier_poll_seconds: float = env("SYNC_NOTIFIER_POLL_SECONDS", 2.0, parse=_finite, gt=0)
    notifier_max_attempts: int = env("SYNC_NOTIFIER_MAX_ATTEMPTS", 8, ge=1)
    notifier_backoff_seconds: float = env("SYNC_NOTIFIER_BACKOFF_SECONDS", 1.0, parse=_finite, ge=0)


@dataclass(frozen=True)
class PbxTrunkSettings:
    """The provider's two SIP trunks and the static Asterisk configuration around them, as
    `switchboard pbx config` writes it (docs/PBX_SETUP.md)."""

    # Where Asterisk listens for desk phones and trunks (UDP and TCP), and for TLS.
    sip_bind: str = env("PBX_SIP_BIND", "0.0.0.0:5060", parse=_text)
    tls_bind: str = env("PBX_TLS_BIND", "0.0.0.0:5061", parse=_text)
    tls_cert_file: str = env("PBX_TLS_CERT_FILE", "", parse=_text)
    tls_key_file: str = env("PBX_TLS_KEY_FILE", "", parse=_text)
    # The SBC's own FQDN, as registered in Teams (New-CsOnlinePSTNGateway -Fqdn).
    sbc_fqdn: str = env("PBX_SBC_FQDN", "", parse=_text)
    # Teams Direct Routing: Microsoft's SIP proxies (host:port) and the transport to them.
    teams_hosts: tuple[str, ...] = env("PBX_TEAMS_HOSTS", TEAMS_SIP_PROXIES, parse=_csv)
    teams_transport: str = env("PBX_TEAMS_TRANSPORT", "tls", parse=_one_of("tls", "tcp", "udp"))
    teams_match: tuple[str, ...] = env("PBX_TEAMS_MATCH", TEAMS_SIGNALLING_SUBNETS, parse=_csv)
    # Media to Microsoft is SRTP (SDES keys over TLS); Asterisk needs res_srtp for it.
    teams_media_encryption: str = env("PBX_TEAMS_MEDIA_ENCRYPTION", "sdes", parse=_lower)
    # The carrier's trunk: where calls to the PSTN go and where calls from it come from.
    pstn_hosts: tuple[str, ...] = env("PBX_PSTN_HOSTS", (), parse=_csv)
    pstn_transport: str = env("PBX_PSTN_TRANSPORT", "udp", parse=_one_of("udp", "tcp", "tls"))
    pstn_match: tuple[str, ...] = env("PBX_PSTN_MATCH", (), parse=_csv)
    # How the carrier wants a called number: "e164" (+442079460000) or "e164-no-plus".
    pstn_dial_format: str = env(
        "PBX_PSTN_DIAL_FORMAT", "e164", parse=_one_of("e164", "e164-no-plus")
    )
    # The country of national numbers the carrier delivers (0 20 7946 0000 for GB).
    pstn_country: str = env("PBX_PSTN_COUNTRY", "GB", parse=_region)
    # Numbers that always go straight to the carrier, whatever the extensions are.
    emergency_numbers: tuple[str, ...] = env(
        "PBX_EMERGENCY_NUMBERS", ("112", "999", "911"), parse=_csv
    )


@dataclass(frozen=True)
class Settings:
    """Everything Switchboard needs to know about its surroundings: the database, the key,
    the directory's rules, the PBX, and the sections above. One object, built once, handed to
    the composition root (services/container.py) by the bot, the CLI and the workers alike."""

    database_url: str = env(
        "DATABASE_URL",
        DEFAULT_DATABASE_URL,
        parse=_database_url("DATABASE_URL", ("postgresql", "sqlite")),
    )
    secret_key_file: Path = env("SWITCHBOARD_SECRET_KEY_FILE", DEFAULT_SECRET_KEY_FILE)  # noqa: RUF009 - env() is a dataclasses.field
    secret_key: str = env("SWITCHBOARD_SECRET_KEY", "", secret=True)
    quarantine_days: int = env("NUMBER_QUARANTINE_DAYS", 90, ge=0)
    first_sync_hours: int = env("FIRST_SYNC_HOURS", 24, ge=1)
    later_sync_hours: int = env("LATER_SYNC_HOURS", 4, ge=1)
    # The country of numbers typed without +, for an enterprise created without a region.
    default_phone_region: str = env("DEFAULT_PHONE_REGION", "GB", parse=_region)
    log_level: str = env("LOG_LEVEL", "INFO", parse=_log_level)
    bot: BotEndpointSettings = field(default_factory=BotEndpointSettings)
    graph: GraphSettings = field(default_factory=GraphSettings)
    sync: SyncSettings = field(default_factory=SyncSettings)
    # "builtin": the directory's own tables are the PBX configuration; "asterisk": PJSIP
    # Realtime tables in Asterisk's PostgreSQL database at pbx_database_url.
    pbx_backend: str = env("PBX_BACKEND", "builtin", parse=_pbx_backend)
    pbx_database_url: str = env(
        "PBX_DATABASE_URL", "", parse=_checked_database_url("PBX_DATABASE_URL")
    )
    # The digest realm desk phones authenticate in (Asterisk's default realm is "asterisk").
    pbx_sip_realm: str = env("PBX_SIP_REALM", "asterisk", parse=_text)
    # The SIP server address shown to the admin with a new desk phone login.
    pbx_sip_registrar: str = env("PBX_SIP_REGISTRAR", "", parse=_text)
    pbx_trunks: PbxTrunkSettings = field(default_factory=PbxTrunkSettings)

    SECTIONS: ClassVar[dict[str, type[Any]]] = {
        "bot": BotEndpointSettings,
        "graph": GraphSettings,
        "sync": SyncSettings,
        "pbx_trunks": PbxTrunkSettings,
    }

    def problems(self) -> Iterator[str]:
        """Values that are fine alone but not together."""
        if self.pbx_backend == "asterisk" and not self.pbx_database_url:
            yield (
                "PBX_BACKEND=asterisk needs PBX_DATABASE_URL, the Asterisk realtime database "
                "(e.g. postgresql+asyncpg://asterisk@pbx-db/asterisk)."
            )

    @classmethod
    def from_env(cls) -> Settings:
        """Read and check every setting from the environment; SettingsError lists every bad
        value, one line each."""
        problems: list[str] = []

        def read(kind: type[Section]) -> Section | None:
            try:
                return read_environment(kind)
            except SettingsError as error:
                problems.extend(error.problems)
                return None

        sections: dict[str, Any] = {name: read(kind) for name, kind in cls.SECTIONS.items()}
        settings = read(cls)
        # Values that are fine alone but not together, wherever their own values parsed.
        for checked in (settings, *sections.values()):
            if checked is not None and hasattr(checked, "problems"):
                problems.extend(checked.problems())
        if settings is None or problems:
            raise SettingsError(problems)
        return dataclasses.replace(settings, **sections)


# --- reading the environment, with pydantic-settings ---------------------------------------


class _Environment(BaseSettings):
    """Environment variables by their exact names; unset and empty ones take the default."""

    model_config = SettingsConfigDict(
        case_sensitive=True, env_ignore_empty=True, extra="ignore", frozen=True
    )


_MODELS: dict[type[Any], type[_Environment]] = {}

Section = TypeVar("Section")


def env_fields(kind: type[Any]) -> Iterator[tuple[dataclasses.Field[Any], str]]:
    """The fields of a settings class read from the environment, with their variable's name."""
    for item in dataclasses.fields(kind):
        name = item.metadata.get(_ENV)
        if name:
            yield item, name


def _model(kind: type[Any]) -> type[_Environment]:
    """The pydantic-settings model that reads `kind`'s variables (built once per class)."""
    if kind not in _MODELS:
        hints = typing.get_type_hints(kind, include_extras=True)
        definitions: dict[str, Any] = {}
        for item, name in env_fields(kind):
            annotation: Any = hints[item.name]
            parse = item.metadata.get(_PARSE)
            if parse is not None:
                annotation = Annotated[annotation, NoDecode, BeforeValidator(parse)]
            definitions[item.name] = (
                annotation,
                Field(
                    default=item.default,
                    validation_alias=name,
                    **item.metadata.get(_CONSTRAINTS, {}),
                ),
            )
        _MODELS[kind] = create_model(
            f"{kind.__name__}Environment", __base__=_Environment, **definitions
        )
    return _MODELS[kind]


_MEANINGS = {
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_parsing": "must be true or false (1/0, yes/no, on/off)",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
}


def _line(error: Mapping[str, Any], secrets: set[str]) -> str:
    """One pydantic error as `NAME must be …, not 'value'` (a secret's value is not shown)."""
    name = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "value_error":
        meaning = str(error.get("ctx", {}).get("error", error["msg"]))
    else:
        meaning = _MEANINGS.get(kind, error["msg"]).format(**error.get("ctx", {}))
    if meaning.startswith(name):  # a message that already names the variable
        return meaning
    if name in secrets:
        return f"{name} {meaning} (its value is not shown: it is a secret)"
    return f"{name} {meaning}, not {error['input']!r}"


def read_environment(kind: type[Section]) -> Section:
    """Build the settings class `kind` from the environment (its `env` fields, the others
    their defaults); SettingsError lists every variable that holds a bad value."""
    try:
        values = _model(kind)()
    except PydanticValidationError as error:
        secrets = {name for item, name in env_fields(kind) if item.metadata.get(_HIDDEN)}
        raise SettingsError([_line(e, secrets) for e in error.errors()]) from None
    read = {item.name: getattr(values, item.name) for item, _ in env_fields(kind)}
    return kind(**read)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        if value and isinstance(value[0], TenantCredential):
            return json.dumps(
                {
                    c.tenant_id: {"clientId": c.client_id, "clientSecret": c.client_secret}
                    for c in value
                }
            )
        return ",".join(str(item) for item in value)
    return str(value)


def as_environment(settings: Settings) -> dict[str, str]:
    """The variables that give `settings` back through `Settings.from_env()`: how a process
    hands its settings to the processes it starts (an empty list takes the default)."""
    holders: list[tuple[type[Any], Any]] = [(Settings, settings)]
    holders += [(kind, getattr(settings, name)) for name, kind in Settings.SECTIONS.items()]
    return {
        name: _as_text(getattr(holder, item.name))
        for kind, holder in holders
        for item, name in env_fields(kind)
    }


def variables() -> list[tuple[str, str, Any]]:
    """(variable, section, default) for every environment variable Switchboard reads."""
    rows = []
    kinds: list[type[Any]] = [Settings, *Settings.SECTIONS.values()]
    for kind in kinds:
        for item, name in env_fields(kind):
            rows.append((name, kind.__name__, item.default))
    return rows

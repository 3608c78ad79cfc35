"""Settings read from the environment once, at the composition root."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/switchboard.db"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


@dataclass(frozen=True)
class Settings:
    """Everything the services need to know about their surroundings."""

    database_url: str = DEFAULT_DATABASE_URL
    secret_key_file: Path = Path("var/secret.key")
    secret_key: str = ""
    quarantine_days: int = 90
    default_region: str = "GB"
    first_sync_hours: int = 24
    later_sync_hours: int = 4
    # "builtin": the directory's own tables are the PBX configuration; "asterisk": PJSIP
    # Realtime tables in the database at pbx_database_url (PostgreSQL or SQLite).
    pbx_backend: str = "builtin"
    pbx_database_url: str = ""
    # The digest realm desk phones authenticate in (Asterisk's default realm is "asterisk").
    pbx_sip_realm: str = "asterisk"
    # The SIP server address shown to the admin with a new desk phone login.
    pbx_sip_registrar: str = ""

    @classmethod
    def from_env(cls) -> Settings:
        """Read the settings from environment variables (see .env.example)."""
        return cls(
            database_url=os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            secret_key_file=Path(os.environ.get("SWITCHBOARD_SECRET_KEY_FILE", "var/secret.key")),
            secret_key=os.environ.get("SWITCHBOARD_SECRET_KEY", ""),
            quarantine_days=_env_int("NUMBER_QUARANTINE_DAYS", 90),
            default_region=os.environ.get("DEFAULT_PHONE_REGION", "GB"),
            first_sync_hours=_env_int("FIRST_SYNC_HOURS", 24),
            later_sync_hours=_env_int("LATER_SYNC_HOURS", 4),
            pbx_backend=(os.environ.get("PBX_BACKEND") or "builtin").strip().lower(),
            pbx_database_url=os.environ.get("PBX_DATABASE_URL", "").strip(),
            pbx_sip_realm=os.environ.get("PBX_SIP_REALM", "").strip() or "asterisk",
            pbx_sip_registrar=os.environ.get("PBX_SIP_REGISTRAR", "").strip(),
        )

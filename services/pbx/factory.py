"""Build the PBX from the settings: the backend PBX_BACKEND names, its pusher and reconciler."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from services.config import Settings
from services.db import Database
from services.errors import ValidationError
from services.pbx.asterisk import AsteriskBackend
from services.pbx.backend import PbxBackend
from services.pbx.builtin import BuiltinBackend
from services.pbx.pusher import PbxPusher
from services.pbx.reconcile import Reconciler


class PbxBackendKind(StrEnum):
    """The PBX implementations PBX_BACKEND can name."""

    BUILTIN = "builtin"
    ASTERISK = "asterisk"


def build_backend(settings: Settings, directory_db: Database) -> PbxBackend:
    """The backend PBX_BACKEND names; a setting that does not fit is refused with the reason."""
    try:
        kind = PbxBackendKind((settings.pbx_backend or "builtin").strip().lower())
    except ValueError:
        raise ValidationError(
            f"PBX_BACKEND is “{settings.pbx_backend}”; use builtin or asterisk.",
            field="PBX_BACKEND",
        ) from None
    if kind is PbxBackendKind.BUILTIN:
        return BuiltinBackend(directory_db)
    if not settings.pbx_database_url:
        raise ValidationError(
            "PBX_BACKEND=asterisk needs PBX_DATABASE_URL, the Asterisk realtime database "
            "(e.g. postgresql+asyncpg://asterisk@pbx-db/asterisk).",
            field="PBX_DATABASE_URL",
        )
    return AsteriskBackend(settings.pbx_database_url)


@dataclass(frozen=True)
class Pbx:
    """The PBX itself as the composition root (services/container.py) wires it: one backend,
    the pusher that applies the directory's changes to it, and the reconciler that compares
    the two. The PBX-side records (hunt groups, desk phones, statuses) are services of their
    own on `Services`."""

    backend: PbxBackend
    pusher: PbxPusher
    reconciler: Reconciler

    @classmethod
    def build(cls, settings: Settings, directory_db: Database) -> Pbx:
        """Wire the PBX over the directory's database and the configured backend."""
        return cls.over(build_backend(settings, directory_db), directory_db)

    @classmethod
    def over(cls, backend: PbxBackend, directory_db: Database) -> Pbx:
        """Wire the PBX over a given backend (tests hand in their own)."""
        return cls(
            backend=backend,
            pusher=PbxPusher(directory_db, backend),
            reconciler=Reconciler(directory_db, backend),
        )

    async def close(self) -> None:
        """Release the PBX connections (stop the pusher first)."""
        await self.backend.close()

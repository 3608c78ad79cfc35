"""Build the PBX side from the settings: the backend, the pusher and the services on top."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from services.config import Settings
from services.db import Database
from services.errors import ValidationError
from services.pbx.asterisk import AsteriskBackend
from services.pbx.backend import PbxBackend
from services.pbx.builtin import BuiltinBackend
from services.pbx.credentials import DeskPhones
from services.pbx.huntgroups import HuntGroups
from services.pbx.pusher import PbxPusher
from services.pbx.reconcile import Reconciler
from services.pbx.status import PbxStatuses


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
    """Everything of the PBX side the composition root wires: one backend, one pusher."""

    backend: PbxBackend
    pusher: PbxPusher
    hunt_groups: HuntGroups
    desk_phones: DeskPhones
    statuses: PbxStatuses
    reconciler: Reconciler

    @classmethod
    def build(cls, settings: Settings, directory_db: Database) -> Pbx:
        """Wire the PBX services over the directory's database and the configured backend."""
        backend = build_backend(settings, directory_db)
        return cls.over(backend, settings, directory_db)

    @classmethod
    def over(cls, backend: PbxBackend, settings: Settings, directory_db: Database) -> Pbx:
        """Wire the PBX services over a given backend (tests hand in their own)."""
        return cls(
            backend=backend,
            pusher=PbxPusher(directory_db, backend),
            hunt_groups=HuntGroups(directory_db, settings.quarantine_days),
            desk_phones=DeskPhones(
                directory_db, settings.pbx_sip_realm, settings.pbx_sip_registrar
            ),
            statuses=PbxStatuses(directory_db),
            reconciler=Reconciler(directory_db, backend),
        )

    async def close(self) -> None:
        """Release the PBX connections (stop the pusher first)."""
        await self.backend.close()

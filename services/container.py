"""The composition root: every service of the domain, built over one database."""

from __future__ import annotations

from dataclasses import dataclass

from services.config import Settings
from services.conversations import ActivityLedger, ConversationStore
from services.db import Database
from services.directory import Directory
from services.enterprises import Enterprises
from services.inventory import Inventory
from services.licences import Licences
from services.passwords import PasswordVault
from services.pbx.credentials import DeskPhones
from services.pbx.huntgroups import HuntGroups
from services.pbx.status import PbxStatuses
from services.sync import Syncs
from services.users import Users


@dataclass(frozen=True)
class Services:
    """Enterprises, numbers, licences, users, syncs and the PBX-side records: what the bot
    and the CLI act on."""

    db: Database
    enterprises: Enterprises
    inventory: Inventory
    licences: Licences
    users: Users
    directory: Directory
    syncs: Syncs
    conversations: ConversationStore
    ledger: ActivityLedger
    hunt_groups: HuntGroups
    desk_phones: DeskPhones
    pbx_statuses: PbxStatuses

    @classmethod
    def build(cls, db: Database, settings: Settings, vault: PasswordVault) -> Services:
        """Wire the services over one database."""
        return cls(
            db=db,
            enterprises=Enterprises(db),
            inventory=Inventory(db, settings.quarantine_days),
            licences=Licences(db),
            users=Users(db, vault, settings.quarantine_days),
            directory=Directory(db),
            syncs=Syncs(db, settings.first_sync_hours, settings.later_sync_hours),
            conversations=ConversationStore(db),
            ledger=ActivityLedger(db),
            hunt_groups=HuntGroups(db, settings.quarantine_days),
            desk_phones=DeskPhones(db, settings.pbx_sip_realm, settings.pbx_sip_registrar),
            pbx_statuses=PbxStatuses(db),
        )


async def open_services(settings: Settings) -> Services:
    """Connect to the configured database, migrate it, and build the services over it."""
    db = Database(settings.database_url)
    await db.migrate()
    vault = PasswordVault.from_settings(settings.secret_key, settings.secret_key_file)
    return Services.build(db, settings, vault)

"""The composition root: every service of the domain built once, from one `Settings`.

The bot (`bot/app.py`), the operator CLI (`services/cli.py`) and the sync workers
(`switchboard worker`, `python -m services.provisioning`) all get their services from
`open_services(settings)` with the one settings object `Settings.from_env()` read at startup.
What a service needs is handed to its constructor here (the Graph checks, the PBX backend);
nothing is set on a service after it is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.config import Settings
from services.conversations import ActivityLedger, ConversationStore
from services.db import Database
from services.directory import Directory
from services.enterprises import Enterprises
from services.graph import GlobalAdminCheck, GraphService, VerifiedDomains
from services.inventory import Inventory
from services.licences import Licences
from services.passwords import PasswordVault
from services.pbx.credentials import DeskPhones
from services.pbx.factory import Pbx
from services.pbx.huntgroups import HuntGroups
from services.pbx.status import PbxStatuses
from services.provisioning.engine import ProvisioningEngine
from services.sync import Syncs
from services.users import Users


@dataclass(frozen=True)
class Services:
    """Enterprises, numbers, licences, users, syncs and the PBX side: what the bot, the CLI
    and the workers act on, with the settings they were built from."""

    settings: Settings
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
    # The PBX backend, its pusher and its reconciler (PBX_BACKEND).
    pbx: Pbx
    # Microsoft Graph when GRAPH_* credentials are configured (or handed in); else None.
    graph: GraphService | None = None

    @classmethod
    def build(
        cls,
        db: Database,
        settings: Settings,
        vault: PasswordVault,
        *,
        graph: GraphService | None = None,
    ) -> Services:
        """Wire the services over one database. With `graph`, new addresses are checked
        against the tenant's verified domains and, unless GRAPH_CHECK_GLOBAL_ADMIN is off,
        whoever starts a sync is confirmed as its Global Administrator."""
        admin_check = (
            GlobalAdminCheck(graph)
            if graph is not None and settings.graph.check_global_admin
            else None
        )
        return cls(
            settings=settings,
            db=db,
            enterprises=Enterprises(db),
            inventory=Inventory(db, settings.quarantine_days),
            licences=Licences(db),
            users=Users(
                db,
                vault,
                settings.quarantine_days,
                email_domain_check=VerifiedDomains(graph) if graph is not None else None,
            ),
            directory=Directory(db),
            syncs=Syncs(
                db,
                settings.first_sync_hours,
                settings.later_sync_hours,
                global_admin_check=admin_check,
            ),
            conversations=ConversationStore(db),
            ledger=ActivityLedger(db),
            hunt_groups=HuntGroups(db, settings.quarantine_days),
            desk_phones=DeskPhones(db, settings.pbx_sip_realm, settings.pbx_sip_registrar),
            pbx_statuses=PbxStatuses(db),
            pbx=Pbx.build(settings, db),
            graph=graph,
        )

    @property
    def vault(self) -> PasswordVault:
        """The key that seals generated passwords until the sync has used them."""
        return self.users.vault

    def sync_workers(
        self, *, on_notice: Callable[[], None] | None = None
    ) -> list[ProvisioningEngine]:
        """The sync workers this process runs (SYNC_WORKERS on PostgreSQL, one on SQLite);
        `on_notice` is called when one leaves a notice for the bot to send."""
        count = 1 if self.db.is_sqlite else self.settings.sync.workers
        return [
            ProvisioningEngine(self.db, self.vault, self.graph, self.settings, on_notice=on_notice)
            for _ in range(count)
        ]

    async def close(self) -> None:
        """Release the PBX backend, Graph's HTTP session and the database's connections."""
        await self.pbx.close()
        if self.graph is not None:
            await self.graph.close()
        await self.db.dispose()


async def open_services(settings: Settings, *, graph: GraphService | None = None) -> Services:
    """Connect to the configured database, migrate it, and build the services over it, with
    Microsoft Graph when the settings configure it (`graph` replaces that client: tests point
    one at the sandbox). `Services.close()` releases everything."""
    db = Database(settings.database_url)
    await db.migrate()
    vault = PasswordVault.from_settings(settings.secret_key, settings.secret_key_file)
    if graph is None and settings.graph.enabled:
        graph = GraphService(settings.graph)
    return Services.build(db, settings, vault, graph=graph)

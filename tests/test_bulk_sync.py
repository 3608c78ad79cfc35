"""One sync carries a whole bulk import to Microsoft: an enterprise that syncs automatically
gets no run while an import is still applying, then one run with every user of the file."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from services.bulk.service import Bulk
from services.bulk.values import ImportStatus, RowAction
from services.container import Services
from services.domain import AdminRole, LicenceProduct
from services.models import Enterprise, ProvisioningItem, SyncRun, utcnow
from services.provisioning import planner
from services.provisioning.planner import Planner
from services.provisioning.work import AUTHORS
from services.users import NewUser
from tests.bulk_kit import sheet
from tests.conftest import PROVIDER, admin_of, seed_enterprise

ON_BOTH = pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def test_the_planner_names_the_applying_state_as_the_bulk_tables_store_it() -> None:
    assert ImportStatus.APPLYING.value == planner._IMPORT_APPLYING
    assert RowAction.CREATE.value == planner._ROW_CREATES


async def _count(services: Services, query) -> int:
    async with services.db.unit_of_work(readonly=True) as uow:
        return int((await uow.session.execute(query)).scalar_one())


@ON_BOTH
async def test_an_import_reaches_microsoft_in_one_automatic_sync(services: Services) -> None:
    ent = await seed_enterprise(services, consent=True)
    async with services.db.unit_of_work() as uow:
        await uow.session.execute(
            update(Enterprise)
            .where(Enterprise.id == ent)
            .values(first_sync_completed_at=utcnow() - timedelta(days=1))
        )
        await uow.commit()
    bulk = Bulk.of(services, batch_size=2)
    data = sheet([[f"User {i}", f"user{i}@contoso.example", "Basic", "", ""] for i in range(5)])
    preview = await bulk.preview(ent, data)
    import_id = await bulk.start(PROVIDER, ent, data, preview.token, "people.csv")
    plans = Planner(services.db, 4, on_closed=lambda: None)

    # A first batch is in the directory, the rest still to apply: no sync yet.
    assert await bulk._run_batch(import_id, ent, PROVIDER)
    assert await plans.start_automatic_runs() == 0

    await bulk.run(import_id)
    assert await plans.start_automatic_runs() == 1
    assert await plans.plan_next_run()
    assert await _count(services, select(func.count()).select_from(SyncRun)) == 1
    assert await _count(services, select(func.count()).select_from(ProvisioningItem)) == 5


@ON_BOTH
async def test_users_from_a_file_send_their_admin_no_user_added_email_each(
    services: Services,
) -> None:
    ent = await seed_enterprise(services)
    admin = admin_of(ent, AdminRole.GLOBAL_ADMIN)
    bulk = Bulk.of(services, batch_size=2)
    data = sheet([[f"User {i}", f"user{i}@contoso.example", "Basic", "", ""] for i in range(3)])
    preview = await bulk.preview(ent, data)
    await bulk.apply(admin, ent, data, preview.token, "people.csv")
    one = await services.users.create(
        admin, ent, NewUser("Ada Lovelace", "ada@contoso.example", LicenceProduct.BASIC)
    )
    await services.syncs.request(admin, ent)
    assert await Planner(services.db, 4, on_closed=lambda: None).plan_next_run()

    async with services.db.unit_of_work(readonly=True) as uow:
        items = (await uow.session.execute(select(ProvisioningItem))).scalars().all()
        told = {item.user_id: item.payload.get(AUTHORS, []) for item in items}
    assert len(told) == 4
    assert told.pop(one.id) == [admin.aad_object_id]  # one by one: the admin is told
    assert all(authors == [] for authors in told.values())  # the import's result file tells

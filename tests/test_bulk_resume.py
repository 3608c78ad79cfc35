"""An apply killed with SIGKILL in the middle of a batch, then resumed: every row applied
exactly once, no number or extension given twice. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from services.bulk.service import Bulk
from services.bulk.values import ImportStatus
from services.container import Services
from services.domain import LicenceProduct
from services.inventory import AUTO
from services.models import AuditEntry, Extension, PhoneNumber, User
from services.passwords import PasswordVault
from services.users import NewUser
from tests.bulk_kit import directory_facts, sheet
from tests.conftest import PROVIDER, admin_of, seed_enterprise

ROOT = Path(__file__).resolve().parent.parent
BATCH = 8


async def _audits(services: Services, ent: int) -> Counter[tuple[str, str]]:
    async with services.db.unit_of_work(readonly=True) as uow:
        rows = await uow.session.execute(
            select(AuditEntry.action, AuditEntry.target).where(AuditEntry.enterprise_id == ent)
        )
        return Counter((action, target) for action, target in rows)


async def test_an_apply_killed_mid_batch_resumes_applying_every_row_exactly_once(
    services: Services, vault: PasswordVault, tmp_path: Path
) -> None:
    ent = await seed_enterprise(services, essentials=60, basic=60)
    for i in range(12):
        await services.users.create(
            PROVIDER,
            ent,
            NewUser(f"Old {i}", f"old{i}@contoso.example", LicenceProduct.BASIC, extension=AUTO),
        )
    rows = []
    for i in range(40):
        if i % 3 == 0:
            rows.append([f"New {i}", f"new{i}@contoso.example", "Essentials", "", ""])
        elif i % 3 == 1:
            number = f"+44 20 7946 00{50 + i}"
            rows.append([f"New {i}", f"new{i}@contoso.example", "Essentials", number, ""])
        else:
            rows.append([f"New {i}", f"new{i}@contoso.example", "Basic", "", str(1060 + i)])
    rows += [[f"Old {i}", f"old{i}@contoso.example", "Essentials", "", ""] for i in range(9)]
    rows += [[f"Old {i}", f"old{i}@contoso.example", "", "", "", "remove"] for i in range(9, 12)]
    data = sheet(rows, ["Name", "E-mail", "Licence", "Number", "Extension", "Action"])
    bulk = Bulk.of(services, batch_size=BATCH)
    preview = await bulk.preview(ent, data)
    assert preview.summary() == "40 to create, 9 to update, 3 to remove, 0 unchanged, 0 rejected"
    import_id = await bulk.start(admin_of(ent), ent, data, preview.token, "move.csv")
    before = await _audits(services, ent)

    # Stalls once a third batch has marked rows applied, before that batch commits.
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.bulk_worker", services.db.url,
         str(tmp_path / "secret.key"), str(import_id), str(BATCH), str(2 * BATCH + 3)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert worker.stdout is not None
        line = await asyncio.to_thread(worker.stdout.readline)
        assert line.strip() == "stalled"
        os.kill(worker.pid, signal.SIGKILL)
        await asyncio.to_thread(worker.wait)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == -signal.SIGKILL

    halfway = await bulk.progress(import_id)
    assert (halfway.applied, halfway.failed, halfway.pending) == (2 * BATCH, 0, 52 - 2 * BATCH)
    assert halfway.status is ImportStatus.APPLYING
    assert await bulk.unfinished(ent) == [import_id]

    for unfinished in await bulk.unfinished(ent):
        done = await bulk.run(unfinished)
    assert (done.applied, done.failed, done.pending) == (52, 0, 0)
    assert done.finished and await bulk.unfinished(ent) == []

    # Every row exactly once: one audit entry per change, one create per new user.
    changes = await _audits(services, ent) - before
    assert changes == Counter(
        {("user.create", f"new{i}@contoso.example"): 1 for i in range(40)}
        | {("user.update", f"old{i}@contoso.example"): 1 for i in range(9)}
        | {("user.remove", f"old{i}@contoso.example"): 1 for i in range(9, 12)}
    )
    facts = await directory_facts(services.db, ent)
    assert sorted(facts.emails) == sorted(
        [f"new{i}@contoso.example" for i in range(40)]
        + [f"old{i}@contoso.example" for i in range(9)]
    )
    assert set(facts.outbox.values()) == {2}
    # No number or extension given twice; everyone holds what their licence includes.
    async with services.db.unit_of_work(readonly=True) as uow:
        s = uow.session
        numbers = (
            await s.execute(
                select(PhoneNumber.e164, PhoneNumber.user_id).where(
                    PhoneNumber.user_id.is_not(None)
                )
            )
        ).all()
        extensions = (
            await s.execute(
                select(Extension.number, Extension.user_id).where(Extension.user_id.is_not(None))
            )
        ).all()
        essentials = (
            await s.execute(select(func.count()).where(User.licence == LicenceProduct.ESSENTIALS))
        ).scalar_one()
    holders = [user for _, user in numbers]
    assert len(holders) == len(set(holders)) == essentials == 14 + 13 + 9
    assert len({n for n, _ in numbers}) == len(numbers)
    ext_holders = [user for _, user in extensions]
    assert len(ext_holders) == len(set(ext_holders)) == len({x for x, _ in extensions}) == 49
    pools = {p.product: p for p in await services.licences.pools(ent)}
    assert pools[LicenceProduct.ESSENTIALS].used == essentials
    assert pools[LicenceProduct.BASIC].used == 13
    result = await bulk.result_csv(import_id)
    assert result.count(b",applied,") == 52

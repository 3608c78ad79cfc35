"""The directory services on SQLite and PostgreSQL: the business rules and their refusals."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import event, select, update

from bot.app import keep_house
from services.callerid import CallerIdChange
from services.container import Services
from services.conversations import ActivityLedger, Claim
from services.domain import (
    AdminRole,
    CallerIdMode,
    DigitMatch,
    DirectorySort,
    LicenceProduct,
    NumberStatus,
    ProvisioningStatus,
    SyncStatus,
)
from services.errors import (
    BulkRefusedError,
    ConflictError,
    NoFreeNumberError,
    NotEnoughSubscriptionsError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from services.inventory import AUTO
from services.models import AuditEntry, OutboxItem, PhoneNumber, ProcessedActivity, User, utcnow
from services.users import RELEASE, NewUser, UserChanges
from tests.conftest import PROVIDER, admin_of, number_statuses, seed_enterprise


async def _rows(services: Services, model: type, *where: object) -> list:
    async with services.db.unit_of_work(readonly=True) as uow:
        rows = list((await uow.session.execute(select(model).where(*where))).scalars())
        uow.session.expunge_all()
        return rows


# --- numbers -----------------------------------------------------------------------------------


async def test_import_range_stores_e164_and_counts(services: Services) -> None:
    ent = await seed_enterprise(services, numbers=("020 7946 0000", "020 7946 0009"))
    page = await services.inventory.search_free(ent, page_size=100)
    assert page.total == 10
    assert page.items[0] == "+442079460000" and page.items[-1] == "+442079460009"
    again = await services.inventory.import_range(PROVIDER, ent, "+442079460005", "+442079460014")
    assert (again.added, again.already_present) == (5, 5)


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("not a number", "+442079460009", "is not a phone number"),
        ("+442079460009", "+442079460000", "ends"),
        ("+44207946000", "+442079460009", "not a valid number"),
        ("+442079460000", "+4420794600001", "not a valid number"),
    ],
)
async def test_import_range_refuses_bad_ranges(
    services: Services, first: str, last: str, message: str
) -> None:
    ent = await seed_enterprise(services)
    with pytest.raises(ValidationError) as refused:
        await services.inventory.import_range(PROVIDER, ent, first, last)
    assert message in refused.value.message


async def test_import_refuses_another_enterprises_numbers(services: Services) -> None:
    first = await seed_enterprise(services, tenant_id="t-one")
    second = await seed_enterprise(
        services, tenant_id="t-two", numbers=("+442079470000", "+442079470009")
    )
    with pytest.raises(ValidationError, match="belong to another enterprise"):
        await services.inventory.import_range(PROVIDER, second, "+442079460095", "+442079460105")
    # nothing of the refused import landed
    page = await services.inventory.search_free(second, page_size=100)
    assert page.total == 10
    assert (await services.inventory.search_free(first, page_size=100)).total == 100


async def test_import_csv_all_or_nothing_with_line_numbers(services: Services) -> None:
    ent = await seed_enterprise(services)
    with pytest.raises(ValidationError) as refused:
        await services.inventory.import_csv(
            PROVIDER, ent, "number\n+442079480000\nbanana\n+442079480002\n12\n"
        )
    assert "line 3" in refused.value.message and "line 5" in refused.value.message
    assert (await services.inventory.search_free(ent, "948")).total == 0
    report = await services.inventory.import_csv(
        PROVIDER, ent, "number,site\n+442079480000,London\n020 7948 0001,London\n"
    )
    assert report.added == 2
    assert (await services.inventory.search_free(ent, "80001")).items == ["+442079480001"]


async def test_search_by_last_and_contained_digits_with_paging(services: Services) -> None:
    ent = await seed_enterprise(services, numbers=("+442079460000", "+442079461999"))
    ends = await services.inventory.search_free(ent, "1111")
    assert ends.items == ["+442079461111"]
    tens = await services.inventory.search_free(ent, "11", page_size=5)
    assert tens.total == 20 and len(tens.items) == 5
    assert all(n.endswith("11") for n in tens.items)
    second = await services.inventory.search_free(ent, "11", page=2, page_size=5)
    assert set(second.items).isdisjoint(tens.items)
    contains = await services.inventory.search_free(ent, "1234", match=DigitMatch.CONTAINS)
    assert contains.items == ["+442079461234"]
    with pytest.raises(ValidationError):
        await services.inventory.search_free(ent, "abc")


async def test_release_quarantines_then_frees_after_the_period(services: Services) -> None:
    ent = await seed_enterprise(services, numbers=("+442079460000", "+442079460001"))
    admin = admin_of(ent)
    ada = await services.users.create(
        admin, ent, NewUser("Ada", "ada@contoso.com", LicenceProduct.ESSENTIALS)
    )
    assert ada.number == "+442079460000"
    await services.users.update(
        admin, ent, ada.id, ada.version, UserChanges(number=RELEASE, licence=LicenceProduct.BASIC)
    )
    numbers = await number_statuses(services.db, ent)
    assert numbers["+442079460000"] is NumberStatus.QUARANTINED
    assert (await services.inventory.search_free(ent)).items == ["+442079460001"]
    # the quarantine ends: the number is free again
    async with services.db.unit_of_work() as uow:
        await uow.session.execute(
            update(PhoneNumber)
            .values(quarantined_until=utcnow() - timedelta(seconds=1))
            .where(PhoneNumber.status == NumberStatus.QUARANTINED)
        )
        await uow.commit()
    assert await services.inventory.sweep(ent) == 1
    assert (await services.inventory.search_free(ent)).total == 2


async def test_auto_assignment_frees_ended_quarantines_when_nothing_else_is_free(
    services: Services,
) -> None:
    ent = await seed_enterprise(services, numbers=("+442079460000", "+442079460001"))
    admin = admin_of(ent)
    ada = await services.users.create(
        admin, ent, NewUser("Ada", "ada@contoso.com", LicenceProduct.ESSENTIALS)
    )
    await services.users.update(
        admin, ent, ada.id, ada.version, UserChanges(number=RELEASE, licence=LicenceProduct.BASIC)
    )
    bob = await services.users.create(
        admin, ent, NewUser("Bob", "bob@contoso.com", LicenceProduct.ESSENTIALS)
    )
    assert bob.number == "+442079460001"
    # still in quarantine: there is no free number
    with pytest.raises(NoFreeNumberError):
        await services.users.create(
            admin, ent, NewUser("Cy", "cy@contoso.com", LicenceProduct.ESSENTIALS)
        )
    async with services.db.unit_of_work() as uow:
        await uow.session.execute(
            update(PhoneNumber)
            .values(quarantined_until=utcnow() - timedelta(seconds=1))
            .where(PhoneNumber.status == NumberStatus.QUARANTINED)
        )
        await uow.commit()
    cy = await services.users.create(
        admin, ent, NewUser("Cy", "cy@contoso.com", LicenceProduct.ESSENTIALS)
    )
    assert cy.number == "+442079460000"


async def test_housekeeping_sweeps_every_enterprise_and_prunes_the_ledger(
    services: Services,
) -> None:
    first = await seed_enterprise(
        services, tenant_id="t-one", numbers=("+442079460000", "+442079460000")
    )
    second = await seed_enterprise(
        services, tenant_id="t-two", numbers=("+442079460100", "+442079460100")
    )
    for ent, email in ((first, "a@one.example"), (second, "b@two.example")):
        user = await services.users.create(
            admin_of(ent), ent, NewUser("Someone", email, LicenceProduct.ESSENTIALS)
        )
        await services.users.update(
            admin_of(ent),
            ent,
            user.id,
            user.version,
            UserChanges(number=RELEASE, licence=LicenceProduct.BASIC),
        )
    await services.ledger.claim("old-activity")
    await services.ledger.claim("new-activity")
    async with services.db.unit_of_work() as uow:
        await uow.session.execute(
            update(PhoneNumber).values(quarantined_until=utcnow() - timedelta(seconds=1))
        )
        await uow.session.execute(
            update(ProcessedActivity)
            .where(ProcessedActivity.activity_key == "old-activity")
            .values(at=utcnow() - timedelta(days=3))
        )
        await uow.commit()
    stop = asyncio.Event()
    task = asyncio.create_task(keep_house(services, stop, interval=60))
    for _ in range(100):
        if await services.ledger.peek("old-activity") is None:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await task
    assert (await services.inventory.search_free(first)).total == 1
    assert (await services.inventory.search_free(second)).total == 1
    assert await services.ledger.peek("old-activity") is None
    assert await services.ledger.peek("new-activity") is not None


async def test_answers_given_together_commit_together_and_are_kept(services: Services) -> None:
    keys = [f"activity-{n}" for n in range(20)]
    for key in keys:
        await services.ledger.claim(key)
    commits: list[object] = []

    def count(connection: object) -> None:
        commits.append(connection)

    event.listen(services.db.write_engine.sync_engine, "commit", count)
    try:
        for key in keys:
            services.ledger.keep(key, {"card": key})
        # A redelivery in this process is answered before the answers are written.
        assert await services.ledger.peek(keys[-1]) == Claim(
            first=False, response={"card": keys[-1]}
        )
        await services.ledger.flush()
    finally:
        event.remove(services.db.write_engine.sync_engine, "commit", count)

    # All twenty were given before the writer's first turn: one transaction carries them all.
    assert len(commits) == 1
    from_the_database = ActivityLedger(services.db)
    for key in keys:
        claim = await from_the_database.peek(key)
        assert claim is not None and claim.response == {"card": key}


async def test_an_answer_that_cannot_be_written_is_logged_and_later_answers_are_kept(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    await services.ledger.claim("unwritable")
    await services.ledger.claim("plain")

    services.ledger.keep("unwritable", {"not json": {1, 2}})
    await services.ledger.flush()
    services.ledger.keep("plain", {"card": "plain"})
    await services.ledger.flush()

    assert "Could not keep the answers to these activities: unwritable" in caplog.text
    from_the_database = ActivityLedger(services.db)
    assert await from_the_database.peek("unwritable") == Claim(first=False, response=None)
    assert await from_the_database.peek("plain") == Claim(first=False, response={"card": "plain"})


async def test_an_answer_with_an_integer_beyond_64_bits_is_kept_exactly(
    services: Services,
) -> None:
    await services.ledger.claim("huge-page")
    services.ledger.keep("huge-page", {"page": 10**30})
    await services.ledger.flush()

    claim = await ActivityLedger(services.db).peek("huge-page")

    assert claim is not None and claim.response == {"page": 10**30}


async def test_a_hunt_groups_number_and_extension_are_never_given_to_a_user(
    services: Services,
) -> None:
    ent = await seed_enterprise(
        services, numbers=("+442079460000", "+442079460001"), extensions=(1000, 1001)
    )
    await services.hunt_groups.create(
        admin_of(ent), ent, "Sales", extension=1000, number="+442079460000"
    )
    with pytest.raises(ValidationError, match="is reserved and cannot be assigned now"):
        await services.hunt_groups.create(admin_of(ent), ent, "Desk", number="+442079460000")
    ada = await services.users.create(
        admin_of(ent), ent, NewUser("Ada", "ada@contoso.com", LicenceProduct.ESSENTIALS)
    )
    assert (ada.number, ada.extension) == ("+442079460001", 1001)
    with pytest.raises(NoFreeNumberError):
        await services.users.create(
            admin_of(ent), ent, NewUser("Bob", "bob@contoso.com", LicenceProduct.ESSENTIALS)
        )


# --- users -------------------------------------------------------------------------------------


async def test_create_essentials_user_gets_number_extension_outbox_and_audit(
    services: Services, vault
) -> None:
    ent = await seed_enterprise(services)
    admin = admin_of(ent)
    user = await services.users.create(
        admin,
        ent,
        NewUser(
            "  Ada   Lovelace ",
            "Ada@Contoso.com",
            LicenceProduct.ESSENTIALS,
            send_password_email=True,
        ),
    )
    assert user.display_name == "Ada Lovelace" and user.email == "ada@contoso.com"
    assert user.number == "+442079460000" and user.extension == 1000
    assert user.status is ProvisioningStatus.NOT_SYNCED
    assert user.caller_id.mode is CallerIdMode.OWN_DDI
    assert user.caller_id.presented_number == "+442079460000"
    [row] = await _rows(services, User)
    assert row.password_ciphertext and "Ada" not in row.password_ciphertext
    password = vault.open(row.password_ciphertext)
    assert password and len(password) >= 16 and password not in row.password_ciphertext
    [item] = await _rows(services, OutboxItem, OutboxItem.channel == "microsoft")
    assert (item.kind, item.user_id, item.channel) == ("user.create", user.id, "microsoft")
    audit = [a for a in await _rows(services, AuditEntry) if a.action == "user.create"]
    assert audit[0].actor.startswith("Ada Admin") and audit[0].after["number"] == user.number
    assert audit[0].after["send_password_email"] is True
    pools = {p.product: p for p in await services.licences.pools(ent)}
    assert pools[LicenceProduct.ESSENTIALS].used == 1


async def test_basic_user_has_extension_but_never_a_number(services: Services) -> None:
    ent = await seed_enterprise(services)
    admin = admin_of(ent)
    user = await services.users.create(
        admin, ent, NewUser("Bo", "bo@contoso.com", LicenceProduct.BASIC, extension=1050)
    )
    assert user.number is None and user.extension == 1050
    assert user.caller_id.presents_company_main
    with pytest.raises(ValidationError) as refused:
        await services.users.create(
            admin, ent, NewUser("Cy", "cy@contoso.com", LicenceProduct.BASIC, number=AUTO)
        )
    assert refused.value.field == "number"
    with pytest.raises(ValidationError):
        await services.users.update(admin, ent, user.id, user.version, UserChanges(number=AUTO))


@pytest.mark.parametrize(
    ("name", "email", "field"),
    [
        ("", "a@contoso.com", "display_name"),
        ("Ada", "", "email"),
        ("Ada", "not-an-email", "email"),
        ("Ada", "ada@contoso", "email"),
        ("Ada", "a b@contoso.com", "email"),
        ("x" * 300, "a@contoso.com", "display_name"),
    ],
)
async def test_create_refuses_bad_input_naming_the_field(
    services: Services, name: str, email: str, field: str
) -> None:
    ent = await seed_enterprise(services)
    with pytest.raises(ValidationError) as refused:
        await services.users.create(admin_of(ent), ent, NewUser(name, email))
    assert refused.value.field == field
    assert await _rows(services, User) == []


async def test_duplicate_email_is_refused_per_enterprise(services: Services) -> None:
    ent = await seed_enterprise(services)
    other = await seed_enterprise(
        services, tenant_id="t-other", numbers=("+442079470000", "+442079470009")
    )
    await services.users.create(admin_of(ent), ent, NewUser("Ada", "ada@contoso.com"))
    with pytest.raises(ConflictError) as refused:
        await services.users.create(admin_of(ent), ent, NewUser("Ada Two", "ADA@contoso.com"))
    assert refused.value.field == "email"
    # the same address in another enterprise is another person
    await services.users.create(admin_of(other), other, NewUser("Ada", "ada@contoso.com"))


async def test_failed_create_rolls_back_everything(services: Services) -> None:
    ent = await seed_enterprise(services, essentials=1)
    admin = admin_of(ent)
    await services.users.create(
        admin, ent, NewUser("Ada", "ada@contoso.com", LicenceProduct.ESSENTIALS)
    )
    with pytest.raises(NotEnoughSubscriptionsError) as refused:
        await services.users.create(
            admin, ent, NewUser("Bob", "bob@contoso.com", LicenceProduct.ESSENTIALS)
        )
    assert "Essentials" in refused.value.message and "1 of 1 in use" in refused.value.message
    assert [u.email for u in await _rows(services, User)] == ["ada@contoso.com"]
    assert (await services.inventory.search_free(ent)).total == 99
    with pytest.raises(ValidationError, match="outside"):
        await services.users.create(admin, ent, NewUser("Cy", "cy@contoso.com", extension=5000))
    with pytest.raises(ValidationError, match="already taken"):
        await services.users.create(admin, ent, NewUser("Cy", "cy@contoso.com", extension=1000))
    assert len(await _rows(services, User)) == 1


async def test_chosen_number_must_be_free_and_our_own(services: Services) -> None:
    ent = await seed_enterprise(services)
    other = await seed_enterprise(
        services, tenant_id="t-other", numbers=("+442079470000", "+442079470009")
    )
    admin = admin_of(ent)
    ada = await services.users.create(
        admin,
        ent,
        NewUser("Ada", "ada@contoso.com", LicenceProduct.ESSENTIALS, number="020 7946 0042"),
    )
    assert ada.number == "+442079460042"
    with pytest.raises(ValidationError, match="already assigned"):
        await services.users.create(
            admin,
            ent,
            NewUser("Bob", "bob@contoso.com", LicenceProduct.ESSENTIALS, number="+442079460042"),
        )
    with pytest.raises(ValidationError, match="not in this enterprise"):
        await services.users.create(
            admin,
            ent,
            NewUser("Bob", "bob@contoso.com", LicenceProduct.ESSENTIALS, number="+442079470001"),
        )
    with pytest.raises(ValidationError, match="not a phone number"):
        await services.users.create(
            admin,
            ent,
            NewUser("Bob", "bob@contoso.com", LicenceProduct.ESSENTIALS, number="call me"),
        )
    assert other


async def test_edit_every_field_and_stale_edits_are_refused(services: Services) -> None:
    ent = await seed_enterprise(services)
    admin = admin_of(ent)
    ada = await services.users.create(
        admin, ent, NewUser("Ada", "ada@contoso.com", LicenceProduct.ESSENTIALS)
    )
    edited = await services.users.update(
        admin,
        ent,
        ada.id,
        ada.version,
        UserChanges(
            display_name="Ada King",
            email="ada.king@contoso.com",
            number="+442079460050",
            extension=1077,
            notify_user=True,
        ),
    )
    assert (edited.display_name, edited.email, edited.number, edited.extension) == (
        "Ada King",
        "ada.king@contoso.com",
        "+442079460050",
        1077,
    )
    assert edited.version > ada.version
    # the old number went to quarantine, the old extension is free again
    numbers = await number_statuses(services.db, ent)
    assert numbers["+442079460000"] is NumberStatus.QUARANTINED
    # an admin who opened the old version cannot overwrite the newer one
    with pytest.raises(ConflictError) as stale:
        await services.users.update(
            admin, ent, ada.id, ada.version, UserChanges(display_name="Old")
        )
    assert "Someone else saved" in stale.value.message
    assert (await services.users.get(ent, ada.id)).display_name == "Ada King"
    outbox = await _rows(services, OutboxItem, OutboxItem.channel == "microsoft")
    assert [o.kind for o in outbox] == ["user.create", "user.update"]
    assert "number" in outbox[1].payload["fields"]


async def test_users_of_another_enterprise_are_invisible(services: Services) -> None:
    ent = await seed_enterprise(services)
    other = await seed_enterprise(
        services, tenant_id="t-other", numbers=("+442079470000", "+442079470009")
    )
    ada = await services.users.create(admin_of(ent), ent, NewUser("Ada", "ada@contoso.com"))
    with pytest.raises(NotFoundError):
        await services.users.get(other, ada.id)
    with pytest.raises(NotFoundError):
        await services.users.update(
            admin_of(other), other, ada.id, ada.version, UserChanges(display_name="x")
        )
    assert (await services.directory.page(other)).total == 0


async def test_licence_change_moves_between_pools(services: Services) -> None:
    ent = await seed_enterprise(services)
    admin = admin_of(ent)
    ada = await services.users.create(
        admin, ent, NewUser("Ada", "ada@contoso.com", LicenceProduct.ESSENTIALS)
    )
    basic = await services.users.update(
        admin, ent, ada.id, ada.version, UserChanges(licence=LicenceProduct.BASIC)
    )
    assert basic.number is None and basic.extension == ada.extension
    assert basic.caller_id.mode is CallerIdMode.COMPANY_MAIN
    pools = {p.product: p for p in await services.licences.pools(ent)}
    assert (pools[LicenceProduct.ESSENTIALS].used, pools[LicenceProduct.BASIC].used) == (0, 1)
    with pytest.raises(ValidationError, match="cannot shrink"):
        await services.licences.set_pool(PROVIDER, ent, LicenceProduct.BASIC, 0)


async def test_enable_many_is_all_or_nothing(services: Services) -> None:
    ent = await seed_enterprise(services, essentials=2)
    admin = admin_of(ent)
    people = [
        await services.users.create(admin, ent, NewUser(f"U{i}", f"u{i}@contoso.com"))
        for i in range(3)
    ]
    unlicensed = (await services.directory.page(ent, unlicensed_only=True)).items
    assert [u.email for u in unlicensed] == ["u0@contoso.com", "u1@contoso.com", "u2@contoso.com"]
    with pytest.raises(BulkRefusedError) as refused:
        await services.users.enable(admin, ent, [u.id for u in people], LicenceProduct.ESSENTIALS)
    assert "2 free, 3 needed" in refused.value.message
    assert set(refused.value.reasons) == {u.id for u in people}
    assert len((await services.directory.page(ent, unlicensed_only=True)).items) == 3
    enabled = await services.users.enable(
        admin, ent, [people[0].id, people[1].id], LicenceProduct.ESSENTIALS
    )
    assert [u.number for u in enabled] == ["+442079460000", "+442079460001"]
    assert all(u.extension for u in enabled)
    with pytest.raises(BulkRefusedError) as again:
        await services.users.enable(
            admin, ent, [people[0].id, people[2].id, 99999], LicenceProduct.BASIC
        )
    assert again.value.reasons[people[0].id].startswith("already has")
    assert again.value.reasons[99999] == "not a user of this enterprise"
    assert len((await services.directory.page(ent, unlicensed_only=True)).items) == 1


async def test_directory_sort_search_and_paging(services: Services) -> None:
    ent = await seed_enterprise(services)
    admin = admin_of(ent)
    await services.users.create(
        admin,
        ent,
        NewUser(
            "Zoe",
            "zoe@contoso.com",
            LicenceProduct.ESSENTIALS,
            number="+442079460090",
            extension=1001,
        ),
    )
    await services.users.create(
        admin,
        ent,
        NewUser(
            "adam",
            "adam@contoso.com",
            LicenceProduct.ESSENTIALS,
            number="+442079460010",
            extension=1099,
        ),
    )
    await services.users.create(
        admin, ent, NewUser("Mia", "mia@contoso.com", LicenceProduct.BASIC, extension=1050)
    )
    by_name = await services.directory.page(ent)
    assert [u.display_name for u in by_name.items] == ["adam", "Mia", "Zoe"]
    by_ext = await services.directory.page(ent, sort=DirectorySort.EXTENSION, descending=True)
    assert [u.extension for u in by_ext.items] == [1099, 1050, 1001]
    by_number = await services.directory.page(ent, sort=DirectorySort.NUMBER)
    assert [u.number for u in by_number.items][:2] == ["+442079460010", "+442079460090"]
    paged = await services.directory.page(ent, page=2, page_size=2)
    assert (paged.total, paged.pages, [u.display_name for u in paged.items]) == (3, 2, ["Zoe"])
    assert [u.display_name for u in (await services.directory.page(ent, search="MIA")).items] == [
        "Mia"
    ]
    assert [u.display_name for u in (await services.directory.search(ent, "0090"))] == ["Zoe"]
    assert [u.display_name for u in (await services.directory.search(ent, "1050"))] == ["Mia"]
    assert (await services.directory.page(ent, search="%")).total == 0
    # typed wildcards match only themselves
    assert (await services.directory.page(ent, search="zo_")).total == 0
    assert (await services.directory.page(ent, search="m/a")).total == 0
    assert (await services.directory.page(ent, search="zo")).total == 1


async def test_remove_user_returns_everything_to_the_pools(services: Services) -> None:
    ent = await seed_enterprise(services)
    admin = admin_of(ent)
    ada = await services.users.create(
        admin, ent, NewUser("Ada", "ada@contoso.com", LicenceProduct.ESSENTIALS)
    )
    await services.users.remove(admin, ent, ada.id, ada.version)
    assert (await services.directory.page(ent)).total == 0
    pools = {p.product: p for p in await services.licences.pools(ent)}
    assert pools[LicenceProduct.ESSENTIALS].used == 0
    kinds = [o.kind for o in await _rows(services, OutboxItem)]
    assert kinds[-1] == "user.remove"
    again = await services.users.create(
        admin, ent, NewUser("Bob", "bob@contoso.com", LicenceProduct.ESSENTIALS)
    )
    assert again.extension == ada.extension  # extensions are free at once
    assert again.number != ada.number  # numbers sit in quarantine first


# --- caller ID ---------------------------------------------------------------------------------


async def test_caller_id_modes_by_last_digits(services: Services) -> None:
    ent = await seed_enterprise(services, numbers=("+442079460000", "+442079460099"))
    admin = admin_of(ent)
    ada = await services.users.create(
        admin, ent, NewUser("Ada", "ada@contoso.com", LicenceProduct.ESSENTIALS)
    )
    other = await services.users.set_caller_id(
        admin,
        ent,
        ada.id,
        ada.version,
        CallerIdChange(
            CallerIdMode.OTHER, number_digits="0042", caller_name="Contoso Sales", send_pai=True
        ),
    )
    assert other.caller_id.presented_number == "+442079460042"
    assert other.caller_id.caller_name == "Contoso Sales"
    assert other.caller_id.pai_number == "+442079460042"
    main = await services.users.set_caller_id(
        admin, ent, ada.id, other.version, CallerIdChange(CallerIdMode.COMPANY_MAIN)
    )
    assert (
        main.caller_id.presents_company_main and main.caller_id.presented_number == "+442079461000"
    )
    anonymous = await services.users.set_caller_id(
        admin,
        ent,
        ada.id,
        main.version,
        CallerIdChange(CallerIdMode.ANONYMOUS, send_pai=True, pai_digits="0000"),
    )
    assert anonymous.caller_id.presented_number is None
    assert anonymous.caller_id.pai_number == "+442079460000"
    with pytest.raises(ConflictError):
        await services.users.set_caller_id(
            admin, ent, ada.id, main.version, CallerIdChange(CallerIdMode.OWN_DDI)
        )


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            CallerIdChange(CallerIdMode.OTHER, number_digits="7777"),
            "number",
            "No number of this enterprise",
        ),
        (
            CallerIdChange(CallerIdMode.OTHER, number_digits="4"),
            "number",
            "Several numbers end in 4",
        ),
        (
            CallerIdChange(CallerIdMode.OTHER, number_digits="xyz"),
            "number",
            "Type one or more digits",
        ),
        (
            CallerIdChange(CallerIdMode.OTHER, number_digits="0001"),
            "number",
            "No number of this enterprise",
        ),
        (
            CallerIdChange(CallerIdMode.OWN_DDI, caller_name='Evil" <sip:x>'),
            "caller_name",
            "cannot contain",
        ),
        (CallerIdChange(CallerIdMode.OWN_DDI, caller_name="x" * 60), "caller_name", "at most 50"),
    ],
)
async def test_caller_id_refusals(
    services: Services, change: CallerIdChange, field: str, message: str
) -> None:
    ent = await seed_enterprise(services, numbers=("+442079460010", "+442079460099"))
    await seed_enterprise(services, tenant_id="t-other", numbers=("+442079470000", "+442079470001"))
    admin = admin_of(ent)
    ada = await services.users.create(
        admin, ent, NewUser("Ada", "ada@contoso.com", LicenceProduct.ESSENTIALS)
    )
    with pytest.raises(ValidationError) as refused:
        await services.users.set_caller_id(admin, ent, ada.id, ada.version, change)
    assert refused.value.field == field and message in refused.value.message
    assert (await services.users.get(ent, ada.id)).caller_id.mode is CallerIdMode.OWN_DDI


async def test_own_ddi_needs_a_number(services: Services) -> None:
    ent = await seed_enterprise(services)
    bo = await services.users.create(
        admin_of(ent), ent, NewUser("Bo", "bo@contoso.com", LicenceProduct.BASIC)
    )
    with pytest.raises(ValidationError, match="no direct number"):
        await services.users.set_caller_id(
            admin_of(ent), ent, bo.id, bo.version, CallerIdChange(CallerIdMode.OWN_DDI)
        )


# --- admins and sync requests ------------------------------------------------------------------


async def test_identify_admins_by_tenant_and_object_id(services: Services) -> None:
    ent = await seed_enterprise(services, tenant_id="t-one")
    await seed_enterprise(services, tenant_id="t-two", numbers=("+442079470000", "+442079470009"))
    await services.enterprises.grant(
        PROVIDER, aad_object_id="AAD-1", role=AdminRole.GLOBAL_ADMIN, enterprise_id=ent
    )
    await services.enterprises.grant(
        PROVIDER, aad_object_id="sp-1", role=AdminRole.SERVICE_PROVIDER, enterprise_id=None
    )
    ga = await services.enterprises.identify("T-ONE", "aad-1")
    assert ga and ga.role is AdminRole.GLOBAL_ADMIN and ga.enterprise_id == ent
    assert await services.enterprises.identify("t-two", "aad-1") is None
    provider = await services.enterprises.identify("any-tenant", "sp-1")
    assert (
        provider and provider.role is AdminRole.SERVICE_PROVIDER and provider.enterprise_id is None
    )
    assert await services.enterprises.identify("t-one", "") is None
    with pytest.raises(ValidationError):
        await services.enterprises.grant(
            PROVIDER, aad_object_id="x", role=AdminRole.ENTERPRISE_ADMIN, enterprise_id=None
        )


async def test_only_the_global_admin_starts_a_sync_and_only_once(services: Services) -> None:
    ent = await seed_enterprise(services)
    admin = admin_of(ent)
    await services.users.create(
        admin, ent, NewUser("Ada", "ada@contoso.com", LicenceProduct.ESSENTIALS)
    )
    overview = await services.syncs.overview(ent)
    assert overview.manual_sync_needed and overview.waiting_changes == 1
    assert overview.counts[ProvisioningStatus.NOT_SYNCED] == 1
    with pytest.raises(PermissionDeniedError):
        await services.syncs.request(admin, ent)
    with pytest.raises(PermissionDeniedError):
        await services.syncs.request(PROVIDER, ent)
    global_admin = admin_of(ent, AdminRole.GLOBAL_ADMIN)
    run, started = await services.syncs.request(global_admin, ent)
    assert started and run.is_first and run.status is SyncStatus.REQUESTED
    assert run.expected_by - run.requested_at == timedelta(hours=24)
    again, started_again = await services.syncs.request(global_admin, ent)
    assert again.id == run.id and not started_again
    after = await services.syncs.overview(ent)
    assert after.open_run and after.open_run.id == run.id
    assert after.counts[ProvisioningStatus.PENDING] == 1 and after.waiting_changes == 0
    other = await seed_enterprise(
        services, tenant_id="t-other", numbers=("+442079470000", "+442079470009")
    )
    with pytest.raises(PermissionDeniedError):
        await services.syncs.request(global_admin, other)


async def test_consenting_enterprise_after_first_sync_syncs_automatically(
    services: Services,
) -> None:
    ent = await seed_enterprise(services, consent=True)
    async with services.db.unit_of_work() as uow:
        from services.models import Enterprise

        enterprise = await uow.session.get(Enterprise, ent)
        assert enterprise is not None
        enterprise.first_sync_completed_at = utcnow()
        await uow.commit()
    ada = await services.users.create(admin_of(ent), ent, NewUser("Ada", "ada@contoso.com"))
    assert ada.status is ProvisioningStatus.PENDING
    overview = await services.syncs.overview(ent)
    assert overview.enterprise.syncs_automatically and not overview.manual_sync_needed


async def test_audit_never_holds_secrets(services: Services) -> None:
    ent = await seed_enterprise(services)
    await services.users.create(
        admin_of(ent), ent, NewUser("Ada", "ada@contoso.com", send_password_email=True)
    )
    [user] = await _rows(services, User)
    for entry in await _rows(services, AuditEntry):
        for values in (entry.before or {}, entry.after or {}):
            assert user.password_ciphertext not in str(values)
            assert not any(
                "password" in k and v not in ("***", True, False) for k, v in values.items()
            )

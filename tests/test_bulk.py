"""Bulk import and export: preview, every row-level rule, stale previews, apply with the
single-user services, results. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from sqlalchemy import func, select

from services.bulk.models import BulkImport
from services.bulk.service import (
    AlreadyAppliedError,
    Bulk,
    StalePreviewError,
    preview_csv,
    read_result,
    template,
)
from services.bulk.sheet import Column
from services.bulk.values import ImportProgress, RowAction
from services.callerid import CallerIdChange
from services.container import Services
from services.domain import CallerIdMode, LicenceProduct, NumberStatus
from services.errors import ValidationError
from services.inventory import AUTO
from services.models import AuditEntry, OutboxItem, PhoneNumber
from services.users import NewUser, UserChanges, Users
from services.views import UserView
from tests.bulk_kit import HEADER, directory_facts, reasons_by_line, sheet
from tests.conftest import PROVIDER, admin_of, seed_enterprise

FULL = [c.header for c in Column]


@pytest.fixture
async def ent(services: Services) -> int:
    return await seed_enterprise(services)


@pytest.fixture
def bulk(services: Services) -> Bulk:
    return Bulk.of(services, batch_size=7)


async def _user(services: Services, ent: int, email: str) -> UserView:
    page = await services.directory.page(ent, search=email)
    [user] = [u for u in page.items if u.email == email]
    return user


async def test_template_and_export_share_columns_and_an_export_reimports_unchanged(
    services: Services, ent: int, bulk: Bulk
) -> None:
    sales = await services.hunt_groups.create(PROVIDER, ent, "Sales")
    support = await services.hunt_groups.create(PROVIDER, ent, "Support, North")
    ada = await services.users.create(
        PROVIDER,
        ent,
        NewUser("Ada Lovelace", "ada@contoso.example", LicenceProduct.ESSENTIALS, AUTO, AUTO),
    )
    await services.users.create(
        PROVIDER, ent, NewUser("Bob Basic", "bob@contoso.example", LicenceProduct.BASIC)
    )
    await services.users.create(PROVIDER, ent, NewUser("Cy Nolicence", "cy@contoso.example"))
    ada = await services.users.set_caller_id(
        PROVIDER,
        ent,
        ada.id,
        ada.version,
        CallerIdChange(CallerIdMode.OTHER, "0050", "Ada L", True, "0051"),
    )
    await services.hunt_groups.set_user_groups(PROVIDER, ent, ada.id, [sales.id, support.id])

    exported = await bulk.export(ent)
    assert exported.startswith(b"\xef\xbb\xbf")
    rows = read_result(exported)
    assert list(rows[0]) == FULL
    assert read_result(template()) == []
    assert template().decode("utf-8-sig").splitlines() == [",".join(FULL)]
    by_email = {r["E-mail"]: r for r in rows}
    assert by_email["ada@contoso.example"] == {
        "Name": "Ada Lovelace",
        "E-mail": "ada@contoso.example",
        "Licence": "Essentials",
        "Number": "+44 20 7946 0000",
        "Extension": "1000",
        "Caller ID": "Another company number",
        "Caller ID number": "+44 20 7946 0050",
        "Caller name": "Ada L",
        "PAI": "Yes",
        "PAI number": "+44 20 7946 0051",
        "Hunt groups": "Sales; Support, North",
        "Action": "",
    }
    assert by_email["bob@contoso.example"]["Licence"] == "Basic"
    assert by_email["bob@contoso.example"]["Number"] == ""
    assert by_email["cy@contoso.example"]["Licence"] == ""

    preview = await bulk.preview(ent, exported)
    assert preview.summary() == "0 to create, 0 to update, 0 to remove, 3 unchanged, 0 rejected"


async def test_preview_counts_creates_updates_removals_and_unchanged(
    services: Services, ent: int, bulk: Bulk
) -> None:
    for name in ("Ann", "Ben", "Cat"):
        await services.users.create(
            PROVIDER, ent, NewUser(name, f"{name.lower()}@contoso.example", LicenceProduct.BASIC)
        )
    header = [*HEADER, "Action"]
    data = sheet(
        [
            ["Ann", "ann@contoso.example", "Basic", "", ""],
            ["Benjamin", "ben@contoso.example", "Basic", "", "", ""],
            ["Cat", "cat@contoso.example", "", "", "", "remove"],
            ["Dan", "dan@contoso.example", "Essentials", "", "", ""],
            ["Eve", "not-an-email", "Essentials", "", "", ""],
        ],
        header,
    )
    preview = await bulk.preview(ent, data)
    assert preview.summary() == "1 to create, 1 to update, 1 to remove, 1 unchanged, 1 rejected"
    lines = {row.line: row for row in preview.rows}
    assert lines[3].changes == ("name Ben → Benjamin",)
    assert lines[5].changes[0] == "Essentials"
    assert "not an e-mail address" in lines[6].reason
    assert read_result(preview_csv(preview))[3]["Action"] == "create"


async def test_every_row_level_rule_is_a_reason_in_the_admins_words(
    services: Services, ent: int, bulk: Bulk
) -> None:
    holder = await services.users.create(
        PROVIDER,
        ent,
        NewUser(
            "Holder", "holder@contoso.example", LicenceProduct.ESSENTIALS, "+442079460010", 1010
        ),
    )
    assert holder.number == "+442079460010"
    await services.hunt_groups.create(PROVIDER, ent, "Sales", extension=1020, number="02079460020")
    header = [
        "Name", "E-mail", "Licence", "Number", "Extension", "Caller ID",
        "Caller ID number", "Caller name", "Hunt groups", "Action",
    ]  # fmt: skip
    rows = [
        ["Dup A", "dupa@contoso.example", "Essentials", "020 7946 0030", "", "", "", "", "", ""],
        ["Dup B", "dupb@contoso.example", "Essentials", "+44 20 7946 0030", "", "", "", "", "", ""],
        ["Far", "far@contoso.example", "Essentials", "+44 20 7946 5555", "", "", "", "", "", ""],
        ["Taken", "taken@contoso.example", "Essentials", "+442079460010", "", "", "", "", "", ""],
        ["Group", "grp@contoso.example", "Essentials", "+442079460020", "", "", "", "", "", ""],
        ["Range", "range@contoso.example", "Basic", "", "5000", "", "", "", "", ""],
        ["Ext", "ext@contoso.example", "Basic", "", "1010", "", "", "", "", ""],
        ["Basic", "basic@contoso.example", "Basic", "+442079460031", "", "", "", "", "", ""],
        ["", "noname@contoso.example", "Basic", "", "", "", "", "", "", ""],
        ["Gold", "gold@contoso.example", "Gold", "", "", "", "", "", "", ""],
        ["Sci", "sci@contoso.example", "Essentials", "4.42079E+11", "", "", "", "", "", ""],
        ["Bad", "bad@contoso.example", "Essentials", "12", "", "", "", "", "", ""],
        ["Hg", "hg@contoso.example", "Basic", "", "", "", "", "", "Marketing", ""],
        ["Nolic", "nolic@contoso.example", "", "", "", "", "", "", "Sales", ""],
        ["Gone", "gone@contoso.example", "", "", "", "", "", "", "", "remove"],
        ["Other", "other@contoso.example", "Essentials", "", "", "Another company number",
         "", "", "", ""],
        ["Foreign", "foreign@contoso.example", "Essentials", "", "", "Another company number",
         "9999", "", "", ""],
        ["Own", "own@contoso.example", "Basic", "", "", "Own number", "", "", "", ""],
        ["Quote", "quote@contoso.example", "Basic", "", "", "", "", 'Ada "the" L', "", ""],
        ["Act", "act@contoso.example", "Basic", "", "", "", "", "", "", "archive"],
        ["Twice", "twice@contoso.example", "Basic", "", "1040", "", "", "", "", ""],
        ["Twice2", "TWICE@contoso.example", "Basic", "", "1040", "", "", "", "", ""],
        ["Mode", "mode@contoso.example", "Basic", "", "", "Loud", "", "", "", ""],
    ]  # fmt: skip
    reasons = await reasons_by_line(bulk, ent, sheet(rows, header))
    expected = {
        2: "The number +44 20 7946 0030 is also on line 3",
        3: "The number +44 20 7946 0030 is also on line 2",
        4: "+44 20 7946 5555 is not in this enterprise's inventory.",
        5: "+44 20 7946 0010 is already assigned to holder@contoso.example; pick a free number.",
        6: "+44 20 7946 0020 rings the hunt group Sales",
        7: "Extension 5000 is outside this enterprise's range 1000–1099.",
        8: "Extension 1010 is already taken by holder@contoso.example",
        9: "Basic licences have no direct number",
        10: "Enter the user's display name.",
        11: "“Gold” is not a licence",
        12: "Excel turned the number into “4.42079E+11”",
        13: "is not a",
        14: "No hunt group is called “Marketing”",
        15: "Nolic has no calling licence, so the PBX cannot ring them",
        16: "No user has the e-mail gone@contoso.example, so there is nobody to remove.",
        17: "Another company number needs the Caller ID number",
        18: "No number of this enterprise ends in 9999.",
        19: "Own has no direct number of their own",
        20: "The caller name cannot contain quotes",
        21: "“archive” is not an action",
        22: "The e-mail twice@contoso.example is also on line 23",
        23: "The extension 1040 is also on line 22",
        24: "“Loud” is not a caller ID",
    }
    for line, text in expected.items():
        assert text in reasons.get(line, ""), (line, reasons.get(line))
    assert set(reasons) == set(expected)


async def test_numbers_in_national_international_and_00_forms(
    services: Services, ent: int, bulk: Bulk
) -> None:
    data = sheet(
        [
            ["A", "a@contoso.example", "Essentials", "020 7946 0001", ""],
            ["B", "b@contoso.example", "essentials", "+44 20 7946 0002", ""],
            ["C", "c@contoso.example", "ESSENTIALS", "00 44 20 7946 0003", ""],
            ["D", "d@contoso.example", "Essentials", "(020) 7946-0004", ""],
        ]
    )
    preview = await bulk.preview(ent, data)
    assert [r.plan["number"] for r in preview.rows] == [
        "+442079460001",
        "+442079460002",
        "+442079460003",
        "+442079460004",
    ]
    await bulk.apply(PROVIDER, ent, data, preview.token)
    assert (await _user(services, ent, "c@contoso.example")).number == "+442079460003"


async def test_not_enough_subscriptions_for_the_whole_file_says_needed_and_free(
    services: Services, ent: int, bulk: Bulk
) -> None:
    await services.licences.set_pool(PROVIDER, ent, LicenceProduct.ESSENTIALS, 3)
    await services.users.create(
        PROVIDER, ent, NewUser("Old", "old@contoso.example", LicenceProduct.ESSENTIALS)
    )
    rows = [[f"N{i}", f"n{i}@contoso.example", "Essentials", "", ""] for i in range(3)]
    rows.append(["Basic one", "b1@contoso.example", "Basic", "", ""])
    reasons = await reasons_by_line(bulk, ent, sheet(rows))
    assert sorted(reasons) == [2, 3, 4]
    assert reasons[2].startswith(
        "Not enough subscriptions in the Essentials pool for this file: 3 needed, 2 free "
        "(1 of 3 in use)."
    )
    # A row giving a licence back makes room for one more.
    rows.append(["Old", "old@contoso.example", "Basic", "", ""])
    reasons = await reasons_by_line(bulk, ent, sheet(rows))
    assert reasons == {}


async def test_not_enough_free_numbers_or_extensions(services: Services, bulk: Bulk) -> None:
    ent = await seed_enterprise(
        services, numbers=("+442079460000", "+442079460001"), extensions=(1000, 1002)
    )
    rows = [["Named", "named@contoso.example", "Essentials", "+442079460001", ""]]
    rows += [[f"A{i}", f"a{i}@contoso.example", "Essentials", "", ""] for i in range(2)]
    rows += [[f"B{i}", f"b{i}@contoso.example", "Basic", "", ""] for i in range(2)]
    reasons = await reasons_by_line(bulk, ent, sheet(rows))
    assert (
        "Not enough free numbers for this file: 2 rows leave the number to Switchboard "
        in (reasons[3])
    )
    assert "and 1 free number is left besides those the file names" in reasons[3]
    assert set(reasons) == {2, 3, 4, 5, 6}
    assert reasons[5].startswith(
        "Not enough free extensions for this file: 5 rows leave the extension to Switchboard "
        "and 3 are free."
    )


async def test_unknown_email_domain_is_refused_per_row(
    services: Services, ent: int, bulk: Bulk
) -> None:
    checked: list[str] = []

    async def verified_domains(tenant_id: str, email: str) -> None:
        checked.append(email)
        if not email.endswith("@contoso.example"):
            raise ValidationError(f"{email.split('@')[1]} is not a verified domain of the tenant.")

    # The check is handed to the users' constructor, as the composition root does with Graph's.
    verifying = replace(
        services,
        users=Users(
            services.db,
            services.vault,
            services.settings.quarantine_days,
            email_domain_check=verified_domains,
        ),
    )
    bulk = Bulk.of(verifying, batch_size=7)
    data = sheet(
        [
            ["A", "a@contoso.example", "Basic", "", ""],
            ["B", "b@fabrikam.example", "Basic", "", ""],
            ["C", "c@fabrikam.example", "Basic", "", ""],
        ]
    )
    reasons = await reasons_by_line(bulk, ent, data)
    assert reasons == {
        3: "fabrikam.example is not a verified domain of the tenant.",
        4: "fabrikam.example is not a verified domain of the tenant.",
    }
    assert len(checked) == 2  # once per domain


async def test_a_stale_preview_is_refused_and_nothing_is_written(
    services: Services, ent: int, bulk: Bulk
) -> None:
    ann = await services.users.create(
        PROVIDER, ent, NewUser("Ann", "ann@contoso.example", LicenceProduct.BASIC)
    )
    data = sheet(
        [
            ["Ann Smith", "ann@contoso.example", "Basic", "", ""],
            ["Dan", "dan@contoso.example", "Essentials", "", ""],
        ]
    )
    preview = await bulk.preview(ent, data)
    await services.users.update(PROVIDER, ent, ann.id, ann.version, UserChanges(display_name="A"))
    with pytest.raises(StalePreviewError, match="changed after this preview"):
        await bulk.apply(PROVIDER, ent, data, preview.token)
    edited = sheet([["Ann Smith", "ann@contoso.example", "Basic", "", ""]])
    fresh = await bulk.preview(ent, data)
    with pytest.raises(StalePreviewError):
        await bulk.apply(PROVIDER, ent, edited, fresh.token)  # another file than previewed
    async with services.db.unit_of_work(readonly=True) as uow:
        assert (await uow.session.execute(select(func.count(BulkImport.id)))).scalar_one() == 0
    assert (await _user(services, ent, "ann@contoso.example")).display_name == "A"
    assert (await services.directory.page(ent)).total == 1
    # The preview of now applies.
    progress = await bulk.apply(PROVIDER, ent, data, fresh.token)
    assert (progress.applied, progress.failed) == (2, 0)


async def test_apply_goes_through_the_single_user_rules_with_audit_and_outbox(
    services: Services, ent: int, bulk: Bulk
) -> None:
    sales = await services.hunt_groups.create(PROVIDER, ent, "Sales")
    bob = await services.users.create(
        PROVIDER, ent, NewUser("Bob", "bob@contoso.example", LicenceProduct.BASIC)
    )
    gone = await services.users.create(
        PROVIDER, ent, NewUser("Gone", "gone@contoso.example", LicenceProduct.ESSENTIALS)
    )
    header = [*HEADER, "Caller ID", "Caller ID number", "PAI", "Hunt groups", "Action"]
    rows = [
        ["Ada", "ada@contoso.example", "Essentials", "+44 20 7946 0040", "1040",
         "Another company number", "0041", "yes", "sales", ""],
        ["Bob", "bob@contoso.example", "Essentials", "", "", "", "", "", "Sales", ""],
        ["Gone", "gone@contoso.example", "", "", "", "", "", "", "", "remove"],
        ["Cy", "cy@contoso.example", "", "", "", "Anonymous", "", "", "", ""],
    ]  # fmt: skip
    data = sheet(rows, header)
    preview = await bulk.preview(ent, data)
    assert preview.summary() == "2 to create, 1 to update, 1 to remove, 0 unchanged, 0 rejected"
    actor = admin_of(ent)
    progress = await bulk.apply(actor, ent, data, preview.token, "people.csv")
    assert (progress.applied, progress.failed, progress.pending) == (4, 0, 0)
    assert progress.finished

    ada = await _user(services, ent, "ada@contoso.example")
    assert (ada.number, ada.extension) == ("+442079460040", 1040)
    assert ada.caller_id.presented_number == "+442079460041"
    assert ada.caller_id.send_pai
    bob_now = await _user(services, ent, "bob@contoso.example")
    assert bob_now.licence is LicenceProduct.ESSENTIALS
    assert bob_now.number is not None and bob_now.extension == bob.extension
    cy = await _user(services, ent, "cy@contoso.example")
    assert cy.caller_id.mode is CallerIdMode.ANONYMOUS
    assert {m.display_name for m in await services.hunt_groups.members(ent, sales.id)} == {
        "Ada",
        "Bob",
    }
    pools = {p.product: p for p in await services.licences.pools(ent)}
    assert pools[LicenceProduct.ESSENTIALS].used == 2  # Ada, Bob; Gone's came back
    assert pools[LicenceProduct.BASIC].used == 0
    async with services.db.unit_of_work(readonly=True) as uow:
        rested = (
            await uow.session.execute(
                select(PhoneNumber.status).where(PhoneNumber.e164 == gone.number)
            )
        ).scalar_one()
    assert rested is NumberStatus.QUARANTINED
    async with services.db.unit_of_work(readonly=True) as uow:
        audits = (
            await uow.session.execute(
                select(AuditEntry.action, AuditEntry.target, AuditEntry.actor).where(
                    AuditEntry.enterprise_id == ent, AuditEntry.actor == actor.label
                )
            )
        ).all()
        kinds = (
            await uow.session.execute(
                select(OutboxItem.kind, OutboxItem.channel).where(OutboxItem.enterprise_id == ent)
            )
        ).all()
    assert {(a, t) for a, t, _ in audits} == {
        ("user.create", "ada@contoso.example"),
        ("user.caller_id", "ada@contoso.example"),
        ("user.hunt_groups", "ada@contoso.example"),
        ("user.update", "bob@contoso.example"),
        ("user.hunt_groups", "bob@contoso.example"),
        ("user.remove", "gone@contoso.example"),
        ("user.create", "cy@contoso.example"),
        ("user.caller_id", "cy@contoso.example"),
    }
    assert ("user.remove", "microsoft") in kinds and ("user.create", "pbx") in kinds
    result = {r["E-mail"]: r for r in read_result(await bulk.result_csv(progress.import_id))}
    assert result["ada@contoso.example"]["Result"] == "applied"
    assert result["ada@contoso.example"]["Number"] == "+44 20 7946 0040"
    assert result["gone@contoso.example"]["Action"] == "remove"


async def test_a_failed_row_does_not_undo_the_others(
    services: Services, ent: int, bulk: Bulk
) -> None:
    rows = [[f"U{i}", f"u{i}@contoso.example", "Essentials", f"+4420794600{50 + i}", ""]
            for i in range(10)]  # fmt: skip
    data = sheet(rows)
    preview = await bulk.preview(ent, data)
    import_id = await bulk.start(PROVIDER, ent, data, preview.token)
    # Between the preview and the apply, someone takes the number line 6 wants.
    await services.users.create(
        PROVIDER, ent, NewUser("Quick", "quick@contoso.example", number="+442079460054")
    )
    progress = await bulk.run(import_id)
    assert (progress.applied, progress.failed) == (9, 1)
    result = {r["Line"]: r for r in read_result(await bulk.result_csv(import_id))}
    assert result["6"]["Result"] == "failed"
    # The single-user form's own refusal, as claim_number words it.
    assert result["6"]["Reason"].endswith("0054 is already assigned; pick a free number.")
    assert result["7"]["Result"] == "applied"
    facts = await directory_facts(services.db, ent)
    assert "u4@contoso.example" not in facts.emails
    pools = {p.product: p for p in await services.licences.pools(ent)}
    assert pools[LicenceProduct.ESSENTIALS].used == 9


async def test_a_user_edited_after_the_apply_started_fails_that_row_only(
    services: Services, ent: int, bulk: Bulk
) -> None:
    ann = await services.users.create(
        PROVIDER, ent, NewUser("Ann", "ann@contoso.example", LicenceProduct.BASIC)
    )
    data = sheet(
        [
            ["Ann B", "ann@contoso.example", "Basic", "", ""],
            ["Dan", "dan@contoso.example", "Basic", "", ""],
        ]
    )
    import_id = await bulk.start(PROVIDER, ent, data, (await bulk.preview(ent, data)).token)
    await services.users.update(PROVIDER, ent, ann.id, ann.version, UserChanges(display_name="X"))
    progress = await bulk.run(import_id)
    assert (progress.applied, progress.failed) == (1, 1)
    [failed] = [r for r in read_result(await bulk.result_csv(import_id)) if r["Result"] == "failed"]
    assert failed["Reason"].startswith("Someone changed this user after the preview")


async def test_two_runs_of_one_import_apply_each_row_once(
    services: Services, ent: int, bulk: Bulk
) -> None:
    rows = [[f"P{i}", f"p{i}@contoso.example", "Essentials" if i % 2 else "Basic", "", ""]
            for i in range(40)]  # fmt: skip
    data = sheet(rows)
    import_id = await bulk.start(PROVIDER, ent, data, (await bulk.preview(ent, data)).token)
    first, second = await asyncio.gather(bulk.run(import_id), bulk.run(import_id))
    assert first.applied == second.applied == 40 and first.failed == 0
    again = await bulk.run(import_id)
    assert again.applied == 40 and again.finished
    facts = await directory_facts(services.db, ent)
    assert sorted(facts.emails) == sorted(f"p{i}@contoso.example" for i in range(40))
    assert set(facts.creates.values()) == {1}
    assert set(facts.outbox.values()) == {2}  # Microsoft, PBX
    assert len(facts.numbers) == len(set(facts.numbers)) == 20
    assert len(facts.extensions) == len(set(facts.extensions)) == 40
    assert await bulk.unfinished(ent) == []


async def test_removals_and_releases_go_first_so_the_file_fits(
    services: Services, bulk: Bulk
) -> None:
    ent = await seed_enterprise(services, extensions=(1000, 1001), essentials=1)
    await services.users.create(
        PROVIDER, ent, NewUser("Old", "old@contoso.example", LicenceProduct.ESSENTIALS)
    )
    await services.users.create(
        PROVIDER, ent, NewUser("Keep", "keep@contoso.example", extension=1001)
    )
    data = sheet(
        [
            ["New", "new@contoso.example", "Essentials", "", ""],
            ["Keep", "keep@contoso.example", "", "", ""],
            ["Old", "old@contoso.example", "", "", ""],
        ]
    )
    preview = await bulk.preview(ent, data)
    assert preview.rejected == []
    progress = await bulk.apply(PROVIDER, ent, data, preview.token)
    assert (progress.applied, progress.failed) == (3, 0), await bulk.result_csv(progress.import_id)
    new = await _user(services, ent, "new@contoso.example")
    assert new.licence is LicenceProduct.ESSENTIALS and new.extension is not None


async def test_users_created_together_are_recorded_as_one_by_one_creation_records_them(
    services: Services, ent: int, bulk: Bulk
) -> None:
    shapes = [
        ("Essentials", "+442079460060", None),
        ("Essentials", None, None),
        ("Basic", None, 1070),
        ("", None, None),
    ]
    rows = [
        [f"Bulk {i}", f"bulk{i}@contoso.example", licence, number or "", str(ext or "")]
        for i, (licence, number, ext) in enumerate(shapes)
    ]
    data = sheet(rows)
    progress = await bulk.apply(PROVIDER, ent, data, (await bulk.preview(ent, data)).token)
    assert progress.applied == 4
    for i, (licence, number, ext) in enumerate(shapes):
        await services.users.create(
            PROVIDER,
            ent,
            NewUser(
                f"One {i}",
                f"one{i}@contoso.example",
                LicenceProduct(licence.lower()) if licence else None,
                "+442079460061" if number else None,
                ext + 1 if ext else None,
            ),
        )

    async def record(email: str) -> tuple[object, ...]:
        user = await _user(services, ent, email)
        async with services.db.unit_of_work(readonly=True) as uow:
            outbox = sorted(
                (channel, kind, sorted(payload))
                for channel, kind, payload in await uow.session.execute(
                    select(OutboxItem.channel, OutboxItem.kind, OutboxItem.payload).where(
                        OutboxItem.user_id == user.id
                    )
                )
            )
            [after] = (
                await uow.session.execute(
                    select(AuditEntry.after).where(AuditEntry.target == email)
                )
            ).scalars()
        return (
            user.licence,
            user.number is not None,
            user.extension is not None,
            user.caller_id.mode,
            user.status,
            outbox,
            sorted(after),
            after["licence"],
            after["callerid_mode"],
        )

    for i in range(len(shapes)):
        assert await record(f"bulk{i}@contoso.example") == await record(f"one{i}@contoso.example")
    pools = {p.product: p.used for p in await services.licences.pools(ent)}
    assert pools == {LicenceProduct.ESSENTIALS: 4, LicenceProduct.BASIC: 2}


async def test_an_exported_row_moved_to_basic_keeps_the_forms_caller_id_rule(
    services: Services, ent: int, bulk: Bulk
) -> None:
    await services.users.create(
        PROVIDER, ent, NewUser("Ada", "ada@contoso.example", LicenceProduct.ESSENTIALS)
    )
    exported = (await bulk.export(ent)).decode("utf-8-sig")
    assert ",Essentials,+44 20 7946 0000,1000,Own number," in exported
    edited = exported.replace(",Essentials,+44 20 7946 0000,", ",Basic,,").encode()
    preview = await bulk.preview(ent, edited)
    [row] = preview.rows
    assert row.action is RowAction.UPDATE and row.changes == (
        "licence Essentials → Basic",
        "number +44 20 7946 0000 → none",
    )
    await bulk.apply(PROVIDER, ent, edited, preview.token)
    ada = await _user(services, ent, "ada@contoso.example")
    assert (ada.licence, ada.number, ada.extension) == (LicenceProduct.BASIC, None, 1000)
    assert ada.caller_id.mode is CallerIdMode.COMPANY_MAIN


async def test_progress_is_told_after_each_batch(services: Services, ent: int, bulk: Bulk) -> None:
    rows = [[f"P{i}", f"p{i}@contoso.example", "Basic", "", ""] for i in range(20)]
    data = sheet(rows)
    import_id = await bulk.start(PROVIDER, ent, data, (await bulk.preview(ent, data)).token)
    told = []

    async def listen(progress: ImportProgress) -> None:
        told.append((progress.applied, progress.pending))

    done = await bulk.run(import_id, on_batch=listen)
    assert told == [(7, 13), (14, 6), (20, 0)]
    assert done.finished and done.summary() == (
        "20 applied, 0 failed, 0 rejected in the preview, 0 unchanged; finished."
    )


async def test_apply_pressed_twice_on_one_preview_applies_it_once(
    services: Services, ent: int, bulk: Bulk
) -> None:
    data = sheet([["Ann", "ann@contoso.example", "Essentials", "", ""]])
    token = (await bulk.preview(ent, data)).token
    outcomes = await asyncio.gather(
        bulk.start(PROVIDER, ent, data, token),
        bulk.start(PROVIDER, ent, data, token),
        return_exceptions=True,
    )
    [import_id] = [o for o in outcomes if isinstance(o, int)]
    [refusal] = [o for o in outcomes if isinstance(o, AlreadyAppliedError)]
    assert refusal.import_id == import_id
    assert refusal.message == (
        f"This preview is already applied (import {import_id}); its progress and result are there."
    )
    await bulk.run(import_id)
    assert (await bulk.progress(import_id)).applied == 1
    # Pressed again once it is done: still that import, not a "stale preview" (the directory
    # changed, but by this very import).
    with pytest.raises(AlreadyAppliedError) as again:
        await bulk.start(PROVIDER, ent, data, token)
    assert again.value.import_id == import_id

"""Bulk import and export of an enterprise's users: export the directory as a spreadsheet,
preview a file, apply it row by row with the single-user services, resume an interrupted
apply, and report each row's result.

An apply works in batches: each batch is one transaction, and each row in it a savepoint
that holds the row's user change, its audit entries and outbox rows, and the row's own
record marked as applied. A failed row rolls back to its savepoint alone; a process killed
mid-batch loses the whole batch, whose rows are still pending and are applied on resume.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from services.bulk.models import BulkImport, BulkImportRow
from services.bulk.plan import AUTO_WORD, MODE_LABELS, RELEASE_WORD, plan_sheet
from services.bulk.sheet import HEADERS, Column, parse_sheet, write_sheet
from services.bulk.values import ImportProgress, ImportStatus, Preview, RowAction, RowStatus
from services.callerid import CallerIdChange
from services.container import Services
from services.db import Database
from services.domain import AdminRole, CallerIdMode, LicenceProduct
from services.enterprises import load_enterprise
from services.errors import ConflictError, DomainError, NotFoundError
from services.inventory import AUTO, Auto
from services.models import (
    Enterprise,
    Extension,
    HuntGroup,
    HuntGroupMember,
    LicencePool,
    PhoneNumber,
    User,
    utcnow,
)
from services.passwords import generate_password
from services.pbx.huntgroups import HuntGroups
from services.phone import pretty
from services.users import RELEASE, NewUser, Release, UserChanges, Users
from services.views import Actor, UserView

BATCH_SIZE = 50
_BATCH_RETRIES = 5
_RETRYABLE_STATES = frozenset({"40P01", "40001"})
_ROWS = cast(Table, BulkImportRow.__table__)
_RESULT_HEADERS = ["Line", "E-mail", "Action", "Result", "Reason", "Number", "Extension"]


class StalePreviewError(ConflictError):
    """The directory or the file changed after the preview the admin saw."""


class AlreadyAppliedError(ConflictError):
    """Apply was pressed again on a preview that is already being applied."""

    def __init__(self, message: str, import_id: int) -> None:
        super().__init__(message, field="token")
        self.import_id = import_id


ProgressListener = Callable[["ImportProgress"], Awaitable[None]]


def _already_applied(import_id: int) -> AlreadyAppliedError:
    return AlreadyAppliedError(
        f"This preview is already applied (import {import_id}); its progress and result are there.",
        import_id,
    )


def _lost_a_race(error: BaseException) -> bool:
    """Whether PostgreSQL rolled the transaction back for a deadlock or a serialization
    conflict, which passes when the transaction runs again."""
    current: BaseException | None = error
    while current is not None:
        if getattr(current, "sqlstate", None) in _RETRYABLE_STATES:
            return True
        current = current.__cause__ or current.__context__
    return False


def template() -> bytes:
    """An empty spreadsheet with the export's columns."""
    return write_sheet([], [column.header for column in Column])


def preview_csv(preview: Preview) -> bytes:
    """The whole preview as a file: every row, what it changes or why it is rejected."""
    rows = [
        [str(row.line), row.email, row.action.value, "; ".join(row.changes), row.reason]
        for row in preview.rows
    ]
    return write_sheet(rows, ["Line", "E-mail", "Action", "Changes", "Reason"])


def _actor_record(actor: Actor) -> dict[str, Any]:
    return {
        "aad_object_id": actor.aad_object_id,
        "display_name": actor.display_name,
        "role": actor.role.value,
        "enterprise_id": actor.enterprise_id,
    }


def _actor_of(record: dict[str, Any]) -> Actor:
    return Actor(
        record["aad_object_id"],
        record["display_name"],
        AdminRole(record["role"]),
        record["enterprise_id"],
    )


def _number_choice(value: Any) -> Auto | Release | str | None:
    if value == AUTO_WORD:
        return AUTO
    if value == RELEASE_WORD:
        return RELEASE
    return cast(str | None, value)


def _extension_choice(value: Any) -> Auto | Release | int | None:
    if value == AUTO_WORD:
        return AUTO
    if value == RELEASE_WORD:
        return RELEASE
    return cast(int | None, value)


def _licence_choice(value: Any) -> LicenceProduct | Release | None:
    if value == RELEASE_WORD:
        return RELEASE
    return LicenceProduct(value) if value else None


def _new_user(plan: dict[str, Any]) -> NewUser:
    return NewUser(
        display_name=plan["display_name"],
        email=plan["email"],
        licence=LicenceProduct(plan["licence"]) if plan["licence"] else None,
        number=cast(Auto | str | None, _number_choice(plan["number"])),
        extension=cast(Auto | int | None, _extension_choice(plan["extension"])),
    )


def _plain_create(plan: dict[str, Any]) -> bool:
    """A new user with nothing but a licence, number and extension: created with others."""
    return plan["kind"] == "create" and not plan.get("callerid") and not plan.get("groups")


def _runs(rows: Sequence[Row[Any, Any]]) -> list[list[tuple[int, dict[str, Any]]]]:
    """The batch's rows in order, consecutive plain creates grouped together."""
    runs: list[list[tuple[int, dict[str, Any]]]] = []
    for row_id, plan in rows:
        if runs and _plain_create(plan) and _plain_create(runs[-1][-1][1]):
            runs[-1].append((row_id, plan))
        else:
            runs.append([(row_id, plan)])
    return runs


def _caller_id(change: dict[str, Any]) -> CallerIdChange:
    return CallerIdChange(
        mode=CallerIdMode(change["mode"]),
        number_digits=change["number_digits"],
        caller_name=change["caller_name"],
        send_pai=change["send_pai"],
        pai_digits=change["pai_digits"],
    )


class Bulk:
    """Many users at once, from and to a spreadsheet."""

    def __init__(
        self, db: Database, users: Users, hunt_groups: HuntGroups, batch_size: int = BATCH_SIZE
    ) -> None:
        self.db = db
        self.users = users
        self.hunt_groups = hunt_groups
        self.batch_size = batch_size

    @classmethod
    def of(cls, services: Services, batch_size: int = BATCH_SIZE) -> Bulk:
        """Bulk work over a directory's own services."""
        return cls(services.db, services.users, services.hunt_groups, batch_size)

    async def export(self, enterprise_id: int) -> bytes:
        """The enterprise's directory as a spreadsheet the admin can edit and import again."""
        async with self.db.unit_of_work(readonly=True) as uow:
            session = uow.session
            await load_enterprise(session, enterprise_id)
            groups: dict[int, list[str]] = {}
            for user_id, name in await session.execute(
                select(HuntGroupMember.user_id, HuntGroup.name)
                .join(HuntGroup, HuntGroup.id == HuntGroupMember.group_id)
                .where(HuntGroup.enterprise_id == enterprise_id)
                .order_by(func.lower(HuntGroup.name))
            ):
                groups.setdefault(user_id, []).append(name)
            users = await session.execute(
                select(User, PhoneNumber.e164, Extension.number)
                .outerjoin(PhoneNumber, PhoneNumber.user_id == User.id)
                .outerjoin(Extension, Extension.user_id == User.id)
                .where(User.enterprise_id == enterprise_id)
                .order_by(func.lower(User.display_name), User.id)
            )
            rows = [
                [
                    user.display_name,
                    user.email,
                    user.licence.label if user.licence else "",
                    pretty(number) if number else "",
                    str(extension) if extension is not None else "",
                    MODE_LABELS[user.callerid_mode],
                    pretty(user.callerid_number)
                    if user.callerid_mode is CallerIdMode.OTHER and user.callerid_number
                    else "",
                    user.caller_name or "",
                    "Yes" if user.send_pai else "No",
                    pretty(user.pai_number) if user.send_pai and user.pai_number else "",
                    "; ".join(groups.get(user.id, [])),
                    "",
                ]
                for user, number, extension in users
            ]
        return write_sheet(rows, [HEADERS[column] for column in Column])

    async def preview(self, enterprise_id: int, data: bytes) -> Preview:
        """What applying the file would do, row by row; nothing is written."""
        sheet = parse_sheet(data)
        async with self.db.unit_of_work(readonly=True) as uow:
            enterprise = await load_enterprise(uow.session, enterprise_id)
            return await plan_sheet(
                uow.session, enterprise, sheet, data, self.users.email_domain_check
            )

    async def start(
        self, actor: Actor, enterprise_id: int, data: bytes, token: str, file_name: str = ""
    ) -> int:
        """Record the file's rows for applying, if the preview the admin saw (`token`) is
        still what the file would do; returns the import's id. Nothing is applied yet. A
        preview already applied is AlreadyAppliedError, even though the directory has changed
        since (by that very import)."""
        applied = await self._import_with(enterprise_id, token)
        if applied is not None:
            raise _already_applied(applied)
        preview = await self.preview(enterprise_id, data)
        if preview.token != token:
            raise StalePreviewError(
                "The directory or the file changed after this preview, so nothing was applied. "
                "Look at the new preview, then apply again.",
                field="token",
            )
        ranked = sorted(preview.rows, key=lambda row: row.order)
        seq = {row.line: index for index, row in enumerate(ranked)}
        status = {
            RowAction.REJECTED: RowStatus.REJECTED,
            RowAction.UNCHANGED: RowStatus.UNCHANGED,
        }
        async with self.db.unit_of_work() as uow:
            record = BulkImport(
                enterprise_id=enterprise_id,
                actor=_actor_record(actor),
                file_name=file_name[:255],
                token=token,
                status=ImportStatus.APPLYING,
                total_rows=len(preview.rows),
            )
            uow.session.add(record)
            try:
                await uow.session.flush()
            except IntegrityError:
                # Another delivery recorded this very preview a moment ago.
                applied = await self._import_with(enterprise_id, token)
                if applied is None:
                    raise
                raise _already_applied(applied) from None
            await uow.session.execute(
                insert(BulkImportRow),
                [
                    {
                        "import_id": record.id,
                        "seq": seq[row.line],
                        "line": row.line,
                        "email": row.email[:254],
                        "action": row.action,
                        "status": status.get(row.action, RowStatus.PENDING),
                        "plan": row.plan,
                        "reason": row.reason or None,
                    }
                    for row in preview.rows
                ],
            )
            import_id = record.id
            await uow.commit()
        return import_id

    async def _import_with(self, enterprise_id: int, token: str) -> int | None:
        """The import that applied the preview `token`, if any."""
        async with self.db.unit_of_work(readonly=True) as uow:
            found: int | None = (
                await uow.session.execute(
                    select(BulkImport.id).where(
                        BulkImport.enterprise_id == enterprise_id, BulkImport.token == token
                    )
                )
            ).scalar_one_or_none()
        return found

    async def apply(
        self, actor: Actor, enterprise_id: int, data: bytes, token: str, file_name: str = ""
    ) -> ImportProgress:
        """Apply a previewed file to its end: `start`, then `run`."""
        import_id = await self.start(actor, enterprise_id, data, token, file_name)
        return await self.run(import_id)

    async def unfinished(
        self, enterprise_id: int | None = None, *, idle_for: timedelta | None = None
    ) -> list[int]:
        """Imports whose apply was interrupted (oldest first), to `run` again. With
        `idle_for`, only those no row of which was applied for that long: an import a live
        process is applying moves on every batch, one left by a dead process does not."""
        query = select(BulkImport.id).where(BulkImport.status == ImportStatus.APPLYING)
        if enterprise_id is not None:
            query = query.where(BulkImport.enterprise_id == enterprise_id)
        if idle_for is not None:
            since = utcnow() - idle_for
            moved = (
                select(_ROWS.c.id)
                .where(_ROWS.c.import_id == BulkImport.id, _ROWS.c.finished_at >= since)
                .exists()
            )
            query = query.where(BulkImport.created_at < since, ~moved)
        async with self.db.unit_of_work(readonly=True) as uow:
            return list((await uow.session.execute(query.order_by(BulkImport.id))).scalars())

    async def run(self, import_id: int, on_batch: ProgressListener | None = None) -> ImportProgress:
        """Apply the import's pending rows, batch by batch; safe to call again after a crash,
        and from two processes at once: each row is applied exactly once. `on_batch` hears
        the progress after each committed batch (a card updated in place)."""
        async with self.db.unit_of_work(readonly=True) as uow:
            record = await uow.session.get(BulkImport, import_id)
            if record is None:
                raise NotFoundError("That import does not exist (any more).")
            actor = _actor_of(record.actor)
            enterprise_id = record.enterprise_id
        retries = 0
        while True:
            try:
                if not await self._run_batch(import_id, enterprise_id, actor):
                    break
                retries = 0
                if on_batch is not None:
                    await on_batch(await self.progress(import_id))
            except DBAPIError as error:
                # Another transaction held rows this batch needed, in the other order: the
                # batch was rolled back as a whole, its rows are still pending; run it again.
                retries += 1
                if not _lost_a_race(error) or retries > _BATCH_RETRIES:
                    raise
        return await self.progress(import_id)

    async def _run_batch(self, import_id: int, enterprise_id: int, actor: Actor) -> bool:
        """Apply up to one batch of pending rows; False when none was left."""
        sealed = [self.users.vault.seal(generate_password()) for _ in range(self.batch_size)]
        async with self.db.unit_of_work() as uow:
            session = uow.session
            query = (
                select(_ROWS.c.id, _ROWS.c.plan)
                .where(_ROWS.c.import_id == import_id, _ROWS.c.status == RowStatus.PENDING)
                .order_by(_ROWS.c.seq)
                .limit(self.batch_size)
            )
            if self.db.is_postgres:
                # Rows another runner holds are skipped; when those are all that is left, wait
                # for that runner's batch to end instead of reporting them as still to do.
                rows = (await session.execute(query.with_for_update(skip_locked=True))).all()
                if not rows:
                    rows = (await session.execute(query.with_for_update())).all()
            else:
                rows = (await session.execute(query)).all()
            if not rows:
                await self._finish_if_done(session, import_id)
                await uow.commit()
                return False
            enterprise = await load_enterprise(session, enterprise_id)
            if self.db.is_postgres:
                # The pools first, in one order: every create and licence change of the
                # enterprise takes them, and a batch takes both products.
                await session.execute(
                    select(LicencePool.id)
                    .where(LicencePool.enterprise_id == enterprise_id)
                    .order_by(LicencePool.product)
                    .with_for_update()
                )
            for run in _runs(rows):
                if len(run) > 1 and await self._apply_creates(
                    session, actor, enterprise, run, sealed
                ):
                    continue
                for row_id, plan in run:
                    await self._apply_row(session, actor, enterprise, row_id, plan, sealed)
            await uow.commit()
        return True

    async def _apply_creates(
        self,
        session: AsyncSession,
        actor: Actor,
        enterprise: Enterprise,
        run: list[tuple[int, dict[str, Any]]],
        sealed: list[str],
    ) -> bool:
        """New users of consecutive rows created together, in one savepoint with their rows
        marked applied; False (and nothing done) when any is refused."""
        passwords = [
            sealed.pop() if sealed else self.users.vault.seal(generate_password()) for _ in run
        ]
        try:
            async with session.begin_nested():
                views = await self.users.create_many_in(
                    session, actor, enterprise, [_new_user(plan) for _, plan in run], passwords
                )
                now = utcnow()
                await session.execute(
                    update(_ROWS)
                    .where(_ROWS.c.id == bindparam("row"), _ROWS.c.status == RowStatus.PENDING)
                    .values(
                        status=RowStatus.APPLIED,
                        user_id=bindparam("created"),
                        number=bindparam("given_number"),
                        extension=bindparam("given_extension"),
                        finished_at=now,
                    ),
                    [
                        {
                            "row": row_id,
                            "created": view.id,
                            "given_number": view.number,
                            "given_extension": view.extension,
                        }
                        for (row_id, _), view in zip(run, views, strict=True)
                    ],
                )
        except (DomainError, IntegrityError, StaleDataError):
            return False
        return True

    async def _finish_if_done(self, session: AsyncSession, import_id: int) -> None:
        pending = (
            await session.execute(
                select(func.count())
                .select_from(_ROWS)
                .where(_ROWS.c.import_id == import_id, _ROWS.c.status == RowStatus.PENDING)
            )
        ).scalar_one()
        if not pending:
            await session.execute(
                update(BulkImport)
                .where(BulkImport.id == import_id, BulkImport.status == ImportStatus.APPLYING)
                .values(status=ImportStatus.FINISHED, finished_at=utcnow())
            )

    async def _apply_row(
        self,
        session: AsyncSession,
        actor: Actor,
        enterprise: Enterprise,
        row_id: int,
        plan: dict[str, Any],
        sealed: list[str],
    ) -> None:
        """One row in a savepoint of its own: the user change and the row marked applied
        commit together, or the row is marked failed with the reason."""
        mine = (_ROWS.c.id == row_id) & (_ROWS.c.status == RowStatus.PENDING)
        try:
            async with session.begin_nested():
                view = await self._change(session, actor, enterprise, plan, sealed)
                await session.execute(
                    update(_ROWS)
                    .where(mine)
                    .values(
                        status=RowStatus.APPLIED,
                        user_id=plan.get("user_id") if view is None else view.id,
                        number=None if view is None else view.number,
                        extension=None if view is None else view.extension,
                        finished_at=utcnow(),
                    )
                )
            return
        except DomainError as error:
            reason = error.message
            if error.field == "version":
                reason = (
                    "Someone changed this user after the preview, so this row was not applied; "
                    "export the directory again and redo the row."
                )
        except (IntegrityError, StaleDataError):
            reason = (
                "Someone changed this user, or took that number or extension, at the same "
                "moment; preview the row again."
            )
        await session.execute(
            update(_ROWS)
            .where(mine)
            .values(status=RowStatus.FAILED, reason=reason, finished_at=utcnow())
        )

    async def _change(
        self,
        session: AsyncSession,
        actor: Actor,
        enterprise: Enterprise,
        plan: dict[str, Any],
        sealed: list[str],
    ) -> UserView | None:
        """The row's change, through the single-user services; the user as it ends up."""
        kind = plan["kind"]
        if kind == "remove":
            await self.users.remove_in(session, actor, enterprise, plan["user_id"], plan["version"])
            return None
        if kind == "create":
            password = sealed.pop() if sealed else self.users.vault.seal(generate_password())
            view = await self.users.create_in(session, actor, enterprise, _new_user(plan), password)
        else:
            view = await self.users.update_in(
                session,
                actor,
                enterprise,
                plan["user_id"],
                plan["version"],
                UserChanges(
                    display_name=plan.get("display_name"),
                    licence=_licence_choice(plan.get("licence")),
                    number=_number_choice(plan.get("number")),
                    extension=_extension_choice(plan.get("extension")),
                ),
            )
        if plan.get("callerid"):
            view = await self.users.set_caller_id_in(
                session, actor, enterprise, view.id, view.version, _caller_id(plan["callerid"])
            )
        if plan.get("groups") is not None:
            await self.hunt_groups.set_user_groups_in(
                session, actor, enterprise.id, view.id, plan["groups"]
            )
        return view

    async def progress(self, import_id: int) -> ImportProgress:
        """How many rows are applied, failed, still pending."""
        async with self.db.unit_of_work(readonly=True) as uow:
            record = await uow.session.get(BulkImport, import_id)
            if record is None:
                raise NotFoundError("That import does not exist (any more).")
            counts = {
                RowStatus(status): int(count)
                for status, count in await uow.session.execute(
                    select(_ROWS.c.status, func.count())
                    .where(_ROWS.c.import_id == import_id)
                    .group_by(_ROWS.c.status)
                )
            }
            return ImportProgress(
                import_id=import_id,
                enterprise_id=record.enterprise_id,
                status=record.status,
                total=record.total_rows,
                pending=counts.get(RowStatus.PENDING, 0),
                applied=counts.get(RowStatus.APPLIED, 0),
                failed=counts.get(RowStatus.FAILED, 0),
                rejected=counts.get(RowStatus.REJECTED, 0),
                unchanged=counts.get(RowStatus.UNCHANGED, 0),
            )

    async def result_csv(self, import_id: int) -> bytes:
        """Every row of the import with its result: applied, failed (why), rejected, ..."""
        async with self.db.unit_of_work(readonly=True) as uow:
            if await uow.session.get(BulkImport, import_id) is None:
                raise NotFoundError("That import does not exist (any more).")
            rows = await uow.session.execute(
                select(
                    _ROWS.c.line,
                    _ROWS.c.email,
                    _ROWS.c.action,
                    _ROWS.c.status,
                    _ROWS.c.reason,
                    _ROWS.c.number,
                    _ROWS.c.extension,
                )
                .where(_ROWS.c.import_id == import_id)
                .order_by(_ROWS.c.line)
            )
            lines = [
                [
                    str(r.line),
                    r.email,
                    str(r.action),
                    str(r.status),
                    r.reason or "",
                    pretty(r.number) if r.number else "",
                    str(r.extension) if r.extension is not None else "",
                ]
                for r in rows
            ]
        return write_sheet(lines, _RESULT_HEADERS)


def read_result(data: bytes) -> list[dict[str, str]]:
    """A result (or preview) file read back: one dict a row, by header (for tests, tools)."""
    text = data.decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text, newline="")))

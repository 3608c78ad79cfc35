"""Many users at once from a spreadsheet: export (and the blank template) as a file, import
from a file attached in the chat or pasted on a card, the preview, and the apply, which runs in
the background with a progress card updated in place and ends with a result card and file.

Files travel through Teams' file consent flow: the bot sends a consent card, Teams answers
`fileConsent/invoke` (accept: an upload URL in the admin's OneDrive), the bot PUTs the bytes
there and shows the file's card. A file attached by the admin arrives as download info: a
short-lived https URL the bot fetches, at most 5 MB.

`BulkDesk` owns what outlives a turn: the files waiting for consent or for Apply, the
imports running in the background, and the resumption of imports cut short at startup
(`serve_bulk_imports(app, services)` wires it to the app). Handlers reach it, and the turn's
Teams context, through `current_scope()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from botbuilder.core import CardFactory, MessageFactory, Middleware, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import Activity, ActivityTypes, Attachment, ConversationReference

from bot.http import BOT_ADAPTER_KEY, BOT_SETTINGS_KEY
from bot.router import EnterpriseTurn, Router
from cards.actions import (
    MAX_PASTE,
    ApplyImport,
    ExportDirectory,
    FileConsentAnswer,
    ImportRef,
    ImportResultFile,
    OpenImport,
    PreviewFile,
    PreviewPasted,
    UploadedSheet,
    database_id,
)
from cards.bulk import (
    export_card,
    import_card,
    preview_card,
    progress_card,
    result_card,
)
from cards.common import Card, notice_card
from services.bulk.models import BulkImport
from services.bulk.service import (
    BATCH_SIZE,
    AlreadyAppliedError,
    Bulk,
    StalePreviewError,
    preview_csv,
    read_result,
    template,
)
from services.bulk.sheet import MAX_FILE_BYTES, FileRefusedError
from services.bulk.values import ImportProgress, Preview
from services.container import Services
from services.db import is_unreachable
from services.errors import NotFoundError, ValidationError
from services.retry import backoff_seconds
from services.views import EnterpriseView

logger = logging.getLogger(__name__)
router = Router()

DOWNLOAD_TIMEOUT_SECONDS = 30.0
UPLOAD_TIMEOUT_SECONDS = 60.0
# Files kept for a consent or an Apply: long enough to read a preview, bounded in memory.
KEPT_SECONDS = 3600.0
KEPT_BYTES = 64 * 1024 * 1024
UPDATE_EVERY_SECONDS = 1.0
STOP_WAIT_SECONDS = 10.0
SEND_ATTEMPTS = 3
# An import none of whose rows was applied for this long is no longer being applied by anyone
# (a batch takes a fraction of a second): any instance takes it over.
STALLED_AFTER = timedelta(seconds=30)
WATCH_EVERY_SECONDS = 30.0
FILE_GONE = (
    "Switchboard no longer has that file (it keeps files for an hour, and not across a "
    "restart). Ask for it again."
)
TEMPLATE_NAME = "switchboard-template.csv"
# How a consent card's file is made again when the shelf no longer has it.
REMAKE_EXPORT = "export"
REMAKE_TEMPLATE = "template"
REMAKE_RESULT = "result-"
FILE_CONSENT = "application/vnd.microsoft.teams.card.file.consent"
FILE_INFO = "application/vnd.microsoft.teams.card.file.info"
PERSONAL_ONLY = (
    "Teams lets Switchboard send and receive files in your personal chat with it only: open "
    "that chat and try there."
)


@dataclass
class _Kept:
    ent: int
    name: str
    data: bytes
    until: float


@dataclass
class FileShelf:
    """Files waiting for the admin: for a consent card's answer, or an uploaded sheet for its
    Apply. Bounded by age and total size; the oldest go first."""

    max_bytes: int = KEPT_BYTES
    seconds: float = KEPT_SECONDS
    _files: OrderedDict[str, _Kept] = field(default_factory=OrderedDict)

    def put(self, ent: int, name: str, data: bytes) -> str:
        """Keep `data` for the enterprise; returns the key to ask for it with."""
        self._expire()
        while (
            self._files
            and sum(len(f.data) for f in self._files.values()) + len(data) > self.max_bytes
        ):
            self._files.popitem(last=False)
        key = secrets.token_urlsafe(12)
        self._files[key] = _Kept(ent, name, data, time.monotonic() + self.seconds)
        return key

    def get(self, key: str, ent: int) -> tuple[str, bytes] | None:
        """The file kept under `key` for this enterprise, or None."""
        self._expire()
        kept = self._files.get(key)
        if kept is None or kept.ent != ent:
            return None
        return kept.name, kept.data

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, f in self._files.items() if f.until < now]:
            del self._files[key]


class DownloadRefusedError(ValidationError):
    """A file attached in the chat that Switchboard will not read (too large, not CSV, not
    where Teams keeps files)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="file")


@dataclass
class _Followed:
    """An import the desk is applying, and the card that shows its progress."""

    import_id: int
    enterprise: EnterpriseView
    file_name: str
    reference: ConversationReference | None
    activity_id: str | None
    resumed: bool = False
    last_update: float = 0.0

    @property
    def personal(self) -> bool:
        """Whether the import is followed in a personal chat (where files can travel)."""
        conversation = self.reference.conversation if self.reference else None
        kind = conversation.conversation_type if conversation else None
        return (kind or "personal") == "personal"


class BulkDesk:
    """The bot side of bulk imports: files in and out of Teams, and imports applied in the
    background with their progress shown in place."""

    def __init__(self, adapter: CloudAdapter, app_id: str, services: Services) -> None:
        self.adapter = adapter
        self.app_id = app_id
        self.services = services
        self.shelf = FileShelf()
        self.batch_size = BATCH_SIZE
        self.update_every = UPDATE_EVERY_SECONDS
        # Origins (scheme://host:port) besides https ones that files may come from and go to:
        # none in production; the tests' fake Teams serves files over loopback http.
        self.trusted_origins: set[str] = set()
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.stalled_after = STALLED_AFTER
        self.watch_every = WATCH_EVERY_SECONDS
        self._session: aiohttp.ClientSession | None = None
        self._stopping = False
        self._stop = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    @property
    def bulk(self) -> Bulk:
        """The bulk service over the directory."""
        return Bulk.of(self.services, self.batch_size)

    # Lifecycle ----------------------------------------------------------------------

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: from startup on, resume interrupted imports (at once, then
        every `watch_every` seconds); at cleanup, let running batches end (their rows stay
        pending for whoever resumes them)."""
        self._stopping = False
        self._stop.clear()
        self._session = aiohttp.ClientSession()
        await self._resume_pass()
        self._watcher = asyncio.create_task(
            self._watch(), name="bulk-imports-watch", context=contextvars.Context()
        )
        try:
            yield
        finally:
            await self.stop()

    async def _watch(self) -> None:
        # Looks at the clock every second, so a changed `watch_every` counts at once.
        last = time.monotonic()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 1.0)
            if not self._stop.is_set() and time.monotonic() - last >= self.watch_every:
                await self._resume_pass()
                last = time.monotonic()

    async def _resume_pass(self) -> None:
        try:
            await self.resume_unfinished()
        except Exception as error:
            # The database may be down: not a bug, and nothing is lost; looked at again later.
            logger.warning(
                "Could not look for interrupted imports (%s); will look again",
                type(error).__name__,
            )

    async def stop(self) -> None:
        """Stop after the running batches; close the HTTP client."""
        self._stopping = True
        self._stop.set()
        if self._watcher is not None:
            await self._watcher
            self._watcher = None
        running = [task for task in self.tasks.values() if not task.done()]
        if running:
            _, late = await asyncio.wait(running, timeout=STOP_WAIT_SECONDS)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self.tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def idle(self) -> None:
        """Wait for every import under way to end (tests, shutdown)."""
        while running := [task for task in self.tasks.values() if not task.done()]:
            await asyncio.wait(running)

    async def resume_unfinished(self) -> list[int]:
        """Apply, in the background, every import a process left unfinished (none of its rows
        applied for `stalled_after`: an import another live instance is applying moves on
        every batch); its admin gets a progress card (in their personal chat) and the
        result."""
        resumed = []
        for done in [key for key, task in self.tasks.items() if task.done()]:
            del self.tasks[done]
        for import_id in await self.bulk.unfinished(idle_for=self.stalled_after):
            if import_id in self.tasks:
                continue  # applying here, only slowly
            try:
                enterprise, file_name, reference = await self._owner_of(import_id)
            except NotFoundError:
                continue  # removed with its enterprise meanwhile
            self._follow(_Followed(import_id, enterprise, file_name, reference, None, resumed=True))
            resumed.append(import_id)
        if resumed:
            logger.info("Resuming %d interrupted imports: %s", len(resumed), resumed)
        return resumed

    async def _owner_of(
        self, import_id: int
    ) -> tuple[EnterpriseView, str, ConversationReference | None]:
        """The import's enterprise and file name, and the personal chat of the admin who
        applied it (None when Switchboard never spoke with them there)."""
        async with self.services.db.unit_of_work(readonly=True) as uow:
            record = await uow.session.get(BulkImport, import_id)
            if record is None:
                raise NotFoundError("That import does not exist (any more).")
            enterprise_id, file_name = record.enterprise_id, record.file_name
            person = str(record.actor.get("aad_object_id") or "")
        enterprise = await self.services.enterprises.by_id(enterprise_id)
        if enterprise is None:
            raise NotFoundError("That enterprise does not exist (any more).")
        stored = await self.services.conversations.personal(enterprise.tenant_id, person)
        reference = (
            ConversationReference().deserialize(stored.reference) if stored is not None else None
        )
        return enterprise, file_name, reference

    # Files --------------------------------------------------------------------------

    def _allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        if not parts.hostname:
            return False
        if parts.scheme == "https":
            return True
        return f"{parts.scheme}://{parts.netloc}" in self.trusted_origins

    async def download(self, url: str) -> bytes:
        """The bytes of a file attached in the chat: https only, at most 5 MB, within a
        timeout; DownloadRefusedError says what went wrong."""
        if self._session is None:
            raise DownloadRefusedError("Switchboard is starting or stopping: send the file again.")
        if not self._allowed(url):
            raise DownloadRefusedError(
                "That attachment does not point to a file Teams keeps, so Switchboard did not "
                "read it. Attach the CSV file again."
            )
        too_large = (
            f"The file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB, so Switchboard did "
            "not read it. Split it into several files, or remove the columns it does not need."
        )
        try:
            async with self._session.get(
                url,
                timeout=aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_SECONDS),
                allow_redirects=False,
            ) as response:
                if response.status != 200:
                    raise DownloadRefusedError(
                        f"Teams did not hand over the file (HTTP {response.status}); the link "
                        "may have expired. Attach the file again."
                    )
                if (response.content_length or 0) > MAX_FILE_BYTES:
                    raise DownloadRefusedError(too_large)
                data = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > MAX_FILE_BYTES:
                        raise DownloadRefusedError(too_large)
                return bytes(data)
        except (aiohttp.ClientError, TimeoutError):
            raise DownloadRefusedError(
                "Switchboard could not fetch the file from Teams in time. Attach it again."
            ) from None

    async def offer_file(
        self,
        context: TurnContext,
        ent: int,
        name: str,
        data: bytes,
        description: str,
        *,
        remake: str = "",
    ) -> None:
        """Send the consent card for a file; the bytes wait on the shelf for the answer.
        `remake` (see `remade`) names how to make the file again where the shelf lacks it:
        the answer may reach another instance of the bot, or this one after a restart."""
        key = self.shelf.put(ent, name, data)
        attachment = file_consent_attachment(
            name, len(data), description, {"file": f"{remake}/{key}" if remake else key, "ent": ent}
        )
        await context.send_activity(
            Activity(type=ActivityTypes.message, attachments=[_attachment(attachment)])
        )

    def kept(self, file: str, ent: int) -> tuple[str, bytes] | None:
        """The file a consent card offered, as kept on the shelf."""
        return self.shelf.get(file.rpartition("/")[2], ent)

    async def remade(self, file: str, ent: int) -> tuple[str, bytes] | None:
        """The file a consent card offered, made again from the directory (the export, the
        template, an import's result of this enterprise); None when it cannot be."""
        how = file.partition("/")[0] if "/" in file else ""
        if how == REMAKE_EXPORT:
            return f"switchboard-users-{_today()}.csv", await self.bulk.export(ent)
        if how == REMAKE_TEMPLATE:
            return TEMPLATE_NAME, template()
        if how.startswith(REMAKE_RESULT):
            import_id = database_id(how.removeprefix(REMAKE_RESULT))
            if import_id is None:
                return None
            try:
                progress = await self.bulk.progress(import_id)
            except NotFoundError:
                return None
            if progress.enterprise_id != ent:
                return None
            return result_file_name(import_id), await self.bulk.result_csv(import_id)
        return None

    async def upload(self, answer: FileConsentAnswer, data: bytes) -> str | None:
        """PUT the file to the OneDrive location Teams gave; None when done, else why not."""
        if self._session is None:
            return "Switchboard is starting or stopping: ask for the file again."
        if not self._allowed(answer.upload_url):
            return "Teams gave no place to save the file. Ask for the file again."
        headers = {
            "Content-Length": str(len(data)),
            "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}",
        }
        try:
            async with self._session.put(
                answer.upload_url,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=UPLOAD_TIMEOUT_SECONDS),
                allow_redirects=False,
            ) as response:
                if response.status not in (200, 201):
                    return (
                        f"OneDrive did not take the file (HTTP {response.status}). Ask for the "
                        "file again."
                    )
        except (aiohttp.ClientError, TimeoutError):
            return "OneDrive did not answer in time. Ask for the file again."
        return None

    # Applying in the background -----------------------------------------------------

    def launch(
        self,
        import_id: int,
        enterprise: EnterpriseView,
        file_name: str,
        reference: ConversationReference,
    ) -> None:
        """Apply the import in the background: a progress card in the conversation of
        `reference`, updated in place as batches finish, then the result."""
        self._follow(_Followed(import_id, enterprise, file_name, reference, None))

    def _follow(self, followed: _Followed) -> None:
        if followed.import_id in self.tasks and not self.tasks[followed.import_id].done():
            return
        # In a context of its own: the import outlives the turn that started it, and must not
        # carry that turn's request id or delivery claim.
        self.tasks[followed.import_id] = asyncio.create_task(
            self._apply(followed),
            name=f"bulk-import-{followed.import_id}",
            context=contextvars.Context(),
        )

    async def _apply(self, followed: _Followed) -> None:
        """Run the import to its end, its card following; then the result. Telling the admin
        may fail (the Bot Connector down): the import goes on regardless."""
        bulk = self.bulk
        if followed.activity_id is None and followed.reference is not None:
            try:
                start = await bulk.progress(followed.import_id)
                followed.activity_id = await self._send_card(
                    followed.reference,
                    progress_card(
                        followed.enterprise,
                        start,
                        file_name=followed.file_name,
                        resumed=followed.resumed,
                    ),
                )
            except Exception:
                logger.warning(
                    "Progress card of import %s not sent", followed.import_id, exc_info=True
                )
        try:

            async def on_batch(progress: ImportProgress) -> None:
                if self._stopping:
                    raise _Stopping
                now = time.monotonic()
                if now - followed.last_update >= self.update_every and not progress.finished:
                    followed.last_update = now
                    await self._show_progress(followed, progress)

            try:
                progress = await bulk.run(followed.import_id, on_batch=on_batch)
            except _Stopping:
                logger.info(
                    "Import %s paused for shutdown; it resumes at the next start",
                    followed.import_id,
                )
                return
        except Exception as error:
            if not is_unreachable(error):
                logger.exception("Import %s stopped; it resumes later", followed.import_id)
            else:  # the database is down: no bug, nothing lost; the watch resumes it
                logger.warning(
                    "Import %s paused: the database cannot be reached; it resumes later",
                    followed.import_id,
                )
            return
        await self._show_progress(followed, progress)
        try:
            await self._finish(followed, progress)
        except Exception:
            logger.warning(
                "The result of import %s was not sent; its card's Refresh shows it",
                followed.import_id,
                exc_info=True,
            )

    async def _show_progress(self, followed: _Followed, progress: ImportProgress) -> None:
        if followed.reference is None or followed.activity_id is None:
            return
        card = progress_card(
            followed.enterprise, progress, file_name=followed.file_name, resumed=followed.resumed
        )
        activity_id = followed.activity_id

        async def update(context: TurnContext) -> None:
            await context.update_activity(
                Activity(
                    id=activity_id,
                    type=ActivityTypes.message,
                    attachments=[CardFactory.adaptive_card(card)],
                )
            )

        try:
            await self._proactive(followed.reference, update)
        except Exception:
            # A progress card that could not be updated is no reason to stop the import.
            logger.warning("Progress card of import %s not updated", followed.import_id)

    async def _finish(self, followed: _Followed, progress: ImportProgress) -> None:
        if followed.reference is None:
            logger.info("Import %s finished: %s", followed.import_id, progress.summary())
            return
        bulk = self.bulk
        failures = await failed_rows(bulk, followed.import_id)
        card = result_card(followed.enterprise, progress, failures, file_name=followed.file_name)
        data = await bulk.result_csv(followed.import_id)
        name = result_file_name(followed.import_id)

        async def send(context: TurnContext) -> None:
            await context.send_activity(MessageFactory.attachment(CardFactory.adaptive_card(card)))
            if not followed.personal:
                return  # Teams takes files from bots in personal chats only
            await self.offer_file(
                context,
                followed.enterprise.id,
                name,
                data,
                f"Each row of import {followed.import_id} with its result.",
                remake=f"{REMAKE_RESULT}{followed.import_id}",
            )

        await self._proactive(followed.reference, send)

    async def _send_card(self, reference: ConversationReference, card: Card) -> str | None:
        sent: list[str | None] = []

        async def send(context: TurnContext) -> None:
            response = await context.send_activity(
                MessageFactory.attachment(CardFactory.adaptive_card(card))
            )
            sent.append(response.id if response is not None else None)

        await self._proactive(reference, send)
        return sent[0] if sent else None

    async def _proactive(
        self, reference: ConversationReference, work: Callable[[TurnContext], Awaitable[None]]
    ) -> None:
        """Run `work` in the conversation, tried again a few times when the Bot Connector
        fails (throttling, a lost connection); the last failure is raised."""
        for attempt in range(1, SEND_ATTEMPTS + 1):
            failure = await self._proactive_once(reference, work)
            if failure is None:
                return
            if attempt == SEND_ATTEMPTS:
                raise failure
            await asyncio.sleep(backoff_seconds(attempt, base=0.5, cap=5.0))

    async def _proactive_once(
        self, reference: ConversationReference, work: Callable[[TurnContext], Awaitable[None]]
    ) -> BaseException | None:
        failures: list[BaseException] = []

        async def run(context: TurnContext) -> None:
            # Caught here: the adapter's turn error handler would send an apology.
            try:
                await work(context)
            except Exception as error:
                failures.append(error)

        try:
            await self.adapter.continue_conversation(reference, run, bot_app_id=self.app_id)
        except Exception as error:
            failures.append(error)
        return failures[0] if failures else None


class _Stopping(Exception):
    """The app is stopping: end the apply between two batches."""


def file_consent_attachment(
    name: str, size: int, description: str, context: dict[str, Any]
) -> dict[str, Any]:
    """The card on which Teams asks the admin to let the bot save a file to their OneDrive;
    `context` comes back with the answer."""
    return {
        "contentType": FILE_CONSENT,
        "name": name,
        "content": {
            "description": description,
            "sizeInBytes": size,
            "acceptContext": context,
            "declineContext": context,
        },
    }


def file_info_attachment(
    name: str, content_url: str, unique_id: str, file_type: str
) -> dict[str, Any]:
    """The card of a file the bot has uploaded: Teams shows it, and opens it."""
    return {
        "contentType": FILE_INFO,
        "contentUrl": content_url,
        "name": name,
        "content": {"uniqueId": unique_id, "fileType": file_type},
    }


def _attachment(raw: dict[str, Any]) -> Attachment:
    return Attachment(
        content_type=raw["contentType"],
        name=raw.get("name"),
        content=raw.get("content"),
        content_url=raw.get("contentUrl"),
    )


async def failed_rows(bulk: Bulk, import_id: int) -> list[tuple[str, str, str]]:
    """The rows of an import that failed: line, e-mail, reason."""
    rows = read_result(await bulk.result_csv(import_id))
    return [
        (row["Line"], row["E-mail"], row["Reason"]) for row in rows if row["Result"] == "failed"
    ]


def result_file_name(import_id: int) -> str:
    """The name of an import's result file."""
    return f"switchboard-import-{import_id}-result.csv"


# The turn's scope: the desk and the Teams context, for the handlers of this module.


@dataclass(frozen=True)
class BulkScope:
    """What a bulk handler needs beyond its turn: the desk, and the turn's Teams context."""

    desk: BulkDesk
    context: TurnContext

    @property
    def personal(self) -> bool:
        """Whether the turn is in the admin's personal chat (where files can travel)."""
        conversation = self.context.activity.conversation
        kind = conversation.conversation_type if conversation else None
        return (kind or "personal") == "personal"

    @property
    def reference(self) -> ConversationReference:
        """Where to reach this chat later, as a new message (not a reply)."""
        reference = TurnContext.get_conversation_reference(self.context.activity)
        reference.activity_id = None
        return reference


_SCOPE: contextvars.ContextVar[BulkScope | None] = contextvars.ContextVar(
    "switchboard_bulk_scope", default=None
)


def current_scope() -> BulkScope:
    """The bulk scope of the turn being handled."""
    scope = _SCOPE.get()
    if scope is None:
        raise ValidationError("Spreadsheets are not available here.")
    return scope


class _ScopeMiddleware(Middleware):  # type: ignore[misc]
    """Puts the desk and the turn's context in scope for the bulk handlers."""

    def __init__(self, desk: BulkDesk) -> None:
        self.desk = desk

    async def on_turn(self, context: TurnContext, logic: Callable[[], Awaitable[None]]) -> None:
        token = _SCOPE.set(BulkScope(self.desk, context))
        try:
            await logic()
        finally:
            _SCOPE.reset(token)


BULK_DESK_KEY = web.AppKey("switchboard.bulk", BulkDesk)


def serve_bulk_imports(app: web.Application, services: Services) -> BulkDesk:
    """Give the bot its bulk desk: files through Teams, imports applied in the background,
    and the imports an earlier process left unfinished resumed at startup."""
    adapter = app[BOT_ADAPTER_KEY]
    desk = BulkDesk(adapter, app[BOT_SETTINGS_KEY].app_id, services)
    adapter.use(_ScopeMiddleware(desk))
    app[BULK_DESK_KEY] = desk
    app.cleanup_ctx.append(desk.context)
    return desk


# Handlers ------------------------------------------------------------------------------


def _today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


@router.action(ExportDirectory)
async def export(turn: EnterpriseTurn, data: ExportDirectory, enterprise: EnterpriseView) -> Card:
    """The directory (or the blank template) as a CSV file, and what its columns mean."""
    scope = current_scope()
    if not scope.personal:
        return export_card(enterprise, template=data.template, sent=False, notice=PERSONAL_ONLY)
    if data.template:
        content, name, remake = template(), TEMPLATE_NAME, REMAKE_TEMPLATE
        description = "The blank Switchboard template: one user a row."
    else:
        content = await scope.desk.bulk.export(enterprise.id)
        name, remake = f"switchboard-users-{_today()}.csv", REMAKE_EXPORT
        description = f"Every user of {enterprise.name}, one a row, to edit and import again."
    await scope.desk.offer_file(
        scope.context, enterprise.id, name, content, description, remake=remake
    )
    return export_card(enterprise, template=data.template, sent=True)


@router.action(OpenImport)
async def open_import(turn: EnterpriseTurn, data: OpenImport, enterprise: EnterpriseView) -> Card:
    """The import card: attach a file in the personal chat, or paste it."""
    return import_card(enterprise, personal=current_scope().personal)


async def _preview(desk: BulkDesk, enterprise: EnterpriseView, content: bytes) -> Preview:
    return await desk.bulk.preview(enterprise.id, content)


def _pasted(form: PreviewPasted | ApplyImport | PreviewFile) -> bytes:
    sheet = form.sheet
    if not sheet.strip():
        raise ValidationError(
            "Paste the CSV into the box first: the header line, then one user a line.",
            field="sheet",
        )
    if len(sheet) > MAX_PASTE:
        raise ValidationError(
            f"The box takes up to {MAX_PASTE:,} characters; this is {len(sheet):,}. Attach the "
            "file in your personal chat with Switchboard instead.",
            field="sheet",
        )
    return sheet.encode("utf-8")


async def _paste_refused(turn: EnterpriseTurn, form: PreviewPasted, errors: dict[str, str]) -> Card:
    """The import card again, the pasted text kept, the refusal under the box."""
    message = errors.get("sheet") or errors.get("file") or errors.get("form") or ""
    return import_card(
        turn.enterprise,
        sheet=form.sheet[:MAX_PASTE],
        errors={"sheet": message},
        personal=_personal(),
    )


def _personal() -> bool:
    scope = _SCOPE.get()
    return scope.personal if scope is not None else True


@router.action(PreviewPasted, form=_paste_refused)
async def preview_pasted(
    turn: EnterpriseTurn, form: PreviewPasted, enterprise: EnterpriseView
) -> Card:
    """What the pasted sheet would change; nothing is written."""
    content = _pasted(form)
    preview = await _preview(current_scope().desk, enterprise, content)
    return preview_card(enterprise, preview, file_name="Pasted sheet", sheet=form.sheet)


def _is_csv(name: str, file_type: str) -> bool:
    return file_type.lower().lstrip(".") == "csv" or name.lower().endswith(".csv")


@router.action(UploadedSheet)
async def uploaded(turn: EnterpriseTurn, data: UploadedSheet, enterprise: EnterpriseView) -> Card:
    """A file attached in the chat: fetched, kept for Apply, and previewed."""
    scope = current_scope()
    name = data.name or "the file"
    if not _is_csv(data.name, data.file_type):
        return import_card(
            enterprise,
            errors={
                "form": f"“{name[:80]}” is not a CSV file. In Excel, use File › Save As › CSV "
                "UTF-8, then attach that file."
            },
            personal=scope.personal,
        )
    try:
        content = await scope.desk.download(data.url)
        preview = await _preview(scope.desk, enterprise, content)
    except (DownloadRefusedError, FileRefusedError) as refusal:
        return import_card(enterprise, errors={"form": refusal.message}, personal=scope.personal)
    key = scope.desk.shelf.put(enterprise.id, name, content)
    return preview_card(enterprise, preview, file_name=name, upload=key)


async def _sheet_of(
    desk: BulkDesk, enterprise: EnterpriseView, form: ApplyImport | PreviewFile
) -> tuple[str, bytes] | None:
    """The file a preview card is about: kept on the shelf, or pasted in its box."""
    if form.upload:
        return desk.shelf.get(form.upload, enterprise.id)
    return "Pasted sheet", _pasted(form)


@router.action(PreviewFile)
async def preview_file(turn: EnterpriseTurn, data: PreviewFile, enterprise: EnterpriseView) -> Card:
    """Every row of the preview, as a file."""
    scope = current_scope()
    if not scope.personal:
        return notice_card("That could not be done", PERSONAL_ONLY, ent=enterprise.id)
    try:
        sheet = await _sheet_of(scope.desk, enterprise, data)
    except ValidationError as refusal:
        return import_card(enterprise, errors={"sheet": refusal.message}, personal=True)
    if sheet is None:
        return import_card(enterprise, errors={"form": FILE_GONE}, personal=True)
    name, content = sheet
    preview = await _preview(scope.desk, enterprise, content)
    await scope.desk.offer_file(
        scope.context,
        enterprise.id,
        f"switchboard-preview-{_today()}.csv",
        preview_csv(preview),
        f"Every row of {name} with what it would change, or why it is rejected.",
    )
    return preview_card(
        enterprise,
        preview,
        file_name=name,
        sheet=data.sheet,
        upload=data.upload,
        success="The full list is on its way as a file.",
    )


async def _apply_refused(turn: EnterpriseTurn, form: ApplyImport, errors: dict[str, str]) -> Card:
    message = errors.get("sheet") or next(iter(errors.values()), "")
    return import_card(
        turn.enterprise, sheet=form.sheet[:MAX_PASTE], errors={"sheet": message}, personal=True
    )


@router.action(ApplyImport, form=_apply_refused)
async def apply_import(turn: EnterpriseTurn, form: ApplyImport, enterprise: EnterpriseView) -> Card:
    """Apply a preview that is still current, in the background; a stale one is refused with
    the preview as it stands now, a second press shows the first one's import."""
    scope = current_scope()
    desk = scope.desk
    sheet = await _sheet_of(desk, enterprise, form)
    if sheet is None:
        return import_card(enterprise, errors={"form": FILE_GONE}, personal=scope.personal)
    name, content = sheet
    file_name = form.file_name or name
    try:
        # Through the turn's own services: their database carries the delivery's claim, so a
        # redelivery of this Apply gets this answer (bot/steps/ledger.py).
        import_id = await Bulk.of(turn.services).start(
            turn.actor, enterprise.id, content, form.token, file_name
        )
    except StalePreviewError:
        preview = await _preview(desk, enterprise, content)
        return preview_card(
            enterprise,
            preview,
            file_name=file_name,
            sheet=form.sheet,
            upload=form.upload,
            notice="The directory or the sheet changed after that preview, so nothing was "
            "applied. This is the preview as it stands now: check it, then press Apply again.",
        )
    except AlreadyAppliedError as already:
        return await _import_card(
            desk,
            enterprise,
            already.import_id,
            notice=f"This preview is already applied (import {already.import_id}): nothing "
            "was applied twice. Here is how it went.",
        )
    start = await desk.bulk.progress(import_id)
    # The background sends the progress card (retried if the Bot Connector is busy) and keeps
    # its id to update it.
    desk.launch(import_id, enterprise, file_name, scope.reference)
    changing = start.total - start.rejected - start.unchanged
    return notice_card(
        "Import started",
        f"Applying {changing} rows of {file_name} (import {import_id}). The card below shows "
        "the progress; the result comes as a card and a file.",
        ent=enterprise.id,
    )


async def _import_card(
    desk: BulkDesk, enterprise: EnterpriseView, import_id: int, *, notice: str | None = None
) -> Card:
    progress = await desk.bulk.progress(import_id)
    if progress.enterprise_id != enterprise.id:
        raise NotFoundError("That import does not exist (any more).")
    file_name = await _file_name(desk, import_id)
    if not progress.finished and notice is None:
        return progress_card(enterprise, progress, file_name=file_name)
    failures = await failed_rows(desk.bulk, import_id)
    return result_card(enterprise, progress, failures, file_name=file_name, notice=notice)


async def _file_name(desk: BulkDesk, import_id: int) -> str:
    async with desk.services.db.unit_of_work(readonly=True) as uow:
        record = await uow.session.get(BulkImport, import_id)
        return record.file_name if record is not None else ""


@router.action(ImportRef)
async def show_import(turn: EnterpriseTurn, data: ImportRef, enterprise: EnterpriseView) -> Card:
    """How far an import has got, or how it ended."""
    return await _import_card(current_scope().desk, enterprise, data.import_id)


@router.action(ImportResultFile)
async def result_file(
    turn: EnterpriseTurn, data: ImportResultFile, enterprise: EnterpriseView
) -> Card:
    """Each row of an import with its result, as a file."""
    scope = current_scope()
    card = await _import_card(scope.desk, enterprise, data.import_id)
    if not scope.personal:
        return notice_card("That could not be done", PERSONAL_ONLY, ent=enterprise.id)
    await scope.desk.offer_file(
        scope.context,
        enterprise.id,
        result_file_name(data.import_id),
        await scope.desk.bulk.result_csv(data.import_id),
        f"Each row of import {data.import_id} with its result.",
        remake=f"{REMAKE_RESULT}{data.import_id}",
    )
    return card


@router.action(FileConsentAnswer)
async def file_consent(
    turn: EnterpriseTurn, data: FileConsentAnswer, enterprise: EnterpriseView
) -> Card:
    """The admin allowed the file (upload it, then show its card) or declined it."""
    scope = current_scope()
    if data.action == "decline":
        await scope.context.send_activity(
            MessageFactory.text(
                "You declined the file, so nothing was saved to your OneDrive. Ask for it again "
                "any time."
            )
        )
        return notice_card("File declined", "Nothing was saved.", ent=enterprise.id)
    kept = scope.desk.kept(data.file, enterprise.id)
    if kept is None:
        kept = await scope.desk.remade(data.file, enterprise.id)
    problem = FILE_GONE if kept is None else None
    if kept is not None and data.action != "accept":
        problem = "Teams sent an answer Switchboard does not know. Ask for the file again."
    if kept is not None and problem is None:
        problem = await scope.desk.upload(data, kept[1])
    if problem is not None:
        await scope.context.send_activity(MessageFactory.text(problem))
        return notice_card("The file was not saved", problem, ent=enterprise.id)
    name = data.name or (kept[0] if kept else "file.csv")
    info = file_info_attachment(name, data.content_url, data.unique_id, data.file_type or "csv")
    await scope.context.send_activity(
        Activity(type=ActivityTypes.message, attachments=[_attachment(info)])
    )
    return notice_card("File saved", f"{name} is in your OneDrive.", ent=enterprise.id)

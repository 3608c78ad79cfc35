"""`switchboard users export|import|resume`: the bulk import for providers, with the same
preview the admins see."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from services.bulk.service import Bulk, read_result, template
from services.bulk.values import ImportProgress, Preview
from services.container import Services
from services.errors import ValidationError
from services.views import Actor

EnterpriseIdOf = Callable[[Services, str], Awaitable[int]]


def describe_preview(preview: Preview, name: str = "the file", limit: int = 50) -> list[str]:
    """The preview as lines of text: the counts, the notes, every rejected row, the first
    changes; and the token that applies this very preview."""
    lines = [f"Preview of {name}: {preview.summary()}."]
    lines += [f"note: {note}" for note in preview.notes]
    lines += [f"rejected\tline {row.line}\t{row.email}\t{row.reason}" for row in preview.rejected]
    changing = preview.changing
    for row in changing[:limit]:
        lines.append(f"{row.action.value}\tline {row.line}\t{row.email}\t{'; '.join(row.changes)}")
    if len(changing) > limit:
        lines.append(f"... and {len(changing) - limit} more changes.")
    lines.append(f"token {preview.token}")
    return lines


def describe_progress(progress: ImportProgress) -> str:
    """One line on how an apply ended (or how far it got)."""
    return f"Import {progress.import_id}: {progress.summary()}"


async def _read(path: str) -> bytes:
    try:
        return await asyncio.to_thread(Path(path).read_bytes)
    except OSError as error:
        raise ValidationError(f"Cannot read {path}: {error.strerror or error}.") from None


async def _write(path: str, data: bytes) -> None:
    try:
        await asyncio.to_thread(Path(path).write_bytes, data)
    except OSError as error:
        raise ValidationError(f"Cannot write {path}: {error.strerror or error}.") from None


def add_users_commands(groups: Any, operator: Actor, enterprise_id_of: EnterpriseIdOf) -> None:
    """Register `users export`, `users import` and `users resume` on the command line."""

    async def users_export(services: Services, args: argparse.Namespace) -> None:
        if args.template:
            await _write(args.file, template())
            print(f"Wrote the blank template to {args.file}.")
            return
        if not args.tenant_id:
            raise ValidationError("Give --tenant-id, or --template for the blank template.")
        enterprise_id = await enterprise_id_of(services, args.tenant_id)
        data = await Bulk.of(services).export(enterprise_id)
        await _write(args.file, data)
        print(f"Exported {len(read_result(data))} users to {args.file}.")

    async def users_import(services: Services, args: argparse.Namespace) -> None:
        enterprise_id = await enterprise_id_of(services, args.tenant_id)
        data = await _read(args.file)
        bulk = Bulk.of(services)
        preview = await bulk.preview(enterprise_id, data)
        for line in describe_preview(preview, args.file, args.show):
            print(line)
        if not args.apply:
            print("Nothing was changed. Run again with --apply to apply the rows not rejected.")
            return
        if args.token and args.token != preview.token:
            print("The preview changed since the token you gave; nothing was applied.")
            raise ValidationError(
                "The directory or the file changed after that preview, so nothing was "
                "applied. Look at the preview above, then apply with its token."
            )
        if not preview.changing:
            print("Nothing to apply.")
            return
        import_id = await bulk.start(
            operator, enterprise_id, data, preview.token, Path(args.file).name
        )
        print(f"Applying import {import_id}...", flush=True)
        progress = await bulk.run(import_id)
        await _finish(bulk, progress, args.result)

    async def users_resume(services: Services, args: argparse.Namespace) -> None:
        enterprise_id = await enterprise_id_of(services, args.tenant_id)
        bulk = Bulk.of(services)
        unfinished = await bulk.unfinished(enterprise_id)
        if not unfinished:
            print("No import of this enterprise was interrupted.")
        for import_id in unfinished:
            print(f"Resuming import {import_id}...", flush=True)
            await _finish(bulk, await bulk.run(import_id), args.result)

    async def _finish(bulk: Bulk, progress: ImportProgress, result: str | None) -> None:
        print(describe_progress(progress))
        if result:
            await _write(result, await bulk.result_csv(progress.import_id))
            print(f"Wrote each row's result to {result}.")

    users = groups.add_parser("users", help="many users at once, from and to a spreadsheet")
    actions = users.add_subparsers(dest="action", required=True)
    export = actions.add_parser("export", help="write the directory (or --template) as CSV")
    export.add_argument("--tenant-id", required=False, default="")
    export.add_argument("--template", action="store_true", help="the blank template instead")
    export.add_argument("file", metavar="FILE")
    export.set_defaults(run=users_export)
    imp = actions.add_parser(
        "import", help="preview a CSV of users; --apply applies the rows not rejected"
    )
    imp.add_argument("--tenant-id", required=True)
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--apply", action="store_true", help="apply after printing the preview")
    imp.add_argument("--token", default="", help="apply only if the preview still has this token")
    imp.add_argument("--result", metavar="FILE", help="write each row's result to this CSV")
    imp.add_argument(
        "--show", type=int, default=50, metavar="N", help="how many changes to print (50)"
    )
    imp.set_defaults(run=users_import)
    resume = actions.add_parser("resume", help="finish imports an interruption cut short")
    resume.add_argument("--tenant-id", required=True)
    resume.add_argument("--result", metavar="FILE", help="write each row's result to this CSV")
    resume.set_defaults(run=users_resume)

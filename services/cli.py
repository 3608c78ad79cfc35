"""`switchboard`: the service provider's console command for enterprises, numbers, licences
and admins. Bad input gets one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from services.bulk.cli import add_users_commands
from services.config import Settings, SettingsError
from services.container import Services, open_services
from services.domain import AdminRole, DigitMatch, DirectorySort, LicenceProduct, RingStrategy
from services.enterprises import parse_extension_range
from services.errors import DomainError, NotFoundError
from services.graph.preflight import PreflightFailed, preflight
from services.pbx.staticconf import EnterpriseDialplan, static_files
from services.phone import pretty
from services.views import Actor

logger = logging.getLogger("switchboard")

OPERATOR = Actor("cli", "Operator (switchboard CLI)", AdminRole.SERVICE_PROVIDER, None)
ROLES = {
    "global-admin": AdminRole.GLOBAL_ADMIN,
    "enterprise-admin": AdminRole.ENTERPRISE_ADMIN,
    "service-provider": AdminRole.SERVICE_PROVIDER,
}

Command = Callable[[Services, argparse.Namespace], Awaitable[None]]


class UsageError(Exception):
    """Input the command line itself refuses."""


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"“{text}” is not a whole number of 0 or more")
    return int(text)


async def _enterprise_id(services: Services, tenant_id: str) -> int:
    enterprise = await services.enterprises.by_tenant(tenant_id)
    if enterprise is None:
        raise NotFoundError(
            f"No enterprise has tenant id {tenant_id}; `switchboard enterprise list` shows them."
        )
    return enterprise.id


async def enterprise_create(services: Services, args: argparse.Namespace) -> None:
    """Register an enterprise."""
    view = await services.enterprises.create(
        OPERATOR,
        name=args.name,
        tenant_id=args.tenant_id,
        main_number=args.main_number,
        extensions=parse_extension_range(args.extensions),
        region=args.region or services.settings.default_phone_region,
        consent=args.consent,
    )
    print(
        f"Created {view.name} (tenant {view.tenant_id}), main number {pretty(view.main_number)}, "
        f"extensions {view.extension_start}-{view.extension_end}."
    )


async def enterprise_list(services: Services, args: argparse.Namespace) -> None:
    """List every enterprise."""
    for view in await services.enterprises.all():
        automatic = "automatic sync" if view.syncs_automatically else "manual sync"
        print(
            f"{view.tenant_id}\t{view.name}\t{view.main_number}\t"
            f"{view.extension_start}-{view.extension_end}\t{automatic}"
        )


async def enterprise_consent(services: Services, args: argparse.Namespace) -> None:
    """Record the enterprise's "Allow Management by Service Provider" consent."""
    enterprise_id = await _enterprise_id(services, args.tenant_id)
    view = await services.enterprises.set_consent(OPERATOR, enterprise_id, args.state == "on")
    state = "allowed" if view.sp_management_consent else "not allowed"
    print(f"{view.name}: management by service provider {state}.")


async def enterprise_voice_routing(services: Services, args: argparse.Namespace) -> None:
    """Name the voice routing policy the enterprise's calling users get in Teams."""
    enterprise_id = await _enterprise_id(services, args.tenant_id)
    name = await services.enterprises.set_voice_routing_policy(
        OPERATOR, enterprise_id, None if args.default else args.name
    )
    if name is None:
        print("Voice routing policy: the provider's default (VOICE_ROUTING_POLICY).")
    else:
        print(f"Voice routing policy: “{name}” (its id is looked up in the tenant at each sync).")


async def numbers_import(services: Services, args: argparse.Namespace) -> None:
    """Add numbers to an enterprise's inventory from a range or a CSV file."""
    enterprise_id = await _enterprise_id(services, args.tenant_id)
    if args.csv:
        try:
            text = await asyncio.to_thread(Path(args.csv).read_text, encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"cannot read {args.csv}: {error.__class__.__name__}") from None
        report = await services.inventory.import_csv(OPERATOR, enterprise_id, text)
    else:
        first, last = args.range
        report = await services.inventory.import_range(OPERATOR, enterprise_id, first, last)
    print(f"Added {report.added} numbers; {report.already_present} were already in the inventory.")


async def numbers_free(services: Services, args: argparse.Namespace) -> None:
    """Search the free numbers by digits."""
    enterprise_id = await _enterprise_id(services, args.tenant_id)
    match = DigitMatch.CONTAINS if args.contains else DigitMatch.ENDS_WITH
    page = await services.inventory.search_free(
        enterprise_id, args.digits, match=match, page=args.page, page_size=args.page_size
    )
    for number in page.items:
        print(number)
    print(f"page {page.page} of {page.pages}, {page.total} free numbers match", file=sys.stderr)


async def licences_set(services: Services, args: argparse.Namespace) -> None:
    """Set the size of an enterprise's licence pools."""
    if args.essentials is None and args.basic is None:
        raise UsageError("give --essentials N, --basic N, or both")
    enterprise_id = await _enterprise_id(services, args.tenant_id)
    for product, total in (
        (LicenceProduct.ESSENTIALS, args.essentials),
        (LicenceProduct.BASIC, args.basic),
    ):
        if total is not None:
            await services.licences.set_pool(OPERATOR, enterprise_id, product, total)
    for pool in await services.licences.pools(enterprise_id):
        print(f"{pool.product.label}: {pool.used} of {pool.total} in use, {pool.free} free")


async def admin_grant(services: Services, args: argparse.Namespace) -> None:
    """Give a Teams user (by Entra object id) a role in the bot."""
    role = ROLES[args.role]
    enterprise_id = None
    if role is not AdminRole.SERVICE_PROVIDER:
        if not args.tenant_id:
            raise UsageError(f"--tenant-id is required for the role {args.role}")
        enterprise_id = await _enterprise_id(services, args.tenant_id)
    view = await services.enterprises.grant(
        OPERATOR,
        aad_object_id=args.aad_object_id,
        role=role,
        enterprise_id=enterprise_id,
        display_name=args.name,
    )
    print(
        f"{view.display_name or view.aad_object_id} is now {args.role}"
        + (f" of {args.tenant_id}." if enterprise_id else " for every enterprise.")
    )


async def directory_list(services: Services, args: argparse.Namespace) -> None:
    """Print the directory of users."""
    enterprise_id = await _enterprise_id(services, args.tenant_id)
    page = await services.directory.page(
        enterprise_id,
        search=args.search,
        sort=DirectorySort(args.sort),
        descending=args.desc,
        page=args.page,
        page_size=args.page_size,
    )
    print("name\temail\tnumber\textension\tlicence\tstatus")
    for user in page.items:
        print(
            "\t".join(
                [
                    user.display_name,
                    user.email,
                    user.number or "-",
                    str(user.extension) if user.extension is not None else "-",
                    user.licence.label if user.licence else "-",
                    user.status.value,
                ]
            )
        )
    print(f"page {page.page} of {page.pages}, {page.total} users", file=sys.stderr)


def _differences(items: Sequence[object]) -> str:
    return f"{len(items)} difference" + ("" if len(items) == 1 else "s")


async def pbx_reconcile(services: Services, args: argparse.Namespace) -> None:
    """Compare an enterprise's PBX configuration with the directory; --fix repairs the drift."""
    enterprise_id = await _enterprise_id(services, args.tenant_id)
    reconciler = services.pbx.reconciler
    report = await (reconciler.fix if args.fix else reconciler.check)(enterprise_id)
    print(f"Checked {report.lines_checked} lines on the {services.pbx.backend.name} PBX.")
    for drift in report.drift:
        print(f"drift\t{drift.kind.value}\t{drift.detail}")
    if report.waiting_changes:
        print(
            f"{report.waiting_changes} changes are still on their way to the PBX; "
            "drift they cover goes away when they land.",
            file=sys.stderr,
        )
    if not report.drift:
        print("No drift: the PBX matches the directory.")
    elif report.remaining is None:
        print(f"{_differences(report.drift)} found. Run again with --fix to repair them.")
    elif not report.remaining:
        print(f"Repaired {_differences(report.drift)}; the PBX now matches the directory.")
    else:
        print(f"{_differences(report.remaining)} remain after the repair:")
        for drift in report.remaining:
            print(f"remaining\t{drift.kind.value}\t{drift.detail}")


def _write_private_files(out: Path, files: dict[str, str]) -> list[Path]:
    """Write the files readable by their owner only (res_pgsql.conf holds a password)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = out / name
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        written.append(path)
    return written


async def pbx_config(services: Services, args: argparse.Namespace) -> None:
    """Write the static Asterisk configuration for the enterprises in the directory."""
    settings = services.settings
    if not settings.pbx_database_url:
        raise UsageError("PBX_DATABASE_URL must name Asterisk's realtime database")
    enterprises = [
        EnterpriseDialplan(view.id, view.name, view.region)
        for view in await services.enterprises.all()
    ]
    files = static_files(
        settings.pbx_trunks, settings.pbx_sip_realm, settings.pbx_database_url, enterprises
    )
    for path in await asyncio.to_thread(_write_private_files, Path(args.out), files):
        print(f"wrote {path}")
    print(
        f"Static configuration for {len(enterprises)} enterprises. Copy the files into "
        "Asterisk's configuration directory, then run `core reload` (docs/PBX_SETUP.md)."
    )


async def huntgroup_create(services: Services, args: argparse.Namespace) -> None:
    """Create a hunt group, optionally with its extension, number and ring strategy."""
    enterprise_id = await _enterprise_id(services, args.tenant_id)
    view = await services.hunt_groups.create(
        OPERATOR,
        enterprise_id,
        args.name,
        extension=args.extension,
        number=args.number,
        strategy=args.strategy,
    )
    print(f"Created hunt group {view.name} ({view.queue}), reached at {view.reached_at}.")


async def huntgroup_configure(services: Services, args: argparse.Namespace) -> None:
    """Set a hunt group's extension, number and ring strategy."""
    enterprise_id = await _enterprise_id(services, args.tenant_id)
    group = next(
        (g for g in await services.hunt_groups.all(enterprise_id) if g.name == args.name), None
    )
    if group is None:
        raise NotFoundError(f"No hunt group called {args.name} in this enterprise.")
    view = await services.hunt_groups.configure(
        OPERATOR,
        enterprise_id,
        group.id,
        extension=args.extension if args.extension is not None else group.extension,
        number=args.number if args.number is not None else group.number,
        strategy=args.strategy or group.strategy,
    )
    print(f"Hunt group {view.name} is reached at {view.reached_at} ({view.strategy.label}).")


async def huntgroup_list(services: Services, args: argparse.Namespace) -> None:
    """List an enterprise's hunt groups."""
    enterprise_id = await _enterprise_id(services, args.tenant_id)
    for group in await services.hunt_groups.all(enterprise_id):
        print(
            f"{group.name}\t{group.queue}\t{group.reached_at}\t{group.strategy.value}\t"
            f"{group.members} members"
        )


async def graph_check(services: Services, args: argparse.Namespace) -> None:
    """Check a tenant is ready for the sync: sign-in, permissions, domains, licences, policy."""
    settings = services.settings.graph
    graph = services.graph
    if graph is None or not settings.credential_for(args.tenant_id):
        raise UsageError(
            "no Graph credentials: set GRAPH_CLIENT_ID and GRAPH_CLIENT_SECRET "
            "(or GRAPH_TENANT_CREDENTIALS)"
        )
    checks = await preflight(graph, settings, args.tenant_id)
    for check in checks:
        print(check.line())
    failed = sum(not check.ok for check in checks)
    if failed:
        raise PreflightFailed(
            f"{failed} of {len(checks)} checks failed; fix them and run the check again."
        )


async def worker(services: Services, args: argparse.Namespace) -> None:
    """Run the sync workers and the PBX pusher until SIGTERM or SIGINT, beside the bots (any
    number of these share the work through PostgreSQL; docs/SCALING.md)."""
    logging.basicConfig(
        level=services.settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if services.graph is None:
        logger.warning("Microsoft Graph is not configured: syncs wait and become overdue")
    engines = services.sync_workers()
    pusher = asyncio.create_task(services.pbx.pusher.run_forever(stop))
    try:
        for engine in engines:
            await engine.start()
        logger.info("%d sync workers and the PBX pusher are running", len(engines))
        await stop.wait()
    finally:
        # Items a worker holds go back to the queue: another worker or bot takes them.
        for engine in engines:
            await engine.stop()
        stop.set()
        await pusher


async def db_upgrade(services: Services, args: argparse.Namespace) -> None:
    """The schema is migrated on opening; say so."""
    print("The database schema is up to date.")


def build_parser() -> argparse.ArgumentParser:
    """The command line, with --help on every level."""
    parser = argparse.ArgumentParser(
        prog="switchboard",
        description="Switchboard operator commands. The database comes from DATABASE_URL.",
    )
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")

    db = groups.add_parser("db", help="database schema").add_subparsers(
        dest="action", required=True
    )
    db.add_parser("upgrade", help="migrate the schema to the newest version").set_defaults(
        run=db_upgrade
    )

    ent = groups.add_parser("enterprise", help="create and list enterprises")
    ent_actions = ent.add_subparsers(dest="action", required=True)
    create = ent_actions.add_parser("create", help="register an enterprise (an Entra tenant)")
    create.add_argument("--name", required=True)
    create.add_argument("--tenant-id", required=True, help="the enterprise's Entra tenant id")
    create.add_argument("--main-number", required=True, help="the company's main number")
    create.add_argument("--extensions", required=True, help="extension range, e.g. 1000-1999")
    create.add_argument(
        "--region",
        default=None,
        help="country for numbers typed without + (default: DEFAULT_PHONE_REGION, GB)",
    )
    create.add_argument(
        "--consent",
        action="store_true",
        help="the enterprise allows management by the service provider",
    )
    create.set_defaults(run=enterprise_create)
    ent_actions.add_parser("list", help="list enterprises").set_defaults(run=enterprise_list)
    consent = ent_actions.add_parser("consent", help="set 'Allow Management by Service Provider'")
    consent.add_argument("--tenant-id", required=True)
    consent.add_argument("state", choices=["on", "off"])
    consent.set_defaults(run=enterprise_consent)
    routing = ent_actions.add_parser(
        "voice-routing", help="name the Teams voice routing policy of the enterprise's users"
    )
    routing.add_argument("--tenant-id", required=True)
    chosen = routing.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--name", help="the policy's name as the Teams admin center shows it")
    chosen.add_argument(
        "--default", action="store_true", help="use the provider's VOICE_ROUTING_POLICY"
    )
    routing.set_defaults(run=enterprise_voice_routing)

    numbers = groups.add_parser("numbers", help="the number inventory")
    num_actions = numbers.add_subparsers(dest="action", required=True)
    imp = num_actions.add_parser("import", help="add numbers from a range or a CSV file")
    imp.add_argument("--tenant-id", required=True)
    source = imp.add_mutually_exclusive_group(required=True)
    source.add_argument("--range", nargs=2, metavar=("FIRST", "LAST"))
    source.add_argument("--csv", metavar="FILE", help="one number per line (first column)")
    imp.set_defaults(run=numbers_import)
    free = num_actions.add_parser("free", help="search free numbers by their last digits")
    free.add_argument("--tenant-id", required=True)
    free.add_argument("--digits", default="")
    free.add_argument("--contains", action="store_true", help="match digits anywhere")
    free.add_argument("--page", type=_non_negative, default=1)
    free.add_argument("--page-size", type=_non_negative, default=20)
    free.set_defaults(run=numbers_free)

    lic = groups.add_parser("licences", help="licence pools")
    lic_set = lic.add_subparsers(dest="action", required=True).add_parser(
        "set", help="set how many Essentials and Basic licences the enterprise holds"
    )
    lic_set.add_argument("--tenant-id", required=True)
    lic_set.add_argument("--essentials", type=_non_negative)
    lic_set.add_argument("--basic", type=_non_negative)
    lic_set.set_defaults(run=licences_set)

    adm = groups.add_parser("admin", help="who may use the bot")
    grant = adm.add_subparsers(dest="action", required=True).add_parser(
        "grant", help="give a Teams user a role"
    )
    grant.add_argument("--aad-object-id", required=True, help="the person's Entra object id")
    grant.add_argument("--role", required=True, choices=sorted(ROLES))
    grant.add_argument("--tenant-id", help="the enterprise (not for service-provider)")
    grant.add_argument("--name", default="", help="display name, for the audit log")
    grant.set_defaults(run=admin_grant)

    lst = groups.add_parser("directory", help="list an enterprise's users")
    lst.add_argument("--tenant-id", required=True)
    lst.add_argument("--search", default="")
    lst.add_argument("--sort", choices=[s.value for s in DirectorySort], default="name")
    lst.add_argument("--desc", action="store_true")
    lst.add_argument("--page", type=_non_negative, default=1)
    lst.add_argument("--page-size", type=_non_negative, default=50)
    lst.set_defaults(run=directory_list)

    pbx = groups.add_parser("pbx", help="the PBX (PBX_BACKEND, PBX_DATABASE_URL)")
    pbx_actions = pbx.add_subparsers(dest="action", required=True)
    reconcile = pbx_actions.add_parser(
        "reconcile", help="compare the PBX with the directory and report (or --fix) drift"
    )
    reconcile.add_argument("--tenant-id", required=True)
    reconcile.add_argument(
        "--fix", action="store_true", help="repair the drift so the PBX matches the directory"
    )
    reconcile.set_defaults(run=pbx_reconcile)
    config = pbx_actions.add_parser(
        "config", help="write the static Asterisk configuration (trunks, contexts, realtime)"
    )
    config.add_argument("--out", required=True, help="the directory to write the files into")
    config.set_defaults(run=pbx_config)

    hunt = groups.add_parser("huntgroups", help="hunt groups: their numbers and ring strategy")
    hunt_actions = hunt.add_subparsers(dest="action", required=True)
    strategies = [s.value for s in RingStrategy]
    hunt_create = hunt_actions.add_parser("create", help="create a hunt group")
    hunt_create.add_argument("--tenant-id", required=True)
    hunt_create.add_argument("--name", required=True)
    hunt_create.add_argument("--extension", help="the extension that rings the group")
    hunt_create.add_argument("--number", help="a free direct number that rings the group")
    hunt_create.add_argument("--strategy", choices=strategies, default="ringall")
    hunt_create.set_defaults(run=huntgroup_create)
    hunt_conf = hunt_actions.add_parser("configure", help="change a group's numbers or strategy")
    hunt_conf.add_argument("--tenant-id", required=True)
    hunt_conf.add_argument("--name", required=True)
    hunt_conf.add_argument("--extension", help="the new extension ('' for none)")
    hunt_conf.add_argument("--number", help="the new direct number ('' for none)")
    hunt_conf.add_argument("--strategy", choices=strategies)
    hunt_conf.set_defaults(run=huntgroup_configure)
    hunt_list = hunt_actions.add_parser("list", help="list the hunt groups")
    hunt_list.add_argument("--tenant-id", required=True)
    hunt_list.set_defaults(run=huntgroup_list)

    graph = groups.add_parser("graph", help="Microsoft Graph (GRAPH_* settings)")
    check = graph.add_subparsers(dest="action", required=True).add_parser(
        "check", help="check a tenant is ready for the sync, one line per check with the fix"
    )
    check.add_argument("--tenant-id", required=True, help="the enterprise's Entra tenant id")
    check.set_defaults(run=graph_check)
    groups.add_parser(
        "worker", help="run sync workers and the PBX pusher until stopped (SIGTERM, Ctrl-C)"
    ).set_defaults(run=worker)
    add_users_commands(groups, OPERATOR, _enterprise_id)
    return parser


async def _run(args: argparse.Namespace, settings: Settings) -> None:
    services = await open_services(settings)
    try:
        command: Command = args.run
        await command(services, args)
    finally:
        await services.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `switchboard` console command: the settings are read and checked
    once, then the command runs on the services built from them."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        for problem in error.problems:
            print(f"switchboard: error: {problem}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_run(args, settings))
    except (DomainError, UsageError) as error:
        message = error.message if isinstance(error, DomainError) else str(error)
        print(f"switchboard: error: {message}", file=sys.stderr)
        return 2
    except (OSError, ConnectionError) as error:
        print(
            f"switchboard: error: cannot reach the database ({error.__class__.__name__})",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

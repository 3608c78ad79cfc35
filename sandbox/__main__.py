"""Run the sandbox standalone: `python -m sandbox --seed sandbox/demo_seed.json`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sandbox.config import FaultConfig, SandboxConfig, ThrottleLimits
from sandbox.server import SandboxServer

DEFAULT_GRAPH_PORT = 7440
DEFAULT_TOKEN_PORT = 7441


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m sandbox`."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Local Microsoft Graph (http) and Entra token endpoint (https).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--graph-port", type=int, default=DEFAULT_GRAPH_PORT, help="0 = any")
    parser.add_argument("--token-port", type=int, default=DEFAULT_TOKEN_PORT, help="0 = any")
    parser.add_argument(
        "--state-dir", type=Path, default=Path("var/sandbox"), help="folder for the CA file"
    )
    parser.add_argument("--seed", type=Path, help="seed document (JSON) with tenants to load")
    parser.add_argument("--token-lifetime", type=int, default=3600, help="seconds")
    parser.add_argument(
        "--operation-delay", type=float, default=1.0, help="seconds a number order takes"
    )
    faults = parser.add_argument_group("faults (shares of Graph requests, 0..1)")
    faults.add_argument("--fault-503", type=float, default=0.0, dest="unavailable_rate")
    faults.add_argument("--fault-slow", type=float, default=0.0, dest="slow_rate")
    faults.add_argument("--fault-drop", type=float, default=0.0, dest="drop_rate")
    faults.add_argument("--slow-seconds", type=float, default=2.0)
    faults.add_argument("--retry-after", type=int, default=1, help="Retry-After of 503s")
    faults.add_argument("--fault-seed", type=int, default=0)
    limits = parser.add_argument_group("throttle (writes per sliding window)")
    limits.add_argument("--app-write-limit", type=int, default=ThrottleLimits.app_write_limit)
    limits.add_argument("--app-write-window", type=float, default=ThrottleLimits.app_write_window)
    limits.add_argument("--tenant-write-limit", type=int, default=ThrottleLimits.tenant_write_limit)
    limits.add_argument(
        "--tenant-write-window", type=float, default=ThrottleLimits.tenant_write_window
    )
    strict = parser.add_argument_group("how strictly Graph's habits are played")
    strict.add_argument(
        "--wrap-entities",
        action="store_true",
        help='answer userConfigurations/{id} and operations/{id} as {"value": {...}}',
    )
    strict.add_argument(
        "--teams-setup-delay",
        type=float,
        default=0.0,
        help="seconds after a Teams licence until Teams knows the user",
    )
    strict.add_argument(
        "--batch-424",
        action="store_true",
        help="answer a batch holding a throttled request with a 424 envelope",
    )
    parser.add_argument("--quiet", action="store_true", help="no access log")
    return parser


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    """The sandbox settings the command line asks for."""
    return SandboxConfig(
        token_lifetime_seconds=args.token_lifetime,
        operation_delay_seconds=args.operation_delay,
        wrap_entities=args.wrap_entities,
        teams_setup_delay_seconds=args.teams_setup_delay,
        batch_failed_dependency=args.batch_424,
        throttle=ThrottleLimits(
            app_write_limit=args.app_write_limit,
            app_write_window=args.app_write_window,
            tenant_write_limit=args.tenant_write_limit,
            tenant_write_window=args.tenant_write_window,
        ),
        faults=FaultConfig(
            unavailable_rate=args.unavailable_rate,
            slow_rate=args.slow_rate,
            drop_rate=args.drop_rate,
            slow_seconds=args.slow_seconds,
            retry_after_seconds=args.retry_after,
            seed=args.fault_seed,
        ),
    )


def describe(server: SandboxServer) -> str:
    """The lines printed at start-up: where everything is."""
    lines = [
        f"Graph:      {server.graph_url}",
        f"Entra:      {server.authority_host}/<tenant-id>",
        f"CA file:    {server.ca_path}   (export REQUESTS_CA_BUNDLE={server.ca_path})",
        f"Mailbox:    {server.admin_url}/mail",
        f"Admin API:  {server.admin_url}/",
    ]
    for tenant in server.state.tenants():
        lines.append(
            f"Tenant:     {tenant.id} ({tenant.display_name}), "
            f"{len(tenant.users)} users, {len(tenant.skus)} SKUs"
        )
    return "\n".join(lines)


async def serve(args: argparse.Namespace) -> None:
    """Start the sandbox and keep it up until SIGINT or SIGTERM."""
    seed: dict[str, Any] | None = None
    if args.seed is not None:
        seed = json.loads(args.seed.read_text(encoding="utf-8"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with SandboxServer(
        config_from_args(args),
        host=args.host,
        graph_port=args.graph_port,
        token_port=args.token_port,
        state_dir=args.state_dir,
        seed=seed,
        access_log=not args.quiet,
    ) as server:
        print(describe(server), flush=True)
        await stop.wait()
        print("Sandbox stopping.", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m sandbox`."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        asyncio.run(serve(args))
    except (OSError, ValueError) as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`: run every benchmark and print its figures."""

from __future__ import annotations

import asyncio
import sys

from tests.bench import bench_bot, bench_bulk, bench_directory, bench_pbx, bench_sync

SUITES = {
    "directory": bench_directory.run,
    "bot": bench_bot.run,
    "sync": bench_sync.run,
    "pbx": bench_pbx.run,
    "bulk": bench_bulk.run,
}


async def main(names: list[str]) -> None:
    """Run the named suites (all by default) and print their figures as they come."""
    for name, suite in SUITES.items():
        if names and name not in names:
            continue
        print(f"== {name}", flush=True)
        for line in await suite():
            print(f"  {line}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))

"""One sync worker: the escalator, the planner and the runner, driven by one loop."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable

from services.config import Settings
from services.db import Database, is_unreachable
from services.graph import GraphService
from services.graph.shared_pacing import SharedWriteBudget
from services.passwords import PasswordVault
from services.provisioning.escalator import Escalator
from services.provisioning.planner import Planner
from services.provisioning.runner import Runner
from services.provisioning.steps import ProvisioningSteps
from services.retry import run_passes

# One logger for the whole sync, named as it was before the package split.
logger = logging.getLogger("services.provisioning")


class ProvisioningEngine:
    """One worker of the sync: escalates overdue runs, plans runs, runs their items."""

    def __init__(
        self,
        db: Database,
        vault: PasswordVault,
        graph: GraphService | None,
        settings: Settings,
        *,
        worker_id: str | None = None,
        on_notice: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.graph = graph
        self.sync = settings.sync
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.on_notice = on_notice
        self.escalator = Escalator(db, on_notice=self._announce)
        self.planner = Planner(db, settings.later_sync_hours, on_closed=self._announce)
        self.runner: Runner | None = None
        if graph is not None:
            if db.is_postgres and graph.shared_budget is None:
                # Every worker process on every host paces to one budget per app and tenant.
                graph.use_shared_budget(
                    SharedWriteBudget(
                        db,
                        settings.graph.write_limit,
                        settings.graph.write_window_seconds,
                        settings.graph.write_guard_seconds,
                    )
                )
            steps = ProvisioningSteps(db, vault, graph, settings.sync, settings.graph)
            self.runner = Runner(
                db,
                graph,
                steps,
                settings.sync,
                settings.graph,
                self.worker_id,
                on_closed=self._announce,
                on_item_done=self.wake,
            )
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_overdue_check = 0.0

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start working in the background."""
        self._tasks = [
            asyncio.create_task(
                run_passes(
                    self._pass,
                    wake=self._wake,
                    interval=self.sync.poll_seconds,
                    logger=logger,
                    failure="The sync worker's pass failed; it will try again",
                    expected=is_unreachable,
                ),
                name=f"sync-worker {self.worker_id}",
            )
        ]
        if self.runner is not None:
            self._tasks.append(asyncio.create_task(self.runner.heartbeat(), name="sync-heartbeat"))
        logger.info("Sync worker %s started", self.worker_id)

    async def stop(self) -> None:
        """Stop, and hand back the items in hand so the next worker starts on them at once."""
        for task in self._tasks:
            task.cancel()
        for outcome in await asyncio.gather(*self._tasks, return_exceptions=True):
            if isinstance(outcome, Exception):
                logger.error("The sync worker ended with an error", exc_info=outcome)
        self._tasks = []
        if self.runner is not None:
            await self.runner.stop()
        logger.info("Sync worker %s stopped", self.worker_id)

    def wake(self) -> None:
        """Look for work now rather than at the next poll."""
        self._wake.set()

    @property
    def busy(self) -> int:
        """Items being worked on right now."""
        return self.runner.busy if self.runner is not None else 0

    @property
    def items_handled(self) -> int:
        """Items this worker has finished working on (done, failed or put back)."""
        return self.runner.items_handled if self.runner is not None else 0

    def _announce(self) -> None:
        if self.on_notice is not None:
            self.on_notice()

    async def _pass(self) -> None:
        await self.tick()

    # --- one pass --------------------------------------------------------------------------

    async def tick(self) -> int:
        """One pass: overdue runs, automatic runs, planning, claiming. Returns items started."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_overdue_check >= self.sync.overdue_check_seconds:
            self._last_overdue_check = loop.time()
            await self.escalator.check_overdue()
        await self.planner.start_automatic_runs()
        if self.runner is None:
            return 0  # nothing can reach Microsoft: runs wait, and become overdue
        while await self.planner.plan_next_run():
            pass
        await self.planner.close_finished_runs()
        return await self.runner.claim_and_start()

    async def check_overdue(self) -> int:
        """Mark open runs past their promised time and queue a notice to the providers."""
        return await self.escalator.check_overdue()

"""The workers' pass loop: a failing pass is logged and tried again; an outage the worker waits
out (the database unreachable) is one warning line, any other failure an error with its trace."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import text

from services.db import Database, is_unreachable
from services.retry import run_passes

LOGGER = logging.getLogger("tests.retry")


async def _two_failing_passes(error: Exception, caplog: pytest.LogCaptureFixture) -> int:
    stop = asyncio.Event()
    passes = 0

    async def one_pass() -> float:
        nonlocal passes
        passes += 1
        if passes == 2:
            stop.set()
        raise error

    with caplog.at_level(logging.WARNING, logger=LOGGER.name):
        await asyncio.wait_for(
            run_passes(
                one_pass,
                wake=asyncio.Event(),
                interval=0.01,
                logger=LOGGER,
                failure="The pass failed",
                stop=stop,
                expected=is_unreachable,
            ),
            timeout=5,
        )
    return passes


async def _unreachable_error() -> Exception:
    # A PostgreSQL nobody listens on: the driver's own refusal, as an outage raises it.
    db = Database("postgresql+asyncpg://postgres@127.0.0.1:9/none")
    try:
        async with db.unit_of_work(readonly=True) as uow:
            await uow.session.execute(text("SELECT 1"))
    except Exception as error:
        return error
    finally:
        await db.dispose()
    raise AssertionError("a database on port 9 answered")


async def test_an_unreachable_database_is_one_warning_per_pass(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = await _unreachable_error()
    assert is_unreachable(error)
    assert await _two_failing_passes(error, caplog) == 2
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]
    assert all(r.exc_info is None for r in caplog.records)


async def test_any_other_failure_is_an_error_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert await _two_failing_passes(KeyError("bug"), caplog) == 2
    assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.ERROR]
    assert all(r.exc_info is not None for r in caplog.records)


async def test_a_pass_that_swallows_its_cancellation_still_stops_the_worker() -> None:
    started = asyncio.Event()

    async def one_pass() -> float:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise RuntimeError("connection closed") from None  # as a driver cut off mid-call
        return 0.0

    stop = asyncio.Event()  # set at the end only, so that a worker that ignores us ends too
    worker = asyncio.create_task(
        run_passes(
            one_pass,
            wake=asyncio.Event(),
            interval=0.01,
            logger=LOGGER,
            failure="The pass failed",
            stop=stop,
        )
    )
    try:
        await started.wait()
        worker.cancel()
        done, _ = await asyncio.wait([worker], timeout=5)
        assert done == {worker} and worker.cancelled()
    finally:
        stop.set()


async def test_a_worker_cancelled_while_it_tidies_up_its_wait_still_stops() -> None:
    async def one_pass() -> float:
        return 0.0  # wait no time: the worker is mostly tidying up its waits

    # Cancel after 0, 1, 2 ... steps of the event loop: one of them lands while the worker
    # tidies up a wait, where a cancellation used to be taken for the waiter's own.
    for steps in range(16):
        worker = asyncio.create_task(
            run_passes(one_pass, wake=asyncio.Event(), interval=0.01, logger=LOGGER, failure="x")
        )
        for _ in range(steps):
            await asyncio.sleep(0)
        worker.cancel()
        done, _ = await asyncio.wait([worker], timeout=1)
        assert done == {worker} and worker.cancelled(), f"still running, cancelled at {steps}"

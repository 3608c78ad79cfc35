"""How every worker waits: one backoff formula, and one loop that runs a pass and waits.

Backoff doubles from a base up to a cap, then takes off up to a quarter at random, so that
clients that failed together do not retry together, and no wait ever exceeds the cap. The
PBX pusher, the sync's items, the notices and the Graph client all wait this way (a
`Retry-After` from the other side, where there is one, wins over it).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

# The share of a delay that may be taken off at random.
JITTER = 0.25


def backoff_seconds(attempt: int, *, base: float, cap: float) -> float:
    """The wait after `attempt` failures (1 or more): base doubling per attempt, capped, with
    up to JITTER of it taken off at random."""
    ceiling = min(cap, base * 2.0 ** max(attempt - 1, 0))
    return ceiling * random.uniform(1.0 - JITTER, 1.0)


async def run_passes(
    one_pass: Callable[[], Awaitable[float | None]],
    *,
    wake: asyncio.Event,
    interval: float,
    logger: logging.Logger,
    failure: str,
    stop: asyncio.Event | None = None,
    describe: Callable[[Exception], str] | None = None,
    expected: Callable[[Exception], bool] | None = None,
) -> None:
    """Run `one_pass` until `stop` is set (or the task is cancelled), then wait for `wake`,
    `stop`, or the seconds the pass returned (None: `interval`). A pass that fails is logged
    with `failure` and tried again after the interval: the worker outlives a passing fault.
    A failure `expected` recognises (an outage the worker waits out) is one warning line, not
    an error with its traceback."""
    while stop is None or not stop.is_set():
        if cancel_requested():
            # Asked to stop, and whatever awaited last swallowed the CancelledError: stop now.
            raise asyncio.CancelledError
        wake.clear()
        timeout: float | None = interval
        try:
            timeout = await one_pass()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if cancel_requested():
                # The pass turned our cancellation into another error (a driver does, cut off
                # mid-call): stop all the same, or the worker would never end.
                raise asyncio.CancelledError from error
            if expected is not None and expected(error):
                logger.warning("%s: %s", failure, describe(error) if describe else error)
            elif describe is None:
                logger.exception(failure)
            else:
                logger.warning("%s: %s", failure, describe(error))
            timeout = interval
        await _wait_for_either(wake, stop, interval if timeout is None else timeout)


def cancel_requested() -> bool:
    """Whether someone asked the running task to stop."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _wait_for_either(wake: asyncio.Event, stop: asyncio.Event | None, seconds: float) -> None:
    waiters = [asyncio.ensure_future(wake.wait())]
    if stop is not None:
        waiters.append(asyncio.ensure_future(stop.wait()))
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        # Gathered, not awaited one by one under a suppress: a cancellation of this very task
        # arriving here must go on up, not be taken for a waiter's own.
        await asyncio.gather(*waiters, return_exceptions=True)

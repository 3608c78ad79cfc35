"""Per-tenant pacing of Graph writes to the throttle budget.

Graph counts identity writes in a sliding window (3,000 per 150 s per app and tenant). The
pacer mirrors that window on our side, so writes go out as fast as the budget allows and
rarely earn a 429. A write occupies the window from the moment its answer arrives: Graph
admitted it somewhere before that, so our count never runs ahead of Graph's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable


class WritePacer:
    """At most `limit` writes in any `window` seconds, handed out first come, first served."""

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a write budget needs a positive limit and window")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._answered: deque[float] = deque()
        self._in_flight = 0
        self._paused_until = 0.0
        self._turn = asyncio.Lock()
        self._changed = asyncio.Event()
        self.granted = 0
        self.refused = 0

    def _wait_needed(self, now: float) -> float | None:
        """Seconds until one more write fits; 0 when it fits now, None when only an answer helps."""
        horizon = now - self.window
        while self._answered and self._answered[0] <= horizon:
            self._answered.popleft()
        if self._paused_until > now:
            return self._paused_until - now
        used = len(self._answered) + self._in_flight
        if used < self.limit:
            return 0.0
        expiring = used - self.limit + 1
        if expiring > len(self._answered):
            return None
        return self._answered[expiring - 1] + self.window - now

    async def acquire(self) -> None:
        """Wait for room in the budget and take one write's place in it."""
        async with self._turn:
            while True:
                wait = self._wait_needed(self._clock())
                if wait is not None and wait <= 0:
                    self._in_flight += 1
                    self.granted += 1
                    return
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=wait)

    def settle(self) -> None:
        """The write was answered (or may have reached Graph): it counts from now."""
        self._in_flight = max(0, self._in_flight - 1)
        self._answered.append(self._clock())
        self._changed.set()

    def release(self) -> None:
        """The write was refused before Graph counted it (429): its place is free again."""
        self._in_flight = max(0, self._in_flight - 1)
        self.refused += 1
        self._changed.set()

    def pause(self, seconds: float) -> None:
        """Graph asked us to wait: no write leaves before then."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))
        self._changed.set()

    @property
    def rate(self) -> float:
        """The budget in writes per second."""
        return self.limit / self.window

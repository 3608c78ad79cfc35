"""Coalescing single requests into JSON batches (`POST /$batch`, at most 20 requests each).

Callers submit one request and await its own answer; requests submitted close together
travel in one batch. The batcher does not retry: each inner answer, including an inner 429,
goes back to its caller, whose retry loop treats it exactly like a direct answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from services.graph.wire import GraphAnswer, GraphCall

logger = logging.getLogger(__name__)

MAX_BATCH_SIZE = 20

SendBatch = Callable[[list[GraphCall]], Awaitable[list[GraphAnswer]]]


class Batcher:
    """Sends submitted requests in batches of up to `max_size`, several batches at a time."""

    def __init__(
        self,
        send_batch: SendBatch,
        *,
        max_size: int = MAX_BATCH_SIZE,
        linger: float = 0.005,
        max_in_flight: int = 8,
    ) -> None:
        self._send_batch = send_batch
        self._max_size = max(1, min(MAX_BATCH_SIZE, max_size))
        self._linger = max(0.0, linger)
        self._slots = asyncio.Semaphore(max(1, max_in_flight))
        self._queue: list[tuple[GraphCall, asyncio.Future[GraphAnswer]]] = []
        self._ready = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self.batches_sent = 0

    async def submit(self, call: GraphCall) -> GraphAnswer:
        """Send `call` in the next batch and return its own answer."""
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_forever(), name="graph-batcher")
        future: asyncio.Future[GraphAnswer] = asyncio.get_running_loop().create_future()
        self._queue.append((call, future))
        self._ready.set()
        return await future

    async def close(self) -> None:
        """Stop sending; requests still queued fail with CancelledError."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        for task in list(self._sending):
            task.cancel()
        for _, future in self._queue:
            future.cancel()
        self._queue.clear()

    async def _flush_forever(self) -> None:
        while True:
            await self._ready.wait()
            if len(self._queue) < self._max_size and self._linger:
                # Let the requests submitted in the same moment join this batch.
                await asyncio.sleep(self._linger)
            await self._slots.acquire()
            chunk, self._queue = self._queue[: self._max_size], self._queue[self._max_size :]
            if not self._queue:
                self._ready.clear()
            if not chunk:
                self._slots.release()
                continue
            task = asyncio.create_task(self._send(chunk))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, chunk: list[tuple[GraphCall, asyncio.Future[GraphAnswer]]]) -> None:
        try:
            live = [(call, future) for call, future in chunk if not future.done()]
            if not live:
                return
            self.batches_sent += 1
            try:
                answers = await self._send_batch([call for call, _ in live])
            except asyncio.CancelledError:
                for _, future in live:
                    future.cancel()
                raise
            except Exception as error:
                for _, future in live:
                    if not future.done():
                        future.set_exception(error)
                return
            for (_, future), answer in zip(live, answers, strict=True):
                if not future.done():
                    future.set_result(answer)
        finally:
            self._slots.release()

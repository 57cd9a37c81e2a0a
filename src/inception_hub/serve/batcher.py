"""Dynamic batching: concurrent requests share one forward pass.

Requests queue their images; a collector takes up to `max_batch` images, waiting at most
`timeout_ms` after the first one for others to arrive, and hands the batch to one of `workers`
inference threads (TensorFlow releases the GIL, so they overlap). The queue is bounded in images:
past `max_queue` a request is refused at once (HTTP 429 / RESOURCE_EXHAUSTED) instead of
growing memory without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


class Overloaded(Exception):
    """The queue is full: the client should back off and retry."""


class ShuttingDown(Exception):
    """The server is draining and takes no new work."""


@dataclass
class _Item:
    images: np.ndarray
    future: asyncio.Future


class Batcher:
    """Batches calls of `fn(images [N,H,W,3]) -> [N, D]` across concurrent `submit`s."""

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        executor: ThreadPoolExecutor,
        *,
        max_batch: int = 32,
        timeout_ms: float = 5.0,
        max_queue: int = 1024,
        workers: int = 1,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.fn = fn
        self.executor = executor
        self.max_batch = max_batch
        self.timeout = timeout_ms / 1000.0
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._queued_images = 0
        self._slots = asyncio.Semaphore(workers)
        self._inflight: set[asyncio.Task] = set()
        self._closing = False
        self._collector = asyncio.get_running_loop().create_task(self._collect())

    @property
    def queue_depth(self) -> int:
        """Images waiting for a batch."""
        return self._queued_images

    def reserve(self, n: int) -> int:
        """Hold queue room for `n` images that are still being decoded (Overloaded if there is
        none), so a request is refused before the work of decoding it. Returns `n`; give it to
        `submit`, or back with `release` if the images never come."""
        if self._closing:
            raise ShuttingDown("the server is shutting down")
        if self._queued_images + n > self.max_queue:
            raise Overloaded(f"queue full ({self._queued_images} images waiting, limit {self.max_queue}); retry later")
        self._queued_images += n
        return n

    def release(self, n: int) -> None:
        self._queued_images -= n

    async def submit(self, images: np.ndarray, reserved: int = 0) -> np.ndarray:
        if self._closing:
            raise ShuttingDown("the server is shutting down")
        n = len(images)
        extra = n - reserved  # images not yet counted by a reservation
        if extra > 0 and self._queued_images + extra > self.max_queue:
            raise Overloaded(f"queue full ({self._queued_images} images waiting, limit {self.max_queue}); retry later")
        self._queued_images += extra
        # Larger requests are split so one batch never exceeds max_batch.
        chunks = [images[i : i + self.max_batch] for i in range(0, n, self.max_batch)] or [images]
        futures = []
        for chunk in chunks:
            fut = asyncio.get_running_loop().create_future()
            self._queue.put_nowait(_Item(chunk, fut))
            futures.append(fut)
        results = await asyncio.gather(*futures)
        return np.concatenate(results) if len(results) > 1 else results[0]

    async def _collect(self) -> None:
        pending: _Item | None = None
        while True:
            first = pending or await self._queue.get()
            pending = None
            batch = [first]
            size = len(first.images)
            deadline = time.perf_counter() + self.timeout
            while size < self.max_batch:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
                if size + len(item.images) > self.max_batch:
                    pending = item  # starts the next batch
                    break
                batch.append(item)
                size += len(item.images)
            self._queued_images -= size
            await self._slots.acquire()
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _run(self, batch: list[_Item]) -> None:
        try:
            groups: dict[tuple[int, ...], list[_Item]] = {}
            # A request whose client has gone or timed out was cancelled: its images are not run.
            live = [item for item in batch if not item.future.done()]
            for item in live:  # images of different sizes cannot share a tensor
                groups.setdefault(item.images.shape[1:], []).append(item)
            loop = asyncio.get_running_loop()
            for items in groups.values():
                stacked = np.concatenate([i.images for i in items])
                try:
                    out = await loop.run_in_executor(self.executor, self.fn, stacked)
                except Exception as e:  # the requests get the error, the server lives on
                    for i in items:
                        if not i.future.done():
                            i.future.set_exception(e)
                    continue
                if self.on_batch:
                    self.on_batch(len(stacked))
                start = 0
                for i in items:
                    if not i.future.done():
                        i.future.set_result(out[start : start + len(i.images)])
                    start += len(i.images)
        finally:
            self._slots.release()

    async def close(self) -> None:
        """Refuse new work, finish everything queued and in flight."""
        self._closing = True
        while self._queued_images or not self._queue.empty():
            await asyncio.sleep(0.005)
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
        self._collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._collector

"""Dynamic batching: concurrent requests share one forward pass.

Requests queue their images; when one of `workers` inference threads is free, a collector takes
up to `max_batch` images, waiting at most `timeout_ms` after the first one for others to arrive,
and hands the batch to it (the engines release the GIL, so runs overlap). The queue is bounded in
images: past `max_queue` a request is refused at once (HTTP 429 / RESOURCE_EXHAUSTED) instead of
growing memory without limit. Work that cannot be answered in time (its deadline passed, or comes
before even the fastest recent run would end) is dropped when the batch is put together and again
right before it runs, so an overloaded server spends the model on answers someone still waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


class Overloaded(Exception):
    """The queue is full: the client should back off and retry."""


class ShuttingDown(Exception):
    """The server is draining and takes no new work."""


class Expired(Exception):
    """The request's deadline comes before its images could be run."""


@dataclass
class _Item:
    images: np.ndarray
    future: asyncio.Future
    deadline: float  # event-loop time


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
        self._runs: deque[float] = deque(maxlen=8)  # seconds the latest model runs took
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

    async def submit(self, images: np.ndarray, reserved: int = 0, deadline: float = math.inf) -> np.ndarray:
        """The outputs for `images`; `deadline` (event-loop time) is when nobody waits for them any more."""
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
            self._queue.put_nowait(_Item(chunk, fut, deadline))
            futures.append(fut)
        try:
            results = await asyncio.gather(*futures)
        except BaseException:  # failed, expired or abandoned: its other chunks are not run for nobody
            for fut in futures:
                fut.cancel()
            raise
        return np.concatenate(results) if len(results) > 1 else results[0]

    def _live(self, item: _Item) -> bool:
        """Whether `item` can still be answered in time; one that cannot is answered Expired now."""
        if item.future.done():  # cancelled: its client left, or its deadline passed
            return False
        fastest = min(self._runs, default=0.0)
        left = item.deadline - asyncio.get_running_loop().time()
        if left < fastest:
            item.future.set_exception(
                Expired(f"no result possible in time: {max(left, 0):.2f}s were left, a model run takes {fastest:.2f}s")
            )
            return False
        return True

    async def _next(self, timeout: float | None) -> _Item | None:
        """The next queued item that can still be answered in time (dropping those that cannot),
        or None after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        while True:
            if end is None:
                item = await self._queue.get()
            else:
                remaining = end - loop.time()
                if remaining <= 0:
                    return None
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    return None
            if self._live(item):
                return item
            self._queued_images -= len(item.images)

    async def _assemble(self, pending: _Item | None) -> tuple[list[_Item], _Item | None]:
        """(a batch of up to max_batch images, the item that starts the next one)."""
        if pending is not None and not self._live(pending):
            self._queued_images -= len(pending.images)
            pending = None
        first = pending or await self._next(None)
        batch, size = [first], len(first.images)
        loop = asyncio.get_running_loop()
        end = loop.time() + self.timeout
        pending = None
        while size < self.max_batch:
            item = await self._next(end - loop.time())
            if item is None:
                break
            if size + len(item.images) > self.max_batch:
                pending = item  # starts the next batch
                break
            batch.append(item)
            size += len(item.images)
        self._queued_images -= size
        return batch, pending

    async def _collect(self) -> None:
        pending: _Item | None = None
        while True:
            # A batch is put together once a worker is free to run it: it holds what arrived
            # meanwhile, and nothing chosen for it waits (and expires) before it runs.
            await self._slots.acquire()
            try:
                batch, pending = await self._assemble(pending)
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _run(self, batch: list[_Item]) -> None:
        try:
            groups: dict[tuple[int, ...], list[_Item]] = {}
            for item in batch:  # images of different sizes cannot share a tensor
                groups.setdefault(item.images.shape[1:], []).append(item)
            loop = asyncio.get_running_loop()
            for group in groups.values():
                items = [i for i in group if self._live(i)]  # checked again: groups run one after another
                if not items:
                    continue
                stacked = np.concatenate([i.images for i in items])
                started = loop.time()
                try:
                    out = await loop.run_in_executor(self.executor, self.fn, stacked)
                except Exception as e:  # the requests get the error, the server lives on
                    for i in items:
                        if not i.future.done():
                            i.future.set_exception(e)
                    continue
                self._runs.append(loop.time() - started)
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

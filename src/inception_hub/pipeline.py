"""Files in, model outputs out: find images, decode them in parallel, batch, run the module.

Decoding runs in a thread pool a bounded number of images ahead of the model, so it overlaps
inference (both release the GIL) and memory stays bounded however many files there are. The
engine has every core; the decoding threads are fewer (`CpuInfo.decode_threads`) and run at a
lower priority, so a decode fills the moments the engine leaves a core idle instead of holding
up one of its threads mid-operation (the others then wait for it). An unreadable file becomes a
result with an error; the run goes on.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .batch import Decoded, decode, run_batch
from .cpu import cpu
from .files import find_images
from .module import Module

#: How much lower the decoding threads' priority is than the engine's (Linux nice levels).
DECODE_NICENESS = 10

__all__ = ["Result", "find_images", "run"]


@dataclass
class Result:
    """One input file: the module's output row, or why it could not be read."""

    path: str
    output: np.ndarray | None = None
    error: str | None = None


def run(
    module: Module,
    paths: Iterable[str],
    *,
    batch_size: int = 32,
    workers: int | None = None,
) -> Iterator[Result]:
    """Yield one Result per path, in input order, preprocessed as the module's card says.
    `workers`: decoding threads (default: as many as the CPU needs beside the engine)."""
    size, crop = module.expected_image_size, module.spec.card.central_fraction
    workers = workers or cpu().decode_threads
    ahead = 2 * batch_size  # decoded images waiting for the model, at most

    def one(path: str) -> Decoded:
        return decode(path, size, central_fraction=crop)

    with ThreadPoolExecutor(workers, thread_name_prefix="decode", initializer=background) as pool:
        pending: collections.deque[tuple[str, Future]] = collections.deque()
        batch: list[tuple[str, np.ndarray]] = []
        it = iter(paths)
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < ahead:
                path = next(it, None)
                if path is None:
                    exhausted = True
                else:
                    pending.append((path, pool.submit(one, path)))
            if not pending:
                break
            path, fut = pending.popleft()
            decoded = fut.result()
            if isinstance(decoded, str):  # flush first, so results stay in input order
                yield from _flush(module, batch)
                batch = []
                yield Result(path, error=decoded)
                continue
            batch.append((path, decoded))
            if len(batch) == batch_size:
                yield from _flush(module, batch)
                batch = []
        yield from _flush(module, batch)


def background() -> None:
    """Lower the calling thread's priority by DECODE_NICENESS (Linux only: elsewhere the call
    would lower the whole process, engine included)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + DECODE_NICENESS)


def _flush(module: Module, batch: list[tuple[str, np.ndarray]]) -> Iterator[Result]:
    if not batch:
        return
    outputs, _ = run_batch(module, [img for _, img in batch])
    for (path, _), row in zip(batch, outputs, strict=True):
        yield Result(path, output=row)
